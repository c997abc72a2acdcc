"""The three experiments (presets of ``mr2 simulate``) and the tidy tables they write.

All presets share one sweep of settings (``preset_settings``), cached per setting, so that ``all``
computes each setting once and a single preset rerun after ``all`` costs nothing:

* ``margin-vs-variance``: the empirically optimal margins under each criterion, with bootstrap CIs
  over seeds, beside the theory's (``theory.optimal_margins``), and the empirical exponent of margin
  against spread, d log gamma / d log a, beside the theory's 1/3;
* ``margin-vs-separation``: the same optima over a joint grid of separations (mean norm mu) and
  variance ratios, so that the two no longer move together, and every rule's prediction scored
  against them (``sims.scores``: the bound, the Gaussian oracle, LDAM, uniform);
* ``theory-vs-uniform``: per-class error and disparity under uniform margins, the theory's margins
  and the empirical optimum (cross-fitted over seeds, so its error is not selected on itself);
* ``bound-vs-gap``: per class, the bound's margin term against the true generalisation gap.

The tables of ``theory-vs-uniform`` and ``bound-vs-gap`` are built in ``sims.bound_checks`` (re-exported
here); the regime key and the bootstrap's settings shared by all tables are in ``sims.tables``.

Every CI is ``mr2_core.stats.bootstrap_ci`` over seeds (percentile, 95%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mr2_core.checks import bad
from mr2_core.contracts import SIMS_PRESETS
from mr2_core.stats import bootstrap_ci
from sims.bound_checks import bound_vs_gap, theory_vs_uniform
from sims.config import EvalConfig, LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.evaluate import CRITERIA, criterion
from sims.scores import k2_geometry, rule_columns
from sims.search import STAGE_GRID, SettingResult, parabolic_argmin
from sims.tables import N_BOOT, REGIME_COLS, boot_rng, group_by_regime, sigma_ratio

__all__ = [
    "PRESETS",
    "PresetSpec",
    "preset_settings",
    "FAMILIES",
    "margin_vs_variance",
    "exponents",
    "theory_vs_uniform",
    "bound_vs_gap",
    "N_BOOT",
]

PRESETS = SIMS_PRESETS
# the sweep's families of settings: "variance" varies the variance ratio at one separation per K;
# "separation" crosses every variance ratio with several separations (it contains "variance")
FAMILIES = ("variance", "separation")


@dataclass(frozen=True)
class PresetSpec:
    """The grid of one preset size (full or quick); every entry is a sweep axis."""

    sigma_ratios: tuple[float, ...]  # K = 2: sigma_varied / sigma_reference (sigma_reference = 1)
    n_per_class: tuple[int, ...]  # training examples per class
    dims: tuple[int, ...]  # K = 2 input dimensions d
    losses: tuple[str, ...]  # margin forms
    seeds_k2: int  # training sets per K = 2 setting
    grid_size: int  # K = 2 log-ratio grid
    multi_sigmas: tuple[float, ...]  # K > 2: one sigma per class (the reference class has sigma = 1)
    multi_dims: tuple[int, ...]  # K > 2 input dimensions
    multi_n: tuple[int, ...]  # K > 2 sample sizes per class
    seeds_multi: int  # training sets per K > 2 setting
    beta_grid: int  # K > 2 beta grid size
    refine_rounds: int  # K > 2 compass rounds
    beta_range: float = 1.5  # K > 2: beta grid on [-beta_range, beta_range]
    mu_k2: float = 1.5  # K = 2 mean norm: Bayes error of the sigma = 1 class alone is Phi(-1.5) = 6.7%
    mu_multi: float = 2.5  # K = 5 simplex mean norm: neighbours 3.95 apart, about 10% error at sigma = 1
    mean_margin: float = 1.0  # cbar (the official code's)
    l2: float = 1e-2  # lambda of the learner
    # "separation" family: further K = 2 / K > 2 mean norms, each crossed with every variance ratio
    # (K = 2: the means are 2 mu apart; K = 5: neighbours mu sqrt(2K/(K-1)) apart)
    separations_k2: tuple[float, ...] = ()
    separations_multi: tuple[float, ...] = ()
    separations_multi_n: tuple[int, ...] = ()  # K > 2 sample sizes of the further separations (() = all)


FULL = PresetSpec(
    sigma_ratios=(0.25, 0.5, 2**-0.5, 1.0, 2**0.5, 2.0, 4.0),
    n_per_class=(10, 100, 1000),
    dims=(2, 20),
    losses=("additive", "temperature"),
    seeds_k2=20,
    grid_size=41,
    multi_sigmas=(0.5, 2**-0.5, 1.0, 2**0.5, 2.0),
    multi_dims=(4, 10),
    multi_n=(10, 100, 1000),
    seeds_multi=10,
    beta_grid=21,
    refine_rounds=2,
    beta_range=2.5,
    separations_k2=(0.75, 1.0, 3.0),
    separations_multi=(1.5, 4.0),
    # a K = 5 setting costs about a minute on the shared 2 cores whatever n (the Monte Carlo test error
    # dominates): the further K = 5 separations run at n = 100 and 1000 only
    separations_multi_n=(100, 1000),
)
QUICK = PresetSpec(
    sigma_ratios=(0.25, 0.5, 1.0, 2.0, 4.0),
    n_per_class=(10, 100),
    dims=(2, 8),
    losses=("additive", "temperature"),
    seeds_k2=8,
    grid_size=21,
    multi_sigmas=(0.5, 2**-0.5, 1.0, 2**0.5, 2.0),
    multi_dims=(4,),
    multi_n=(100,),
    seeds_multi=4,
    beta_grid=7,
    refine_rounds=1,
    separations_k2=(0.75, 3.0),
)


def preset_settings(
    quick: bool = False, spec: PresetSpec | None = None, family: str = "variance"
) -> list[Setting]:
    """Every setting of a family of the sweep (K = 2 grid, then the K = 5 settings).

    ``variance``: the mean norms ``mu_k2`` / ``mu_multi``; ``separation``: those and the
    ``separations_*`` crossed with every variance ratio. A setting in both is the same setting (same
    key), so it is computed once and read from the cache by the other family.
    """
    spec = spec or (QUICK if quick else FULL)
    if family not in FAMILIES:
        raise bad("family", family, f"one of {FAMILIES}")
    mus_k2, mus_multi = (spec.mu_k2,), (spec.mu_multi,)
    if family == "separation":
        mus_k2 += tuple(m for m in spec.separations_k2 if m != spec.mu_k2)
        mus_multi += tuple(m for m in spec.separations_multi if m != spec.mu_multi)
    out = []
    for loss in spec.losses:
        learner = LearnerConfig(loss=loss, mean_margin=spec.mean_margin, l2=spec.l2)
        for mu in mus_k2:
            for d in spec.dims:
                for n in spec.n_per_class:
                    for ratio in spec.sigma_ratios:
                        mix = MixtureConfig(sigmas=(1.0, ratio), n_per_class=(n, n), d=d, mu=mu)
                        search = SearchConfig(grid_size=spec.grid_size)
                        out.append(Setting(mix, learner, search, EvalConfig(), spec.seeds_k2, tag="k2"))
        for mu, d in ((mu, d) for mu in mus_multi for d in spec.multi_dims):
            for n in spec.n_per_class if not spec.multi_n else spec.multi_n:
                if mu != spec.mu_multi and spec.separations_multi_n and n not in spec.separations_multi_n:
                    continue
                K = len(spec.multi_sigmas)
                mix = MixtureConfig(sigmas=spec.multi_sigmas, n_per_class=(n,) * K, d=d, mu=mu)
                search = SearchConfig(
                    beta_grid=spec.beta_grid,
                    refine_rounds=spec.refine_rounds,
                    beta_min=-spec.beta_range,
                    beta_max=spec.beta_range,
                )
                ref = int(np.argmin(np.abs(np.log(spec.multi_sigmas))))
                out.append(
                    Setting(mix, learner, search, EvalConfig(), spec.seeds_multi, tag=f"k{K}", reference=ref)
                )
    return out


# ----------------------------------------------------------------------------------------------
# helpers


def _k2_parts(res: SettingResult):
    """(grid log-ratios (G,), per-seed criterion curves {crit: (S, G)}) of a K = 2 setting."""
    grid = res.stage == STAGE_GRID
    curves = {c: criterion(res.errors[:, grid], c) for c in CRITERIA}
    return res.log_ratio[grid], curves


def _multi_optimum(res: SettingResult, crit_seeds: np.ndarray) -> np.ndarray:
    """log(gamma*_k / gamma*_ref), shape (K,), of the best search candidate for seed-wise curves."""
    score = np.where(res.search_mask(), crit_seeds.mean(0), np.inf)
    g = res.margins[int(np.argmin(score))]
    return np.log(g / g[res.setting.reference])


# ----------------------------------------------------------------------------------------------
# experiment 1: margin vs variance


def margin_vs_variance(results: Sequence[SettingResult]) -> pd.DataFrame:
    """One row per (K, loss, d, n_per_class, sigma_ratio, criterion); K > 2 gives a row per class
    other than the reference, with that class's sigma ratio. See :func:`analyse_margins`."""
    return analyse_margins(results)[0]


