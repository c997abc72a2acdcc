"""Experiments 2 and 3 of ``sims.experiments``: the margin choices against uniform margins, and the
bound's margin term against the true generalisation gap (presets ``theory-vs-uniform`` and
``bound-vs-gap``; ``sims.experiments`` re-exports both tables).

Every CI is ``mr2_core.stats.bootstrap_ci`` over seeds (percentile, 95%).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mr2_core.stats import bootstrap_ci
from sims.evaluate import criterion
from sims.search import SettingResult
from sims.tables import N_BOOT, REGIME_COLS, boot_rng, regime, sigma_ratio
from theory import class_bound_term

__all__ = ["crossfit_errors", "theory_vs_uniform", "bound_vs_gap"]

# ----------------------------------------------------------------------------------------------
# experiment 2: theory vs uniform vs empirical optimum


def crossfit_errors(res: SettingResult, crit: str) -> np.ndarray:
    """Per-seed errors (S, K) at the empirical optimum chosen on the *other* half of the seeds."""
    c = criterion(res.errors, crit)  # (S, C)
    S = c.shape[0]
    half = np.arange(S) % 2
    out = np.empty((S, res.errors.shape[-1]))
    mask = res.search_mask()
    for h in (0, 1):
        other = half != h
        best = int(np.argmin(np.where(mask, c[other].mean(0), np.inf)))
        out[half == h] = res.errors[half == h, best]
    return out


def theory_vs_uniform(results: Sequence[SettingResult]) -> pd.DataFrame:
    """Per setting, margin choice and metric: mean over seeds with CI, and the paired difference to
    uniform margins with its CI. Metrics: ``class_error`` (one row per class), ``balanced_error``,
    ``worst_class_error``, ``disparity`` (max - min class error)."""
    rows = []
    for res in results:
        s = res.setting
        base = dict(zip(REGIME_COLS, regime(res), strict=True))
        base["sigmas"] = " ".join(f"{v:.4g}" for v in s.mixture.sigmas)
        base["sigma_ratio"] = sigma_ratio(res) if s.mixture.K == 2 else np.nan
        base["setting"] = s.key
        choices = {
            "uniform": res.errors[:, res.uniform_index],
            "theory": res.errors[:, res.theory_index],
            "optimum_balanced": crossfit_errors(res, "balanced"),
            "optimum_worst_class": crossfit_errors(res, "worst_class"),
        }
        uni = choices["uniform"]
        # every (choice, metric) column of this setting in one array, so one bootstrap call (vector
        # statistic, the same resamples for all columns) gives every CI
        cols, vals, refs = [], [], []
        for choice, err in choices.items():
            metrics = {
                "balanced_error": (err.mean(-1), uni.mean(-1), -1),
                "worst_class_error": (err.max(-1), uni.max(-1), -1),
                "disparity": (np.ptp(err, -1), np.ptp(uni, -1), -1),
            }
            for k in range(err.shape[-1]):
                metrics[f"class_error/{k}"] = (err[:, k], uni[:, k], k)
            for name, (val, ref, k) in metrics.items():
                cols.append((choice, name.split("/")[0], k))
                vals.append(val)
                refs.append(ref)
        V = np.stack(vals, axis=1)  # (S, columns)
        point, (lo, hi) = bootstrap_ci(V, rng=boot_rng(), n_boot=N_BOOT)
        dpt, (dlo, dhi) = bootstrap_ci(V - np.stack(refs, axis=1), rng=boot_rng(), n_boot=N_BOOT)
        for j, (choice, metric, k) in enumerate(cols):
            rows.append(
                {
                    **base,
                    "choice": choice,
                    "metric": metric,
                    "class": k,
                    "class_sigma": s.mixture.sigmas[k] if k >= 0 else np.nan,
                    "point": point[j],
                    "ci_low": lo[j],
                    "ci_high": hi[j],
                    "diff_vs_uniform": dpt[j],
                    "diff_ci_low": dlo[j],
                    "diff_ci_high": dhi[j],
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# experiment 3: the bound's margin term vs the true generalisation gap


def bound_vs_gap(results: Sequence[SettingResult]) -> pd.DataFrame:
    """Per setting, margin choice (uniform, theory) and class k:

    * ``margin_term`` = 4 B sqrt(K / n_k) sqrt(a_hat_k) / gamma_k (``theory.class_bound_term``): the
      complexity term of class k's own bound (``theory.limits.worst_class``; Maurer's vector
      contraction with the 1/gamma_k-Lipschitz ramp, ||[W, b]||_F <= B). B is the trained model's own
      norm and a_hat_k the class's empirical mean ||(x, 1)||^2, so it is the data-dependent value of
      the term (no union bound over B);
    * ``gen_gap`` = test error - training error (0-1) of class k, the true generalisation gap;
    * ``ramp_gap`` = test error - empirical ramp risk at gamma_k, the gap the bound controls.

    Means over seeds with bootstrap CIs.
    """
    rows = []
    for res in results:
        s = res.setting
        m = s.mixture
        base = dict(zip(REGIME_COLS, regime(res), strict=True))
        base["sigma_ratio"] = sigma_ratio(res) if m.K == 2 else np.nan
        base["setting"] = s.key
        for choice, idx in (("uniform", res.uniform_index), ("theory", res.theory_index)):
            parts = res.bound[choice]
            gam = res.margins[idx]
            test = res.errors[:, idx]  # (S, K)
            B = parts["weight_norm"]  # (S,)
            term = np.stack(
                [
                    class_bound_term(a, gam, m.n_per_class, weight_norm=float(b))
                    for a, b in zip(parts["spread_emp"], B, strict=True)
                ]
            )  # (S, K)
            gen = test - parts["train_error"]
            ramp = test - parts["ramp_risk"]
            names = ("margin_term", "gen_gap", "ramp_gap", "test_error")
            V = np.concatenate([term, gen, ramp, test], axis=1)  # (S, 4K): one bootstrap for all
            point, (lo, hi) = bootstrap_ci(V, rng=boot_rng(), n_boot=N_BOOT)
            for k in range(m.K):
                row = {**base, "choice": choice, "class": k, "class_sigma": m.sigmas[k], "margin": gam[k]}
                for j, name in enumerate(names):
                    col = j * m.K + k
                    row.update({name: point[col], f"{name}_ci_low": lo[col], f"{name}_ci_high": hi[col]})
                row["weight_norm"] = float(B.mean())
                rows.append(row)
    return pd.DataFrame(rows)
