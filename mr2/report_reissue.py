"""Re-issue a shipped study report (``docs/results/<study>/``) whose per-run values were not kept.

The shipped folders hold ``summary.csv``, ``correlation.csv``, ``report.md`` and PNGs. Their Student-t
intervals (``ci_method`` "t") store the mean, the interval and n, hence the sample SD exactly:
``sd = (ci_high - ci_low) / 2 · sqrt(n) / t_{0.975, n-1}``. The range-respecting interval of
``mr2_core.intervals`` needs only the mean, the SD and n (:func:`mr2_core.stats.interval_from_moments`),
so it is recomputed exactly, and its ``ci_method`` says where it came from ("..., from the stored mean
and SD"). Differences are clipped to [-1, 1]. Below ``MIN_CLAIM_SEEDS`` paired seeds the MDE and
TOST bound are dropped; a difference of SD 0 loses its test, and Holm is recomputed over the tests
left (an endpoint that is another's alias, and rules whose rows are identical, counted once). The
verdicts are rewritten with :func:`mr2.report.verdict`.

``report.md`` is patched, not rebuilt (its per-class tables need the runs): every interval, paired
row and verdict is re-rendered from the old numbers and replaced by the new rendering, and a note at
the top says what was re-issued. Bootstrap intervals (``fmnist-verify``) stay in the range by
construction and are left as they are.

``python -m mr2.report_reissue docs/results/<study> ...`` rewrites the folders in place.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mr2.report import ALPHA, METRIC_BOUNDS, POWER, _alias, verdict
from mr2.report_markdown import POINTS, _fmt, _p, _points
from mr2_core.contracts import METRIC_LABELS, SUMMARY_METRICS
from mr2_core.stats import (
    CORRELATION,
    DIFFERENCE,
    MIN_CLAIM_SEEDS,
    SD_TOL,
    ci_label,
    holm,
    interval_from_moments,
)

__all__ = ["FROM_STORED", "stored_sd", "reissue_summary", "reissue_correlation", "reissue_markdown", "main"]

FROM_STORED = " (from the stored mean and SD)"  # appended to the ci_method of a re-issued interval
CONFIDENCE = 0.95  # of the shipped intervals


def stored_sd(low: float, high: float, n: int, confidence: float = CONFIDENCE) -> float:
    """The sample SD behind a stored Student-t interval [low, high] of a mean over n runs."""
    from scipy import stats

    return (high - low) / 2.0 * math.sqrt(n) / stats.t.ppf(0.5 + confidence / 2.0, n - 1)


def _bounded(point: float, low: float, high: float, n: int, bounds) -> tuple[float, float]:
    if not (np.isfinite(low) and np.isfinite(high)) or n < 2:
        return low, high
    _, (lo, hi) = interval_from_moments(point, stored_sd(low, high, n), n, bounds=bounds)
    return lo, hi


def reissue_summary(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """``summary.csv`` of a shipped report with range-respecting intervals (module docstring).

    Args:
        table: the shipped summary (``ci_method`` "t" rows are recomputed, others kept).
        k: number of classes (the bottom-10% is the worst class when ``tail_size(k) == 1``).
    """
    out = table.copy()
    t_rows = out["ci_method"].astype(str).eq("t") if "ci_method" in out else pd.Series(False, index=out.index)
    for i in out.index[t_rows]:
        r = out.loc[i]
        bounds = METRIC_BOUNDS[r["metric"]]
        lo, hi = _bounded(r["point"], r["ci_low"], r["ci_high"], int(r["n_seeds"]), bounds)
        out.loc[i, ["ci_low", "ci_high"]] = lo, hi
        out.loc[i, "ci_method"] = ci_label("t", bounds) + FROM_STORED
        n = int(r["n_paired"])
        if not np.isfinite(r["diff_ci_low"]) or n < 2:
            continue
        sd = float(r["diff_sd"])
        if sd <= SD_TOL * max(1.0, abs(r["diff"])):
            out.loc[i, ["diff_ci_low", "diff_ci_high"]] = r["diff"], r["diff"]
            out.loc[i, ["p_value", "wilcoxon_p", "mde", "tost_bound"]] = np.nan
            continue
        _, (dlo, dhi) = interval_from_moments(r["diff"], sd, n, bounds=DIFFERENCE, scale="clip")
        out.loc[i, ["diff_ci_low", "diff_ci_high"]] = dlo, dhi
        if n < MIN_CLAIM_SEEDS:
            out.loc[i, ["mde", "tost_bound"]] = np.nan
    _reholm(out, k)
    todo = out["verdict"] != "baseline"
    out.loc[todo, "verdict"] = [
        verdict(r["metric"], diff=r["diff"], p_holm=r["p_holm"], n=int(r["n_paired"]), mde=r["mde"],
                tost_bound=r["tost_bound"], alpha=ALPHA, power=POWER, sd=r["diff_sd"])
        for _, r in out[todo].iterrows()
    ]  # fmt: skip
    return out


def _reholm(out: pd.DataFrame, k: int) -> None:
    """Holm over the tests left, each counted once (aliases and identical rules)."""
    rules = list(dict.fromkeys(out["selection"]))
    cols = ["loss", "metric", "point", "ci_low", "ci_high", "diff", "p_value"]
    sig = {r: out.loc[out["selection"] == r, cols].round(12).to_csv(index=False) for r in rules}
    same = {r: next(q for q in rules if sig[q] == sig[r]) for r in rules}
    family = out[out["p_value"].notna()].copy()
    family["endpoint"] = [_alias(m, k) for m in family["metric"]]
    family["rule"] = family["selection"].map(same)
    keys = ["rule", "loss", "endpoint"]
    tests = family.drop_duplicates(keys).copy()
    out["p_holm"] = np.nan
    if len(tests):
        tests["p_holm"] = holm(tests["p_value"].to_numpy())
        merged = family[keys].merge(tests[[*keys, "p_holm"]], on=keys, how="left")
        out.loc[family.index, "p_holm"] = merged["p_holm"].to_numpy()
    out.attrs["n_tests"] = len(tests)
    out.attrs["rule_groups"] = [[r for r in rules if same[r] == q] for q in dict.fromkeys(same.values())]


def reissue_correlation(corr: pd.DataFrame, t_method: bool) -> pd.DataFrame:
    """``correlation.csv`` with Fisher-z intervals of the mean rho (from the stored mean and SD) when
    the shipped intervals were t intervals (``t_method``); bootstrap intervals are kept."""
    out = corr.copy()
    if not t_method:
        if "ci_method" not in out:
            out["ci_method"] = "percentile"
        return out
    for i in out.index:
        r = out.loc[i]
        if np.isfinite(r["rho"]):
            lo, hi = _bounded(r["rho"], r["ci_low"], r["ci_high"], int(r["n_seeds"]), CORRELATION)
            out.loc[i, ["ci_low", "ci_high"]] = lo, hi
    out["ci_method"] = ci_label("t", CORRELATION) + FROM_STORED
    return out


def _shipped_fmt(point: float, low: float, high: float, digits: int = 4, scale: float = 1.0) -> str:
    """The shipped reports' interval format (a zero-width interval as [x, x])."""
    if np.isfinite(point) and np.isfinite(low) and np.isfinite(high):
        return f"{scale * point:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return _fmt(point, low, high, digits, scale)


