"""Margin search for one setting: train every candidate allocation on every seed, measure its error.

Budget: every allocation keeps sum_k gamma_k = K cbar (``LearnerConfig.mean_margin``), the budget of
the theory (``theory.optimal_margins``).

* K = 2: a grid of log-ratios r = log(gamma_varied / gamma_reference), uniform on
  [-log_ratio_max, log_ratio_max]; gamma_varied = 2 cbar e^r / (1 + e^r). The optimum of an error
  curve is the grid minimum refined by the vertex of the parabola through it and its neighbours.
* K > 2 (structured search, then an optimiser): gamma_k proportional to a_k^beta over a grid of beta
  (a_k the population spread), then a compass search in log-margin space for each criterion: from the
  best allocation so far, try log gamma +- h e_k for every class k (renormalised to the budget), move
  to the best if it lowers the seed-mean criterion, otherwise halve h. All candidates of a round are
  trained in one batch. The final optimum of a criterion is the best of all candidates tried.

The theory's allocation is trained beside the others (same seeds, same test points) but is never a
candidate of the search, so the search cannot be drawn towards it.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field

import numpy as np

from sims.config import Setting
from sims.data import sample_training_sets
from sims.evaluate import CRITERIA, class_errors, criterion, ramp_risk, train_errors
from sims.learner import fit
from theory import optimal_margins

__all__ = [
    "SettingResult",
    "run_setting",
    "two_class_margins",
    "beta_margins",
    "parabolic_argmin",
    "STAGE_GRID",
    "STAGE_THEORY",
    "STAGE_REFINE",
]

STAGE_GRID = 0  # the K = 2 grid or the K > 2 beta grid
STAGE_THEORY = 1  # theory.optimal_margins (not a search candidate)
STAGE_REFINE = 2  # compass-search moves (K > 2)
CHOICES = ("uniform", "theory")  # allocations whose bound quantities are recorded


def two_class_margins(log_ratio: np.ndarray, mean_margin: float, varied: int) -> np.ndarray:
    """Margins (G, 2) with log(gamma_varied / gamma_other) = log_ratio and gamma_0 + gamma_1 = 2 cbar."""
    r = np.asarray(log_ratio, dtype=np.float64)
    g_var = 2.0 * mean_margin / (1.0 + np.exp(-r))
    g_other = 2.0 * mean_margin - g_var
    out = np.empty((r.size, 2))
    out[:, varied] = g_var
    out[:, 1 - varied] = g_other
    return out


def beta_margins(spread: np.ndarray, betas: np.ndarray, mean_margin: float) -> np.ndarray:
    """gamma_k = K cbar a_k^beta / sum_j a_j^beta, shape (B, K), for every beta (any sign)."""
    log_a = np.log(np.asarray(spread, dtype=np.float64))
    return _normalise(np.asarray(betas)[:, None] * log_a[None, :], mean_margin)


def _normalise(log_gamma: np.ndarray, mean_margin: float) -> np.ndarray:
    """Margins from unnormalised log-margins (..., K), scaled to sum K cbar."""
    g = np.exp(log_gamma - log_gamma.max(-1, keepdims=True))
    return g.shape[-1] * mean_margin * g / g.sum(-1, keepdims=True)


def parabolic_argmin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | float, np.ndarray | bool]:
    """Minimiser of curves on a uniform grid: the grid minimum refined by the vertex of the parabola
    through it and its two neighbours (clipped to the neighbours). Vectorised over leading axes.

    Args:
        x: grid, shape (G,), uniform and increasing.
        y: curves, shape (..., G).

    Returns:
        (x*, at_boundary), each of shape y.shape[:-1] (Python scalars for a single curve);
        at_boundary marks a minimum on the first or last grid point (x* is then that point).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    G = x.size
    flat = y.reshape(-1, G)
    rows = np.arange(flat.shape[0])
    i = flat.argmin(1)
    edge = (i == 0) | (i == G - 1)
    j = np.minimum(np.maximum(i, 1), G - 2)
    y0, y1, y2 = flat[rows, j - 1], flat[rows, j], flat[rows, j + 1]
    denom = y0 - 2 * y1 + y2
    h = x[1] - x[0]
    safe = np.where(denom > 0, denom, 1.0)
    shift = np.where(denom > 0, 0.5 * h * (y0 - y2) / safe, 0.0)
    xi = x[i]
    out = np.where(edge, xi, xi + np.minimum(np.maximum(shift, -h), h)).reshape(y.shape[:-1])
    edge = edge.reshape(y.shape[:-1])
    if out.ndim == 0:
        return float(out), bool(edge)
    return out, edge


