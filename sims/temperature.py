"""Both regimes of MR2's temperature form, CE(z / gamma_y, y), on two Gaussian classes.

``mr2 derive`` step 16 shows that a larger temperature gamma_y lowers the gradient pressure on a sample
of class y only while its scaled logit gap v = (z_y - z_other) / gamma_y is below the crossover v*
(e^v (v - 1) = K - 1; v* = 1.28 at K = 2), and raises it above. This experiment shows what that does to
a trained classifier: two classes in one dimension, N(+delta/2, 1) and N(-delta/2, 1), equal sizes;
class 1 gets the temperature g >= 1, class 0 keeps 1; a linear softmax classifier is trained to
convergence (``sims.learner.fit``, temperature form, small L2) on each of several training sets.

Measured per (separation delta, temperature ratio g, training set):

* ``boundary_shift``: how far the fitted boundary x* moved TOWARD class 1 (the class with the larger
  temperature), in units of sigma, from the midpoint 0. Positive: class 1 loses ground (the temperature
  took pressure away from it); negative: the boundary moved away from class 1, as a margin would.
* ``share_below_crossover``: the share of class 1's training samples whose v lies below v*.
* ``train_error``: the training error at g = 1 of the same set (0: the set is linearly separable).
* ``recall_large`` / ``recall_small``: the population recall of class 1 / class 0 at x* (exact, normal
  CDF).

Overlapping classes (most samples below v*) show the first regime, separable ones the second. The
regime of a real network is a property of its trained logits, not of the loss alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from mr2_core.checks import bad
from mr2_core.intervals import t_interval
from sims.config import LearnerConfig, MixtureConfig
from sims.data import sample_training_sets
from sims.learner import fit

__all__ = ["temperature_regimes", "summarise_regimes", "regimes_markdown", "SEPARATIONS", "RATIOS"]

SEPARATIONS = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0)  # delta: distance between the two means (units of sigma)
RATIOS = (1.0, 1.5, 2.0, 4.0)  # g: class 1's temperature (class 0 keeps 1)
N_PER_CLASS = 1000  # training samples per class
N_SETS = 8  # training sets (seeds) per separation
L2 = 1e-3  # the learner's L2 strength: small, so that separable sets reach confident logits
SEED = 2026  # the root seed of the training sets


def temperature_regimes(
    separations: tuple[float, ...] = SEPARATIONS,
    ratios: tuple[float, ...] = RATIOS,
    *,
    n_per_class: int = N_PER_CLASS,
    n_sets: int = N_SETS,
    l2: float = L2,
    seed: int = SEED,
) -> pd.DataFrame:
    """One row per (separation, ratio, training set); columns as the module docstring lists."""
    from theory import temperature_crossover

    seps = np.asarray(separations, dtype=np.float64)
    rat = np.asarray(ratios, dtype=np.float64)
    if seps.size == 0 or not np.all(np.isfinite(seps)) or np.any(seps <= 0):
        raise bad("separations", separations, "distances between the means > 0 (units of sigma)")
    if rat.size == 0 or not np.all(np.isfinite(rat)) or np.any(rat < 1):
        raise bad("ratios", ratios, "temperature ratios >= 1 (class 1's temperature; class 0 keeps 1)")
    v_star = temperature_crossover(2)
    gs = np.unique(np.r_[1.0, rat])  # g = 1 (plain CE) is the reference of every set
    margins = np.stack([np.ones_like(gs), gs], axis=1)  # (A, 2): class 0 keeps 1, class 1 gets g
    cfg = LearnerConfig(loss="temperature", l2=l2, tol=1e-9, max_iter=200)
    rows = []
    for delta in seps:
        mix = MixtureConfig(sigmas=(1.0, 1.0), n_per_class=(n_per_class, n_per_class), d=1, mu=delta / 2)
        X, y = sample_training_sets(mix, n_sets, seed)
        res = fit(X, y, margins, cfg)
        if not res.converged.all():
            raise RuntimeError(
                f"temperature regimes: {int((~res.converged).sum())} models at delta {delta} did not "
                f"converge (max |grad| {res.grad_norm.max():.1e}); raise max_iter or l2"
            )
        w = res.W[..., 0, 0] - res.W[..., 1, 0]  # (S, A): z_0 - z_1 = w x + c
        c = res.b[..., 0] - res.b[..., 1]
        x_star = -c / w  # class 0 (at +delta/2) wins for x > x*; class 1 sits at -delta/2
        for s in range(n_sets):
            x0, x1 = X[s, y == 0, 0], X[s, y == 1, 0]
            err_ce = float(((x1 > x_star[s, 0]).sum() + (x0 < x_star[s, 0]).sum()) / y.size)
            for a, g in enumerate(gs):
                v1 = -(w[s, a] * x1 + c[s, a]) / g  # (z_1 - z_0) / g on class 1's samples
                rows.append(
                    {
                        "separation": float(delta),
                        "ratio": float(g),
                        "set": s,
                        "boundary_shift": float(-x_star[s, a]),
                        "share_below_crossover": float(np.mean(v1 < v_star)),
                        "train_error": err_ce,
                        "recall_large": float(ndtr(x_star[s, a] + delta / 2)),
                        "recall_small": float(ndtr(delta / 2 - x_star[s, a])),
                    }
                )
    return pd.DataFrame(rows)


def summarise_regimes(table: pd.DataFrame) -> pd.DataFrame:
    """Mean boundary shift with a 95% t interval over training sets, and the regime it shows."""
    out = []
    for (delta, g), grp in table.groupby(["separation", "ratio"], sort=True):
        shift = grp["boundary_shift"].to_numpy()
        mean, (lo, hi) = t_interval(shift)
        if g == 1.0:
            regime = "reference (plain CE)"
        elif lo > 0:
            regime = "toward the larger temperature (pressure taken away)"
        elif hi < 0:
            regime = "away from the larger temperature (margin-like)"
        else:
            regime = "no shift detected"
        out.append(
            {
                "separation": delta,
                "ratio": g,
                "n_sets": len(grp),
                "boundary_shift": float(mean),
                "shift_ci_low": float(lo),
                "shift_ci_high": float(hi),
                "share_below_crossover": float(grp["share_below_crossover"].mean()),
                "train_error": float(grp["train_error"].mean()),
                "recall_large": float(grp["recall_large"].mean()),
                "recall_small": float(grp["recall_small"].mean()),
                "regime": regime,
            }
        )
    return pd.DataFrame(out)


def regimes_markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (ratio > 1 rows), with how to read it."""
    from theory import temperature_crossover

    v_star = temperature_crossover(2)
    lines = [
        "## Both regimes of the temperature form (two Gaussian classes, sigma = 1)",
        "",
        "Class 1 trained with CE(z / g); shift: how far the boundary moved toward class 1 (sigma units, "
        "95% t interval over training sets); below v*: share of class 1's samples with "
        f"v < v* = {v_star:.2f}.",
        "",
        "| delta | g | shift toward class 1 | below v* | train error (g = 1) | recall class 1 / 0 | regime |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary[summary["ratio"] > 1].itertuples():
        lines.append(
            f"| {r.separation:g} | {r.ratio:g} | {r.boundary_shift:+.3f} [{r.shift_ci_low:+.3f}, "
            f"{r.shift_ci_high:+.3f}] | {r.share_below_crossover:.2f} | {r.train_error:.3f} | "
            f"{r.recall_large:.3f} / {r.recall_small:.3f} | {r.regime} |"
        )
    return "\n".join(lines)