def _paired_cells(r: pd.Series, fmt=_fmt) -> str:
    return " | ".join([
        r["loss"], METRIC_LABELS[r["metric"]], str(int(r["n_paired"])),
        fmt(r["diff"], r["diff_ci_low"], r["diff_ci_high"], 2, POINTS), _p(r["p_value"]), _p(r["p_holm"]),
        _p(r["wilcoxon_p"]), _points(r["mde"]), _points(r["tost_bound"]), r["verdict"],
    ])  # fmt: skip


def _accuracy_row(grp: pd.DataFrame, fmt=_fmt) -> str:
    g = grp.set_index("metric")
    cells = [fmt(*g.loc[m, ["point", "ci_low", "ci_high"]]) for m in SUMMARY_METRICS]
    return "| " + " | ".join([str(grp["loss"].iloc[0]), str(int(g["n_seeds"].iloc[0])), *cells]) + " |"


def reissue_markdown(text: str, old: pd.DataFrame, new: pd.DataFrame, old_corr, new_corr, stamp: str) -> str:
    """Patch a shipped ``report.md``: intervals, paired rows, verdicts, Holm count, the heading; a
    note at the top. Every replacement is of a string rendered from the old numbers by the same
    formatting code that wrote it."""
    swaps: dict[str, str] = {}
    for i in old.index:
        a, b = old.loc[i], new.loc[i]
        swaps[f"| {_paired_cells(a, _shipped_fmt)} |"] = f"| {_paired_cells(b)} |"
        if a["verdict"] != b["verdict"]:
            swaps[f"points: {a['verdict']}"] = f"points: {b['verdict']}"
    for _, grp in old.groupby(["selection", "loss"], sort=False):  # the accuracy tables, row by row
        swaps[_accuracy_row(grp, _shipped_fmt)] = _accuracy_row(new.loc[grp.index])
    for i in old_corr.index:
        a, b = old_corr.loc[i], new_corr.loc[i]
        before = _shipped_fmt(a["rho"], a["ci_low"], a["ci_high"], 3)
        swaps[f"| {before} |"] = f"| {_fmt(b['rho'], b['ci_low'], b['ci_high'], 3)} |"
    for before, after in sorted(swaps.items(), key=lambda kv: -len(kv[0])):  # rows before their cells
        if before != after:
            text = text.replace(before, after)
    count = f"Holm-adjusted over the {new.attrs['n_tests']} comparisons"
    text = re.sub(r"Holm-adjusted over the \d+ comparisons", count, text)
    text = text.replace("## Does MR² help?", "## Verdicts: the MR² variants vs CE")
    head, _, rest = text.partition("\n\n")
    note = (
        f"> **Re-issued {stamp}.** The intervals of this report were recomputed from the stored mean, SD "
        "and n (summary.csv, correlation.csv; the per-run values were not kept): Student t on the logit "
        "scale for accuracies, on the log scale for the std over classes, on Fisher's z scale for rho, so "
        "that none leaves its metric's range; differences: t clipped to [-1, 1]. A difference of SD 0 has "
        f"no test; below {MIN_CLAIM_SEEDS} paired seeds no TOST bound or MDE is stated; Holm counts rules "
        f"whose rows are identical once ({new.attrs['n_tests']} tests). Means, differences and p-values are "
        "unchanged otherwise."
    )
    fewest = int(new["n_seeds"].min())
    if fewest < MIN_CLAIM_SEEDS:
        note += f"\n\n> **Too few seeds** (fewest: {fewest}): treat these numbers as a pilot."
    return f"{head}\n\n{note}\n\n{rest}"