def exponents(results: Sequence[SettingResult]) -> pd.DataFrame:
    """The empirical exponent per regime and criterion. See :func:`analyse_margins`."""
    return analyse_margins(results)[1]


def _slopes(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """OLS slopes of every column of Y (n, m) on x (n,), shape (m,)."""
    xc = x - x.mean()
    return (xc[:, None] * (Y - Y.mean(0))).sum(0) / (xc * xc).sum()


def analyse_margins(results: Sequence[SettingResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Experiment 1: the optimal margins (rows of ``margin_vs_variance.csv``) and the empirical
    exponent d log gamma* / d log a (rows of ``exponents.csv``), with bootstrap CIs over seeds.

    K = 2: per sigma ratio, the optimal log(gamma*_v / gamma*_ref) is the minimiser of the seed-mean
    criterion curve; the exponent is the OLS slope of these optima on log(a_v / a_ref) across the
    ratios of a regime. The settings of a regime share their noise (common random numbers), so one
    bootstrap resamples seed indices jointly for all of them and gives every CI of the regime.
    K > 2: the optimum is the best search candidate; the exponent is the OLS slope of log gamma*_k
    on log a_k across classes. The theory's exponent is computed the same way from
    ``theory.optimal_margins`` (1/3 for balanced classes).
    """
    rows, exp_rows = [], []
    nc = len(CRITERIA)
    for key, group in sorted(group_by_regime(results).items(), key=lambda kv: str(kv[0])):
        base = dict(zip(REGIME_COLS, key, strict=True))
        if key[0] == 2:
            group = sorted(group, key=sigma_ratio)
            parts = [_k2_parts(g) for g in group]
            r = parts[0][0]
            if any(
                len(p[0]) != len(r) or g.setting.n_seeds != group[0].setting.n_seeds
                for p, g in zip(parts, group, strict=True)
            ):
                raise bad("results", key, "settings of one regime with the same grid and seed count")
            x = np.array(
                [np.log(g.spread[1 - g.setting.reference] / g.spread[g.setting.reference]) for g in group]
            )
            th = np.array([g.log_ratio[g.theory_index] for g in group])
            stack = np.stack([np.stack([p[1][c] for c in CRITERIA], 1) for p in parts], 1)  # (S, R, 2, G)
            R = len(group)
            fit_slope = R >= 2 and np.ptp(x) > 0

            def stat(c: np.ndarray, x=x, r=r, R=R, fit_slope=fit_slope) -> np.ndarray:
                opt = parabolic_argmin(r, c.mean(0))[0]  # (R, 2)
                slopes = _slopes(x, opt) if fit_slope else np.zeros(nc)
                return np.concatenate([opt.ravel(), slopes])

            point, (lo, hi) = bootstrap_ci(stack, stat, rng=boot_rng(), n_boot=N_BOOT)
            _, edge = parabolic_argmin(r, stack.mean(0))  # (R, 2)
            for i, g in enumerate(group):
                for j, crit in enumerate(CRITERIA):
                    f = i * nc + j
                    rows.append(
                        _row(
                            base, g, crit, 1 - g.setting.reference, point[f], lo[f], hi[f], edge[i, j], th[i]
                        )
                    )
            if fit_slope:
                for j, crit in enumerate(CRITERIA):
                    f = R * nc + j
                    exp_rows.append(
                        _exp_row(
                            base,
                            crit,
                            point[f],
                            lo[f],
                            hi[f],
                            float(_slopes(x, th[:, None])[0]),
                            int(edge[:, j].sum()),
                            R,
                        )
                    )
            continue
        for g in group:
            ref, K = g.setting.reference, g.setting.mixture.K
            x = np.log(g.spread)
            both = np.stack([criterion(g.errors, c) for c in CRITERIA], 1)  # (S, 2, C)

            def stat(c: np.ndarray, g=g, x=x) -> np.ndarray:
                opt = np.stack([_multi_optimum(g, c[:, j]) for j in range(nc)], 1)  # (K, 2)
                return np.concatenate([opt.T.ravel(), _slopes(x, opt)])

            point, (lo, hi) = bootstrap_ci(both, stat, rng=boot_rng(), n_boot=N_BOOT)
            th = np.log(g.theory_margins / g.theory_margins[ref])
            for j, crit in enumerate(CRITERIA):
                # censored: the best beta of the grid (before the compass search) is an end of it
                grid_score = np.where(g.stage == STAGE_GRID, both[:, j].mean(0), np.inf)
                on_edge = int(np.argmin(grid_score)) in (0, int((g.stage == STAGE_GRID).sum()) - 1)
                for k in range(K):
                    if k != ref:
                        f = j * K + k
                        rows.append(_row(base, g, crit, k, point[f], lo[f], hi[f], on_edge, th[k]))
                f = nc * K + j
                exp_rows.append(
                    _exp_row(
                        base,
                        crit,
                        point[f],
                        lo[f],
                        hi[f],
                        float(_slopes(x, np.log(g.theory_margins)[:, None])[0]),
                        int(on_edge),
                        K,
                    )
                )
    return pd.DataFrame(rows), pd.DataFrame(exp_rows)


def _row(base, res, crit, k, point, lo, hi, at_boundary, theory_lr) -> dict:
    s = res.setting
    ref = s.reference
    mean = res.mean_criterion(crit)  # (C,) over every candidate, the theory's included
    search = res.search_mask()
    geometry = k2_geometry(res, crit, float(point), res.stage == STAGE_GRID)
    rules = rule_columns(res, crit, k)
    return {
        **base,
        "sigma_ratio": s.mixture.sigmas[k] / s.mixture.sigmas[ref],
        "class": k,
        "reference": ref,
        "criterion": crit,
        "opt_log_margin_ratio": float(point),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "theory_log_margin_ratio": float(theory_lr),
        "log_spread_ratio": float(np.log(res.spread[k] / res.spread[ref])),
        "at_boundary": bool(at_boundary),
        "opt_error": float(mean[search].min()),
        "uniform_error": float(mean[res.uniform_index]),
        "theory_error": float(mean[res.theory_index]),
        "n_seeds": s.n_seeds,
        "mean_margin": s.learner.mean_margin,
        "l2": s.learner.l2,
        "setting": s.key,
        "separation": rules.pop("separation"),
        **rules,
        "oracle_error": geometry.pop("oracle_error"),
        **geometry,
    }


def _exp_row(base, crit, point, lo, hi, theory, boundary_hits, n_points) -> dict:
    if lo > 0:
        verdict = "holds"
    elif hi < 0:
        verdict = "reversed"
    else:
        verdict = "inconclusive"
    return {
        **base,
        "criterion": crit,
        "exponent": point,
        "ci_low": lo,
        "ci_high": hi,
        "theory_exponent": theory,
        "theory_in_ci": bool(lo <= theory <= hi),
        "exponent_verdict": verdict,
        "boundary_optima": int(boundary_hits),
        "n_points": n_points,
    }


def check_preset(name: str) -> str:
    if name not in PRESETS:
        raise bad("preset", name, f"one of {PRESETS}")
    return name