@dataclass
class SettingResult:
    """Everything measured for one setting (S seeds, C candidate allocations, K classes).

    Attributes:
        setting: the setting.
        margins: (C, K) candidate allocations; ``stage``: (C,) STAGE_*.
        log_ratio: (C,) K = 2: log(gamma_varied / gamma_reference); NaN for K > 2.
        errors: (S, C, K) per-class test error (exact for K = 2, Monte Carlo otherwise).
        spread: (K,) population a_k; theory_margins: (K,); uniform index: ``uniform_index``.
        bound: per choice in ("uniform", "theory"): dict of train_error (S, K), ramp_risk (S, K),
            weight_norm (S,) = ||[W, b]||_F, spread_emp (S, K) = mean ||(x, 1)||^2 over class k.
        diagnostics: solver figures (max grad norm, models not converged, seconds).
    """

    setting: Setting
    margins: np.ndarray
    stage: np.ndarray
    log_ratio: np.ndarray
    errors: np.ndarray
    spread: np.ndarray
    theory_margins: np.ndarray
    uniform_index: int
    theory_index: int
    bound: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        arrays = {
            "margins": self.margins,
            "stage": self.stage,
            "log_ratio": self.log_ratio,
            "errors": self.errors,
            "spread": self.spread,
            "theory_margins": self.theory_margins,
        }
        for choice, parts in self.bound.items():
            for name, arr in parts.items():
                arrays[f"bound__{choice}__{name}"] = arr
        meta = {
            "setting": self.setting.to_dict(),
            "uniform_index": self.uniform_index,
            "theory_index": self.theory_index,
            "diagnostics": self.diagnostics,
        }
        arrays["meta"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> SettingResult:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data.pop("meta")))
        bound: dict[str, dict[str, np.ndarray]] = {}
        for key in [k for k in data if k.startswith("bound__")]:
            _, choice, name = key.split("__")
            bound.setdefault(choice, {})[name] = data.pop(key)
        return cls(
            setting=Setting.from_dict(meta["setting"]),
            uniform_index=meta["uniform_index"],
            theory_index=meta["theory_index"],
            diagnostics=meta["diagnostics"],
            bound=bound,
            **data,
        )

    def search_mask(self) -> np.ndarray:
        """(C,) True for the candidates of the search (everything but the theory's allocation)."""
        return self.stage != STAGE_THEORY

    def mean_criterion(self, name: str) -> np.ndarray:
        """Seed-mean of the per-seed criterion, shape (C,)."""
        return criterion(self.errors, name).mean(axis=0)


def _fit_eval(setting: Setting, X, y, margins, init, test_seed: int, stats: dict):
    """Train (S, A) models with warm start ``init`` and measure their per-class errors (S, A, K)."""
    res = fit(X, y, margins, setting.learner, init=init)
    stats["max_grad_norm"] = max(stats.get("max_grad_norm", 0.0), float(res.grad_norm.max()))
    stats["not_converged"] = stats.get("not_converged", 0) + int((~res.converged).sum())
    stats["models"] = stats.get("models", 0) + int(res.converged.size)
    stats["newton_iterations"] = stats.get("newton_iterations", 0) + int(res.n_iter.sum())
    ev = setting.evaluation
    err = class_errors(
        res.W,
        res.b,
        setting.mixture,
        exact_two_class=ev.exact_two_class,
        mc_per_class=ev.mc_per_class,
        rng=test_seed,
    )
    return res, err


