"""Study reports: per-class numbers over seeds with CIs, paired tests against the baseline that can say
"no", and the bound's spread a_k tested on real features.

Inputs are the run directories of one study (``RUNS/<study>/<loss>/seed<k>/metrics.json``, read and
checked by :mod:`mr2.study`). Every interval comes from ``mr2_core.stats.interval_estimates`` (Student t
over seeds by default; BCa or percentile bootstrap on request, drawn from one explicit Generator),
every paired test from ``mr2_core.stats.paired_comparison``.

* :func:`summary`: for each selection rule, loss and metric, the mean over seeds with its CI, and the
  paired difference to the baseline over the seeds both have: its CI, the paired-t p-value (and
  Wilcoxon's as a check), the Holm-adjusted p over every comparison of the report, the minimum
  detectable effect at 80% power and the TOST equivalence bound, read as one verdict sentence.
* :func:`spread_error_correlation`: per run, Spearman's rho between a_k = ||mu_k||² + s_k² (training
  features of the selected model) and the class's test error 1 - acc_k; the mean over seeds with its CI.
* :func:`class_intervals`, :func:`paired_class_differences`: per-class means and paired differences
  with CIs, for the figures (``paper_figs.study_plots`` draws them; nothing here plots).
* :func:`write_report`: ``report.md``, ``summary.csv``, ``correlation.csv`` (and figures through a
  callback, so this layer never imports the plotting one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mr2_core.checks import bad, check_in, check_int
from mr2_core.contracts import (
    BASELINE_LOSS,
    CI_METHODS,
    HIGHER_IS_BETTER,
    REPORT_SUMMARY_COLUMNS,
    SUMMARY_METRICS,
)
from mr2_core.seeding import as_generator
from mr2_core.stats import MIN_BOOT, holm, interval_estimates, paired_comparison
from mr2_core.summaries import tail_size
from mr2.report_markdown import POINTS, render_markdown
from mr2.study import load_study, per_class_table, select, selection_rules

__all__ = [
    "METRICS",
    "HIGHER_IS_BETTER",
    "ALPHA",
    "POWER",
    "load_study",
    "per_class_table",
    "select",
    "selection_rules",
    "summary",
    "spread_error_correlation",
    "class_intervals",
    "paired_class_differences",
    "verdict",
    "StudyReport",
    "margin_range",
    "build_report",
    "write_report",
]

METRICS = SUMMARY_METRICS
ALPHA = 0.05  # two-sided level of the paired tests, of the Holm family and of each TOST one-sided test
POWER = 0.8  # power at which the minimum detectable effect is stated
# the paired-comparison columns of summary.csv (REPORT_SUMMARY_COLUMNS), NaN until computed
_PAIRED = (
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "diff_sd",
    "p_value",
    "p_holm",
    "wilcoxon_p",
    "mde",
    "tost_bound",
)
# statistic label -> function of a run (row) giving its (K,) values; labels avoid '|' (Markdown cells)
SPREAD_STATS: dict[str, Callable[[pd.Series], Any]] = {
    "a_k": lambda r: r["class_spread"],
    "s_k²": lambda r: r["class_within_spread"],
    "‖mu_k‖²": lambda r: r["class_mean_norm2"],
    # scale-free: within-class spread relative to the class mean's squared norm
    "s_k²/‖mu_k‖²": lambda r: np.asarray(r["class_within_spread"]) / np.asarray(r["class_mean_norm2"]),
    # the statistic the bound supports with a bias in the head: ||mu_k - mu_bar||² + s_k²
    "centred a_k": lambda r: r["class_centred_spread"],
    # s_k² / min_j ||mu_k - mu_j||²: a heuristic suggested by data, not a consequence of the bound
    "separation": lambda r: r["class_separation"],
    # s_k / (s_k + s_j), j the nearest class mean: the two-Gaussian worst-class share (oracle)
    "oracle share": lambda r: r["class_oracle_share"],
}
_SPREAD_NEEDS = {
    "a_k": ("class_spread",),
    "s_k²": ("class_within_spread",),
    "‖mu_k‖²": ("class_mean_norm2",),
    "s_k²/‖mu_k‖²": ("class_within_spread", "class_mean_norm2"),
    "centred a_k": ("class_centred_spread",),
    "separation": ("class_separation",),
    "oracle share": ("class_oracle_share",),
}


def _check_ci(ci: str, n_boot: int) -> None:
    check_in("ci", ci, CI_METHODS)
    if ci != "t":
        check_int("n_boot", n_boot, MIN_BOOT)


def _interval(values: np.ndarray, ci: str, gen: np.random.Generator | None, n_boot: int) -> tuple:
    row = interval_estimates({"x": values}, method=ci, rng=gen, n_boot=n_boot).iloc[0]
    return float(row["point"]), float(row["ci_low"]), float(row["ci_high"])


def _alias(metric: str, k: int) -> str:
    """The endpoint a metric is: with a one-class tail (K <= 10) the bottom-10% *is* the worst class,
    one test, counted once in the Holm family."""
    return "worst_class_accuracy" if metric == "bottom10_accuracy" and tail_size(k) == 1 else metric


def summary(
    runs: pd.DataFrame,
    *,
    baseline: str = BASELINE_LOSS,
    ci: str = "t",
    rng: int | np.random.Generator | None = None,
    n_boot: int = 2000,
    selection: Sequence[str] | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
) -> pd.DataFrame:
    """Means over seeds and paired comparisons with ``baseline``, per selection rule.

    Args:
        runs: :func:`load_study`'s table.
        baseline: the loss the others are paired with (same seeds).
        ci: interval method of the means and of the differences' CIs (``mr2_core.contracts.CI_METHODS``).
            The p-values, MDE and TOST bound are t-based whatever ``ci`` is.
        rng: seed or Generator of a bootstrap ``ci`` (unused by ``"t"``).
        n_boot: resamples of a bootstrap ``ci`` (>= ``mr2_core.stats.MIN_BOOT``).
        selection: the rules to report (default: every rule the runs have, :func:`selection_rules`).
        alpha, power: level of the tests (and of the Holm family), power of the stated MDE.

    Returns:
        one row per (selection, loss, metric), the columns ``REPORT_SUMMARY_COLUMNS`` but ``study``:
        ``n_seeds, point, ci_low, ci_high`` (mean over seeds; no CI with one seed) and, against the
        baseline on the ``n_paired`` seeds both have, ``diff, diff_ci_low, diff_ci_high, diff_sd,
        p_value`` (paired t), ``p_holm`` (Holm over every comparison in the table, an endpoint that
        is another's alias counted once), ``wilcoxon_p``, ``mde`` and ``tost_bound`` (accuracy units),
        and the ``verdict`` sentence. The baseline's own rows have diff 0 and the verdict "baseline".
    """
    losses = list(dict.fromkeys(runs["loss"]))
    if baseline not in losses:
        raise bad("baseline", baseline, f"one of the study's losses {losses}")
    _check_ci(ci, n_boot)
    gen = as_generator(rng) if ci != "t" else None
    available = selection_rules(runs)
    selection = [selection] if isinstance(selection, str) else selection
    rules = list(available) if selection is None else [check_in("selection", r, available) for r in selection]
    k = len(runs["per_class_accuracy"].iloc[0])
    rows = []
    for rule in rules:
        view = select(runs, rule)
        base = view[view["loss"] == baseline].set_index("seed")
        for loss, grp in view.groupby("loss", sort=False):
            grp = grp.set_index("seed")
            paired = grp.index.intersection(base.index).sort_values()
            for metric in METRICS:
                point, low, high = _interval(grp[metric].to_numpy(float), ci, gen, n_boot)
                row = {"selection": rule, "loss": loss, "metric": metric, "n_seeds": len(grp), "point": point,
                       "ci_low": low, "ci_high": high, "ci_method": ci, "n_paired": len(paired)}  # fmt: skip
                row.update(dict.fromkeys(_PAIRED, np.nan))
                if loss == baseline:
                    row.update(diff=0.0, verdict="baseline")
                elif len(paired) >= 1:
                    d = grp.loc[paired, metric].to_numpy(float) - base.loc[paired, metric].to_numpy(float)
                    row["diff"] = float(d.mean())
                    if len(paired) >= 2:
                        res = paired_comparison(d, np.zeros_like(d), alpha=alpha, power=power)
                        lo, hi = (res.ci_low, res.ci_high) if ci == "t" else _interval(d, ci, gen, n_boot)[1:]
                        row.update(diff_ci_low=lo, diff_ci_high=hi, diff_sd=res.sd, p_value=res.p_value,
                                   wilcoxon_p=res.wilcoxon_p, mde=res.mde,
                                   tost_bound=res.tost_bound)  # fmt: skip
                rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in REPORT_SUMMARY_COLUMNS if c != "study"])
    family = table[table["p_value"].notna()].copy()
    family["endpoint"] = [_alias(m, k) for m in family["metric"]]
    keys = ["selection", "loss", "endpoint"]
    tests = family.drop_duplicates(keys).copy()  # an alias is the same test: counted once
    if len(tests):
        tests["p_holm"] = holm(tests["p_value"].to_numpy())
        merged = family[keys].merge(tests[[*keys, "p_holm"]], on=keys, how="left")
        table.loc[family.index, "p_holm"] = merged["p_holm"].to_numpy()
    table.attrs["n_tests"] = len(tests)
    todo = table["verdict"].isna()
    table.loc[todo, "verdict"] = [
        verdict(r["metric"], diff=r["diff"], p_holm=r["p_holm"], n=r["n_paired"], mde=r["mde"],
                tost_bound=r["tost_bound"], alpha=alpha, power=power)
        for _, r in table[todo].iterrows()
    ]  # fmt: skip
    return table


def verdict(
    metric: str,
    *,
    diff: float,
    p_holm: float,
    n: int,
    mde: float,
    tost_bound: float,
    alpha: float = ALPHA,
    power: float = POWER,
) -> str:
    """The reading of one paired comparison (differences in accuracy units, stated in points).

    "improves"/"worsens (Holm-adjusted p = ..)" when the Holm-adjusted paired-t p is below ``alpha``
    (for ``class_accuracy_std`` lower is better); otherwise "no detectable effect; effects larger than
    X points are excluded (TOST, alpha ..); MDE at 80% power = Y points with n seeds". Fewer than two
    paired seeds: no interval and no test exist, and the sentence says so.
    """
    if n == 0:
        return "no seed shared with the baseline: no comparison"
    if n == 1 or not np.isfinite(p_holm):
        return f"{n} paired seed: no interval and no test can be made (diff {POINTS * diff:+.2f} points)"
    if p_holm < alpha:
        better = (diff > 0) == HIGHER_IS_BETTER[metric]
        return f"{'improves' if better else 'worsens'} (Holm-adjusted p = {p_holm:.2g})"
    return (
        f"no detectable effect; effects larger than {POINTS * tost_bound:.2f} points are excluded (TOST, "
        f"alpha {alpha:g}); MDE at {100 * power:.0f}% power = {POINTS * mde:.2f} points with {n} seeds"
    )


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of x, y (n, K) -> (n,), via Pearson on average ranks."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx = rx - rx.mean(1, keepdims=True)
    ry = ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def spread_error_correlation(
    runs: pd.DataFrame, *, ci: str = "t", rng: int | np.random.Generator | None = None, n_boot: int = 2000
) -> pd.DataFrame:
    """Does the bound's spread identify the hard classes? Spearman's rho between a per-class feature
    statistic and the class's test error (1 - acc_k), per run, then the mean over seeds with its CI.

    Uses each run's top-level numbers (the spreads are measured on that model's training features).

    Returns one row per (loss, statistic) with statistic in ``a_k`` (the bound's ||mu_k||² + s_k²),
    ``s_k²`` (within-class spread), ``‖mu_k‖²`` and the scale-free ratio ``s_k²/‖mu_k‖²``: ``loss,
    statistic, n_seeds, rho, ci_low, ci_high, hardest_match`` (fraction of runs whose largest statistic
    is on the class with the highest error). ``n_seeds`` counts the runs where rho is defined (a
    constant statistic has none); with none, rho is NaN.
    """
    _check_ci(ci, n_boot)
    gen = as_generator(rng) if ci != "t" else None
    rows = []
    for loss, grp in runs.groupby("loss", sort=False):
        err = 1.0 - np.stack(grp["per_class_accuracy"].to_numpy()).astype(float)
        for label, fn in SPREAD_STATS.items():
            if any(key not in grp or grp[key].isna().any() for key in _SPREAD_NEEDS[label]):
                continue
            stat = np.stack([np.asarray(fn(r), dtype=float) for _, r in grp.iterrows()])
            rho = _spearman_rows(stat, err)
            ok = np.isfinite(rho)
            point, low, high = _interval(rho[ok], ci, gen, n_boot) if ok.any() else (np.nan,) * 3
            match = float(np.mean(np.argmax(stat, 1) == np.argmax(err, 1)))
            rows.append({"loss": loss, "statistic": label, "n_seeds": int(ok.sum()), "rho": point,
                         "ci_low": low, "ci_high": high, "hardest_match": match})  # fmt: skip
    return pd.DataFrame(
        rows, columns=["loss", "statistic", "n_seeds", "rho", "ci_low", "ci_high", "hardest_match"]
    )


def _wide(long: pd.DataFrame, loss: str, value: str) -> pd.DataFrame:
    sub = long[long["loss"] == loss]
    return sub.pivot(index="seed", columns="class_index", values=value).sort_index(axis=1)


def _class_names(long: pd.DataFrame) -> pd.Series:
    return long.drop_duplicates("class_index").set_index("class_index")["class_name"]


def class_intervals(
    long: pd.DataFrame,
    *,
    value: str = "accuracy",
    ci: str = "t",
    rng: int | np.random.Generator | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Mean over seeds of ``value`` per (loss, class) with its CI (``interval_estimates``).

    Args:
        long: :func:`per_class_table`'s table.
        value: its column to summarise (``accuracy``, ``error``, ``rel_spread``, ...).

    Returns:
        ``loss, class_index, class_name, mean, ci_low, ci_high, n_seeds``; no CI below 2 seeds.
    """
    _check_ci(ci, n_boot)
    scores = {loss: _wide(long, loss, value).to_numpy() for loss in dict.fromkeys(long["loss"])}
    table = interval_estimates(scores, method=ci, rng=rng, n_boot=n_boot, key_name="loss",
                               index_names=["class_index"])  # fmt: skip
    table.insert(2, "class_name", _class_names(long).loc[table["class_index"]].to_numpy())
    return table.rename(columns={"point": "mean", "n_runs": "n_seeds"})[
        ["loss", "class_index", "class_name", "mean", "ci_low", "ci_high", "n_seeds"]
    ]


def paired_class_differences(
    long: pd.DataFrame,
    loss: str,
    baseline: str = BASELINE_LOSS,
    *,
    ci: str = "t",
    rng: int | np.random.Generator | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Per-class accuracy of ``loss`` minus ``baseline`` on the seeds both have, with CIs.

    Returns:
        ``class_index, class_name, diff, ci_low, ci_high, n_seeds``; no CI below 2 paired seeds.
    """
    _check_ci(ci, n_boot)
    present = sorted(set(long["loss"]))
    for name, arg in ((loss, "loss"), (baseline, "baseline")):
        if name not in present:
            raise bad(arg, name, f"one of the study's losses {present}")
    a, b = _wide(long, loss, "accuracy"), _wide(long, baseline, "accuracy")
    seeds = a.index.intersection(b.index)
    if len(seeds) == 0:
        raise bad("loss", loss, f"a loss with runs on seeds of {baseline!r} (none shared): cannot pair")
    diff = a.loc[seeds].to_numpy() - b.loc[seeds].to_numpy()
    table = interval_estimates({loss: diff}, method=ci, rng=rng, n_boot=n_boot, index_names=["class_index"])
    return pd.DataFrame({
        "class_index": a.columns, "class_name": _class_names(long).loc[a.columns].to_numpy(),
        "diff": table["point"].to_numpy(), "ci_low": table["ci_low"].to_numpy(),
        "ci_high": table["ci_high"].to_numpy(), "n_seeds": len(seeds),
    })  # fmt: skip


# ----------------------------------------------------------------------------------------- report
@dataclass
class StudyReport:
    """Everything a report of one study shows: the runs, their long per-class table (top-level
    numbers), the summary and correlation tables, and how they were made."""

    study_dir: Path
    runs: pd.DataFrame
    long: pd.DataFrame
    table: pd.DataFrame
    corr: pd.DataFrame
    baseline: str
    ci: str
    n_boot: int
    rules: list[str] = field(default_factory=list)
    seed: int | None = None
    endpoints: list[str] = field(default_factory=lambda: list(METRICS))  # metrics tested (no alias)
    margins: pd.DataFrame | None = None  # margin_range(runs)
    alpha: float = ALPHA
    power: float = POWER


def build_report(
    study_dir: str | os.PathLike,
    *,
    baseline: str = BASELINE_LOSS,
    ci: str = "t",
    selection: Sequence[str] | None = None,
    rng: int | np.random.Generator = 0,
    n_boot: int = 2000,
) -> StudyReport:
    """Read a study and compute every table of its report (see :func:`summary`)."""
    runs = load_study(study_dir)
    gen = as_generator(rng)
    table = summary(runs, baseline=baseline, ci=ci, rng=gen, n_boot=n_boot, selection=selection)
    corr = spread_error_correlation(runs, ci=ci, rng=gen, n_boot=n_boot)
    table.insert(0, "study", Path(study_dir).name)
    k = len(runs["per_class_accuracy"].iloc[0])
    return StudyReport(
        study_dir=Path(study_dir), runs=runs, long=per_class_table(runs), table=table, corr=corr,
        baseline=baseline, ci=ci, n_boot=n_boot, rules=list(dict.fromkeys(table["selection"])),
        seed=rng if isinstance(rng, int) else None, endpoints=[m for m in METRICS if _alias(m, k) == m],
        margins=margin_range(runs),
    )  # fmt: skip


def margin_range(runs: pd.DataFrame) -> pd.DataFrame:
    """The realised range of MR²'s per-class margins at the end of training (``margin_min``,
    ``margin_max`` in metrics.json): mean over seeds with a t CI, per method whose runs record them
    (every MR² variant, whatever the method is called: ``mr2-separation``, ``mr2-official``, ...).

    Returns:
        ``loss, quantity, n_runs, point, ci_low, ci_high`` (quantity: margin_min | margin_max);
        empty when no run records them.
    """
    cols = ["loss", "quantity", "n_runs", "point", "ci_low", "ci_high"]
    if not {"margin_min", "margin_max"} <= set(runs):
        return pd.DataFrame(columns=cols)
    frames = []
    for key in ("margin_min", "margin_max"):
        sub = runs[runs[key].notna()]
        scores = {loss: g[key].to_numpy(float) for loss, g in sub.groupby("loss", sort=False)}
        if scores:
            frames.append(interval_estimates(scores, key_name="loss").assign(quantity=key))
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def write_report(
    study_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    baseline: str = BASELINE_LOSS,
    ci: str = "t",
    selection: Sequence[str] | None = None,
    rng: int | np.random.Generator = 0,
    n_boot: int = 2000,
    figures: Callable[[StudyReport, Path], dict[str, Path]] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv`` and ``correlation.csv`` to ``out`` (default
    ``study_dir/report``); ``figures(report, out)``, when given, draws the plots into ``out`` and
    returns their paths, which the report links (``paper_figs.study_plots.draw_report_figures``).
    Returns the written paths by name."""
    from mr2_core.io import write_csv, write_text

    rep = build_report(study_dir, baseline=baseline, ci=ci, selection=selection, rng=rng, n_boot=n_boot)
    out = Path(out) if out is not None else Path(study_dir) / "report"
    paths = {
        "summary": out / "summary.csv",
        "correlation": out / "correlation.csv",
        "report": out / "report.md",
    }
    write_csv(paths["summary"], rep.table)
    write_csv(paths["correlation"], rep.corr)
    drawn = dict(figures(rep, out)) if figures is not None else {}
    write_text(paths["report"], render_markdown(rep, drawn))
    return {**paths, **drawn}
