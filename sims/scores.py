"""Every margin rule's prediction of the empirically optimal margins, and how well each one scores.

A *rule* maps a setting's population parameters to a log-ratio of margins log(gamma_k / gamma_ref):

* ``bound``: the class-sensitive bound's a_k^(1/3) (``theory.optimal_margins``, balanced classes),
  a_k = ||mu_k||^2 + tr(Sigma_k);
* ``oracle``: the error-optimal linear boundary of the population (``theory.oracle.oracle_margins``)
  under the setting's criterion, from the classes' SDs and the distances between their means (exact
  for K = 2; nearest-rival approximation for K > 2);
* ``ldam``: LDAM's n_k^(-1/4) (``theory.ldam_margins``): 0 whenever the classes are balanced;
* ``uniform``: 0.

The mapping (stated, not fitted). The sims' gamma_k is a parameter of the training loss; the oracle's
m_k is a geometric distance from the class mean to the boundary. We take the oracle's *ratio* of
distances as its prediction of the ratio of loss margins, log(gamma_k / gamma_ref) := log(m_k / m_ref):
for a linear rule z = W x + b the functional margin of a point is ||w|| times its distance to the
boundary, so a classifier that meets per-class functional margins gamma_k at its support points has
geometric margins in the same ratio (the hard-margin limit, which the additive form and, on separable
training sets, the temperature form approach). Nothing is scaled or fitted to the sims.

Whether the trained classifier follows that mapping is measured, for K = 2 with isotropic classes,
from the exact class errors the sweep stores: a linear rule with unit normal w errs on class k with
probability Q(m_k / sigma_k), so m_k = -sigma_k Phi^-1(err_k) is the trained boundary's signed distance
from mu_k, and m_0 + m_1 = |w . (mu_0 - mu_1)| <= ||mu_0 - mu_1|| (equality only along the population
optimum's direction). :func:`k2_geometry` reports, at the empirical optimum, the trained boundary's
own log-ratio of distances, the share of the separation it keeps, the oracle's ratio for that kept
separation, the slope of geometric against loss log-ratio at uniform margins (+1 = the stated mapping,
< 0 = a larger loss margin *shrinks* the class's room) and the population oracle's error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from mr2_core.checks import bad
from mr2_core.contracts import SIMS_RULE_COLUMNS, SIMS_RULES, SIMS_SCORE_KEYS
from sims.config import MixtureConfig
from sims.evaluate import CRITERIA

__all__ = [
    "ORACLE_CRITERIA",
    "SCORE_KEYS",
    "separation",
    "oracle_inputs",
    "rule_log_ratios",
    "rule_columns",
    "k2_geometry",
    "rule_scores",
    "geometry_scores",
]

# sims' criterion name -> theory.oracle's
ORACLE_CRITERIA = {"balanced": "balanced", "worst_class": "worst"}
SCORE_KEYS = SIMS_SCORE_KEYS  # one rule_scores.csv row per key and rule
ZERO_ATOL = 1e-12  # a prediction this close to 0 is "uniform"
ERR_FLOOR = 1e-300  # class errors are clipped here before Phi^-1 (an exact 0 has no finite distance)


def separation(mixture: MixtureConfig) -> np.ndarray:
    """Distances between the class means ||mu_k - mu_j||, shape (K, K) (feature units)."""
    mu = mixture.mean_vectors()
    return np.linalg.norm(mu[:, None, :] - mu[None, :, :], axis=-1)


def oracle_inputs(mixture: MixtureConfig) -> tuple[np.ndarray, np.ndarray | float]:
    """(sigmas (K,), delta) for ``theory.oracle.oracle_margins``: the classes' SDs along the boundary
    normal and the distance(s) between the means (a scalar for K = 2, a (K, K) matrix otherwise).

    K = 2: the SDs are projected on the mean difference, so anisotropic classes are handled exactly.
    K > 2 needs isotropic classes (the oracle's model); anything else raises ValueError.
    """
    D = separation(mixture)
    if mixture.K == 2:
        mu = mixture.mean_vectors()
        u = (mu[1] - mu[0]) / D[0, 1]
        cov = mixture.cov_diagonals()  # (2, d)
        return np.sqrt(cov @ (u * u)), float(D[0, 1])
    if mixture.cov_diag is not None:
        raise bad("mixture.cov_diag", mixture.cov_diag, "None (isotropic classes) for the K > 2 oracle")
    return np.asarray(mixture.sigmas, dtype=np.float64), D


def _oracle_margins(sigmas: np.ndarray, delta, crit: str) -> np.ndarray:
    from theory.oracle import oracle_margins

    if crit not in ORACLE_CRITERIA:
        raise bad("criterion", crit, f"one of {CRITERIA}")
    return np.asarray(oracle_margins(sigmas, delta, ORACLE_CRITERIA[crit]), dtype=np.float64)


def _log_ratio(m: np.ndarray, ref: int) -> np.ndarray:
    """log(m_k / m_ref), shape (K,); NaN where a margin is not > 0 (no log of a negative distance)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(m / m[ref])
    return np.where((m > 0) & (m[ref] > 0), out, np.nan)


def rule_log_ratios(
    mixture: MixtureConfig, spread_margins: np.ndarray, crit: str, reference: int
) -> dict[str, np.ndarray]:
    """Each rule's predicted log(gamma_k / gamma_ref), shape (K,), for one setting and criterion.

    Args:
        mixture: the setting's population.
        spread_margins: the bound's margins for this setting (``theory.optimal_margins`` of the
            population spreads, as the sweep trained them), shape (K,).
        crit: one of ``sims.evaluate.CRITERIA``.
        reference: index of the reference class.
    """
    from theory import ldam_margins

    sig, delta = oracle_inputs(mixture)
    return {
        "bound": _log_ratio(np.asarray(spread_margins, dtype=np.float64), reference),
        "oracle": _log_ratio(_oracle_margins(sig, delta, crit), reference),
        "ldam": _log_ratio(np.asarray(ldam_margins(np.asarray(mixture.n_per_class, float))), reference),
        "uniform": np.zeros(mixture.K),
    }


def rule_columns(res, crit: str, k: int) -> dict[str, float]:
    """The rule columns of one ``margin_vs_*`` row (class k of a setting, one criterion), except the
    bound's, which the row already holds as ``theory_log_margin_ratio``."""
    s = res.setting
    preds = rule_log_ratios(s.mixture, res.theory_margins, crit, s.reference)
    D = separation(s.mixture)
    out = {"separation": float(D[k, s.reference])}
    for rule in SIMS_RULES:
        col = SIMS_RULE_COLUMNS[rule]
        if col != "theory_log_margin_ratio":
            out[col] = float(preds[rule][k])
    return out


def _distances(errors: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Signed distances m_k = -sigma_k Phi^-1(err_k) of K = 2 linear rules from the class means."""
    return -sigmas * ndtri(np.clip(errors, ERR_FLOOR, 1.0 - 1e-16))


def k2_geometry(res, crit: str, r_opt: float, grid: np.ndarray) -> dict[str, float]:
    """Where the trained boundary sits, for a K = 2 setting with isotropic classes (else NaNs).

    Args:
        res: the setting's ``SettingResult``.
        crit: the criterion whose optimum ``r_opt`` is.
        r_opt: the empirical optimum log(gamma_v / gamma_ref) (loss-margin units).
        grid: (C,) bool, the candidates of the log-ratio grid (increasing ``res.log_ratio``).

    Returns (seed means of the distances, interpolated at r_opt on the grid):
        ``opt_geo_log_ratio``: log(m_v / m_ref) of the trained boundary;
        ``separation_kept``: (m_v + m_ref) / ||mu_v - mu_ref|| (1 = the population's direction);
        ``oracle_geo_log_ratio``: the oracle's log(m_v / m_ref) for that kept separation;
        ``geo_gain``: d log(m_v/m_ref) / d log(gamma_v/gamma_ref) at uniform margins;
        ``oracle_error``: the criterion's error of the population oracle (the best linear rule).
    """
    nan = dict.fromkeys(
        ("opt_geo_log_ratio", "oracle_geo_log_ratio", "separation_kept", "geo_gain", "oracle_error"), np.nan
    )
    s = res.setting
    m = s.mixture
    if m.K != 2 or m.cov_diag is not None:
        return nan
    ref, v = s.reference, 1 - s.reference
    sig, delta = oracle_inputs(m)
    r = res.log_ratio[grid]
    dist = _distances(res.errors[:, grid], sig).mean(0)  # (G, 2)
    at = np.array([np.interp(r_opt, r, dist[:, j]) for j in range(2)])
    kept = float(at.sum())
    out = dict(nan)
    out["separation_kept"] = kept / delta
    out["opt_geo_log_ratio"] = float(_log_ratio(at, ref)[v])
    if kept > 0:
        out["oracle_geo_log_ratio"] = float(_log_ratio(_oracle_margins(sig, kept, crit), ref)[v])
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.where((dist > 0).all(1), np.log(dist[:, v] / dist[:, ref]), np.nan)
    i0 = int(np.argmin(np.abs(r)))
    if 0 < i0 < r.size - 1:
        out["geo_gain"] = float((geo[i0 + 1] - geo[i0 - 1]) / (r[i0 + 1] - r[i0 - 1]))
    pop = _oracle_margins(sig, delta, crit)
    err = ndtr(-pop / sig)
    out["oracle_error"] = float(err.mean() if crit == "balanced" else err.max())
    return out


def _score(frame: pd.DataFrame, pred_col: str) -> dict[str, float]:
    pred = frame[pred_col].to_numpy(dtype=np.float64)
    opt = frame["opt_log_margin_ratio"].to_numpy(dtype=np.float64)
    ok = np.isfinite(pred)
    err = pred[ok] - opt[ok]
    inside = (frame["ci_low"].to_numpy()[ok] <= pred[ok]) & (pred[ok] <= frame["ci_high"].to_numpy()[ok])
    return {
        "settings": int(ok.sum()),
        "no_prediction": int((~ok).sum()),
        "mae": float(np.abs(err).mean()) if ok.any() else np.nan,
        "bias": float(err.mean()) if ok.any() else np.nan,
        "in_ci": float(inside.mean()) if ok.any() else np.nan,
        "censored": int(frame["at_boundary"].to_numpy(dtype=bool)[ok].sum()),
    }


def informative(frame: pd.DataFrame) -> pd.Series:
    """Rows where some rule predicts a non-uniform ratio (the others, e.g. sigma ratio 1 with balanced
    classes, score every rule alike and are left out of the scores)."""
    cols = [SIMS_RULE_COLUMNS[r] for r in SIMS_RULES]
    return (frame[cols].abs() > ZERO_ATOL).any(axis=1)


def rule_scores(frame: pd.DataFrame, by: Sequence[str] = SCORE_KEYS) -> pd.DataFrame:
    """Score every rule against the empirical optima of ``margin_vs_*`` rows, one row per group and rule.

    Per group of ``by``: ``settings`` scored (rows with a finite prediction, informative rows only),
    ``no_prediction`` (rows where the rule has none, e.g. a balanced-oracle margin <= 0), ``mae`` =
    mean |predicted - optimal| log-ratio, ``bias`` = mean (predicted - optimal) (> 0: the rule gives
    the varied class too large a margin), ``in_ci`` = share of rows whose 95% CI of the optimum holds
    the prediction, ``censored`` = rows whose optimum is at the end of the search (its error is then
    a bound, not a value), ``rank`` = the rule's place by ``mae`` in its group (1 = best).
    """
    missing = [c for c in (*by, "opt_log_margin_ratio", "ci_low", "ci_high", "at_boundary") if c not in frame]
    if missing:
        raise bad("frame", list(frame.columns), f"the columns of margin_vs_variance.csv (missing {missing})")
    rows = []
    use = frame[informative(frame)]
    for key, g in use.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for rule in SIMS_RULES:
            rows.append(
                {**dict(zip(by, key, strict=True)), "rule": rule, **_score(g, SIMS_RULE_COLUMNS[rule])}
            )
    out = pd.DataFrame(rows)
    if len(out):
        out["rank"] = out.groupby(list(by))["mae"].rank(method="min").astype("Int64")
    return out


def geometry_scores(frame: pd.DataFrame, by: Sequence[str] = SCORE_KEYS) -> pd.DataFrame:
    """The oracle in its own units (K = 2): per group, the mean |trained - oracle| geometric log-ratio
    at the empirical optimum, the mean separation kept, the mean geometric gain and the mean excess
    error of the empirical optimum over the population oracle."""
    use = frame[informative(frame) & frame["opt_geo_log_ratio"].notna()]
    rows = []
    for key, g in use.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        diff = (g["oracle_geo_log_ratio"] - g["opt_geo_log_ratio"]).dropna()
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "settings": len(g),
                "geo_mae": float(diff.abs().mean()) if len(diff) else np.nan,
                "geo_bias": float(diff.mean()) if len(diff) else np.nan,
                "separation_kept": float(g["separation_kept"].mean()),
                "geo_gain": float(g["geo_gain"].mean()),
                "excess_error": float((g["opt_error"] - g["oracle_error"]).mean()),
            }
        )
    return pd.DataFrame(rows)