def run_setting(setting: Setting) -> SettingResult:
    """Run the margin search of one setting (see the module docstring); deterministic in its seeds."""
    t0 = time.perf_counter()
    mix, lrn, srch = setting.mixture, setting.learner, setting.search
    K, S, cbar = mix.K, setting.n_seeds, lrn.mean_margin
    X, y = sample_training_sets(mix, S, setting.seed_sequence(0))
    # the same test points for every model of the setting (common random numbers)
    test_seed = int(setting.seed_sequence(1).generate_state(1)[0])
    spread = mix.spread()
    theory = optimal_margins(spread, mean_margin=cbar, weights=mix.class_weights)
    uniform = np.full(K, cbar)
    if K == 2:
        varied = 1 - setting.reference
        r = np.linspace(-srch.log_ratio_max, srch.log_ratio_max, srch.grid_size)
        grid = two_class_margins(r, cbar, varied)
        log_ratio = np.append(r, np.log(theory[varied] / theory[setting.reference]))
    else:
        betas = np.linspace(srch.beta_min, srch.beta_max, srch.beta_grid)
        if not np.any(np.isclose(betas, 0.0)):
            betas = np.sort(np.append(betas, 0.0))  # uniform margins are always a candidate
        grid = beta_margins(spread, betas, cbar)
        log_ratio = np.full(grid.shape[0] + 1, np.nan)
    margins = np.vstack([grid, theory[None]])
    stage = np.append(np.full(grid.shape[0], STAGE_GRID), STAGE_THEORY)
    uniform_index = int(np.argmin(np.abs(grid - uniform).sum(1)))
    theory_index = grid.shape[0]
    stats: dict = {}
    base, _ = _fit_eval(setting, X, y, uniform[None], None, test_seed, stats)
    warm = (np.repeat(base.W, len(margins), 1), np.repeat(base.b, len(margins), 1))
    res, errors = _fit_eval(setting, X, y, margins, warm, test_seed, stats)
    params_W, params_b = res.W, res.b
    if K > 2 and srch.refine_rounds > 0:
        margins, stage, errors, params_W, params_b = _refine(
            setting, X, y, margins, stage, errors, params_W, params_b, test_seed, stats
        )
        log_ratio = np.full(margins.shape[0], np.nan)
    bound = {}
    for name, idx in (("uniform", uniform_index), ("theory", theory_index)):
        W, b, g = params_W[:, idx], params_b[:, idx], margins[idx]
        Xa2 = (X**2).sum(-1) + 1.0  # ||(x, 1)||^2, the features of the affine rule
        onehot = np.eye(K)[y]
        bound[name] = {
            "train_error": train_errors(W, b, X, y),
            "ramp_risk": ramp_risk(W, b, X, y, g),
            "weight_norm": np.sqrt((W**2).sum((-1, -2)) + (b**2).sum(-1)),
            "spread_emp": Xa2 @ onehot / onehot.sum(0),
        }
    stats["seconds"] = time.perf_counter() - t0
    return SettingResult(
        setting=setting,
        margins=margins,
        stage=stage,
        log_ratio=log_ratio,
        errors=errors,
        spread=spread,
        theory_margins=theory,
        uniform_index=uniform_index,
        theory_index=theory_index,
        bound=bound,
        diagnostics=stats,
    )


def _refine(setting, X, y, margins, stage, errors, W, b, test_seed, stats):
    """Compass search in log-margin space, one path per criterion, both in each training batch."""
    K, cbar = setting.mixture.K, setting.learner.mean_margin
    h = {c: setting.search.refine_step for c in CRITERIA}
    eye = np.eye(K)
    for _ in range(setting.search.refine_rounds):
        searchable = stage != STAGE_THEORY
        proposals, parents = [], []
        for crit in CRITERIA:
            score = np.where(searchable, criterion(errors, crit).mean(0), np.inf)
            best = int(np.argmin(score))
            moves = np.log(margins[best])[None] + h[crit] * np.vstack([eye, -eye])  # (2K, K)
            proposals.append(_normalise(moves, cbar))
            parents += [best] * (2 * K)
        new = np.vstack(proposals)
        init = (W[:, parents], b[:, parents])
        res, err = _fit_eval(setting, X, y, new, init, test_seed, stats)
        for i, crit in enumerate(CRITERIA):
            old_best = np.where(searchable, criterion(errors, crit).mean(0), np.inf).min()
            mine = criterion(err[:, i * 2 * K : (i + 1) * 2 * K], crit).mean(0)
            if mine.min() >= old_best:
                h[crit] /= 2.0
        margins = np.vstack([margins, new])
        stage = np.append(stage, np.full(len(new), STAGE_REFINE))
        errors = np.concatenate([errors, err], axis=1)
        W = np.concatenate([W, res.W], axis=1)
        b = np.concatenate([b, res.b], axis=1)
    return margins, stage, errors, W, b