def reissue_folder(folder: Path, stamp: str) -> dict[str, int]:
    """Re-issue one shipped report folder in place; returns counts of what changed."""
    from mr2_core.io import write_csv, write_text

    summ = pd.read_csv(folder / "summary.csv")
    corr = pd.read_csv(folder / "correlation.csv")
    t_method = "ci_method" in summ and summ["ci_method"].astype(str).eq("t").any()
    if not t_method:
        write_csv(folder / "correlation.csv", reissue_correlation(corr, False))
        return {"rows": 0}
    k = _classes(folder)
    new = reissue_summary(summ, k)
    new_corr = reissue_correlation(corr, True)
    text = reissue_markdown((folder / "report.md").read_text(), summ, new, corr, new_corr, stamp)
    write_csv(folder / "summary.csv", new)
    write_csv(folder / "correlation.csv", new_corr)
    write_text(folder / "report.md", text)
    return {"rows": len(new)}


def _classes(folder: Path) -> int:
    m = re.search(r"\((\d+) classes\)", (folder / "report.md").read_text())
    if m is None:
        raise ValueError(f"{folder}/report.md: cannot read the number of classes")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    import datetime

    stamp = datetime.date.today().isoformat()
    for name in argv if argv is not None else sys.argv[1:]:
        print(name, reissue_folder(Path(name), stamp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
