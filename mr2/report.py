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
* :func:`class_intervals`, :func:`paired_class_differences` (from :mod:`mr2.report_classes`): per-class
  means and paired differences with CIs, for the figures (``paper_figs.study_plots`` draws them).
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

from mr2.report_classes import class_intervals, paired_class_differences
from mr2.report_markdown import POINTS, render_markdown
from mr2.study import load_study, per_class_table, select, selection_rules
from mr2_core.checks import bad, check_in, check_int
from mr2_core.contracts import (
    BASELINE_LOSS,
    CI_METHODS,
    HIGHER_IS_BETTER,
    REPORT_SUMMARY_COLUMNS,
    SUMMARY_METRICS,
)
from mr2_core.seeding import as_generator
from mr2_core.stats import (
    CORRELATION,
    DIFFERENCE,
    MIN_BOOT,
    MIN_CLAIM_SEEDS,
    NON_NEGATIVE,
    SD_TOL,
    UNIT,
    ci_label,
    holm,
    interval_estimates,
    interval_from_moments,
    paired_comparison,
)
from mr2_core.summaries import tail_size

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
# the range of each summary metric over seeds: intervals never leave it (mr2_core.intervals)
METRIC_BOUNDS = {**dict.fromkeys(SUMMARY_METRICS, UNIT), "class_accuracy_std": NON_NEGATIVE}
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
# correlation.csv of `mr2 report`
CORRELATION_COLUMNS = (
    "loss",
    "statistic",
    "n_seeds",
    "rho",
    "ci_low",
    "ci_high",
    "hardest_match",
    "ci_method",
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


def _interval(
    values: np.ndarray,
    ci: str,
    gen: np.random.Generator | None,
    n_boot: int,
    bounds: tuple[float, float] | None = None,
    scale: str = "auto",
) -> tuple:
    row = interval_estimates({"x": values}, method=ci, rng=gen, n_boot=n_boot, bounds=bounds, scale=scale)
    return float(row["point"].iloc[0]), float(row["ci_low"].iloc[0]), float(row["ci_high"].iloc[0])


def rule_groups(runs: pd.DataFrame, rules: Sequence[str]) -> list[list[str]]:
    """``rules`` grouped by the models they select: two rules whose every run has the same numbers
    (e.g. the best validation epoch is the last one) give one table, and one test in the Holm family."""
    groups: dict[tuple, list[str]] = {}
    for rule in rules:
        view = select(runs, rule).sort_values(["loss", "seed"])
        key = tuple(map(tuple, view[["loss", "seed", *METRICS]].itertuples(index=False)))
        groups.setdefault(key, []).append(rule)
    return list(groups.values())


def _alias(metric: str, k: int) -> str:
    """The endpoint a metric is: with a one-class tail (K <= 10) the bottom-10% *is* the worst class,
    one test, counted once in the Holm family."""
    return "worst_class_accuracy" if metric == "bottom10_accuracy" and tail_size(k) == 1 else metric


def _paired_row(
    d: np.ndarray, ci: str, gen: np.random.Generator | None, n_boot: int, alpha: float, power: float
) -> dict[str, float]:
    """The paired columns of one comparison from its per-seed differences ``d`` (n >= 2).

    The difference's interval is clipped to [-1, 1] (two fractions differ by no more). Seeds that all
    give the same difference have no interval and no test (a t-test of zero variance would claim
    p = 0). Below ``MIN_CLAIM_SEEDS`` no MDE and no TOST bound are stated."""
    res = paired_comparison(d, np.zeros_like(d), alpha=alpha, power=power)
    out = {"diff_sd": res.sd}
    if res.sd <= SD_TOL * max(1.0, abs(res.diff)):
        return {**out, "diff_ci_low": res.diff, "diff_ci_high": res.diff}
    if ci == "t":
        _, (lo, hi) = interval_from_moments(res.diff, res.sd, res.n, confidence=res.confidence,
                                            bounds=DIFFERENCE, scale="clip")  # fmt: skip
    else:
        lo, hi = _interval(d, ci, gen, n_boot, DIFFERENCE, "clip")[1:]
    out.update(diff_ci_low=lo, diff_ci_high=hi, p_value=res.p_value, wilcoxon_p=res.wilcoxon_p)
    if res.n >= MIN_CLAIM_SEEDS:
        out.update(mde=res.mde, tost_bound=res.tost_bound)
    return out


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
        is another's alias, or a rule that selected the same models as another, counted once),
        ``wilcoxon_p``, ``mde`` and ``tost_bound`` (accuracy units; NaN below ``MIN_CLAIM_SEEDS``
        paired seeds and when every seed gives the same difference), and the ``verdict`` sentence.
        The baseline's own rows have diff 0 and the verdict "baseline".
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
                lim = METRIC_BOUNDS[metric]
                point, low, high = _interval(grp[metric].to_numpy(float), ci, gen, n_boot, lim)
                row = {"selection": rule, "loss": loss, "metric": metric, "n_seeds": len(grp), "point": point,
                       "ci_low": low, "ci_high": high, "ci_method": ci_label(ci, lim),
                       "n_paired": len(paired)}  # fmt: skip
                row.update(dict.fromkeys(_PAIRED, np.nan))
                if loss == baseline:
                    row.update(diff=0.0, verdict="baseline")
                elif len(paired) >= 1:
                    d = grp.loc[paired, metric].to_numpy(float) - base.loc[paired, metric].to_numpy(float)
                    row["diff"] = float(d.mean())
                    if len(paired) >= 2:
                        row.update(_paired_row(d, ci, gen, n_boot, alpha, power))
                rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in REPORT_SUMMARY_COLUMNS if c != "study"])
    groups = rule_groups(runs, rules)
    same = {rule: grp[0] for grp in groups for rule in grp}
    table.attrs["rule_groups"] = groups
    family = table[table["p_value"].notna()].copy()
    family["endpoint"] = [_alias(m, k) for m in family["metric"]]
    family["rule"] = family["selection"].map(same)  # rules that picked the same models: one test
    keys = ["rule", "loss", "endpoint"]
    tests = family.drop_duplicates(keys).copy()  # an alias is the same test: counted once
    if len(tests):
        tests["p_holm"] = holm(tests["p_value"].to_numpy())
        merged = family[keys].merge(tests[[*keys, "p_holm"]], on=keys, how="left")
        table.loc[family.index, "p_holm"] = merged["p_holm"].to_numpy()
    table.attrs["n_tests"] = len(tests)
    todo = table["verdict"].isna()
    table.loc[todo, "verdict"] = [
        verdict(r["metric"], diff=r["diff"], p_holm=r["p_holm"], n=r["n_paired"], mde=r["mde"],
                tost_bound=r["tost_bound"], alpha=alpha, power=power, sd=r["diff_sd"])
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
    sd: float = float("nan"),
) -> str:
    """The reading of one paired comparison (differences in accuracy units, stated in points).

    "improves"/"worsens (Holm-adjusted p = ..)" when the Holm-adjusted paired-t p is below ``alpha``
    (for ``class_accuracy_std`` lower is better); otherwise "no detectable effect; effects larger than
    X points are excluded (TOST, alpha ..); MDE at 80% power = Y points with n seeds". Fewer than two
    paired seeds, or seeds that all give the same difference (``sd`` 0): no interval and no test, and
    the sentence says so. Fewer than ``MIN_CLAIM_SEEDS``: no equivalence bound is claimed.
    """
    if n == 0:
        return "no seed shared with the baseline: no comparison"
    if n >= 2 and sd <= SD_TOL * max(1.0, abs(diff)):
        return (f"all {n} paired seeds give the same difference ({POINTS * diff:+.2f} points): no interval "
                "and no test")  # fmt: skip
    if n == 1 or not np.isfinite(p_holm):
        return f"{n} paired seed: no interval and no test can be made (diff {POINTS * diff:+.2f} points)"
    if p_holm < alpha:
        better = (diff > 0) == HIGHER_IS_BETTER[metric]
        return f"{'improves' if better else 'worsens'} (Holm-adjusted p = {p_holm:.2g})"
    if n < MIN_CLAIM_SEEDS or not (np.isfinite(tost_bound) and np.isfinite(mde)):
        return f"no detectable effect; {n} paired seeds are too few to bound the effect (no TOST, no MDE)"
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
    is on the class with the highest error), ``ci_method``. A t interval of rho is built on Fisher's z
    scale (``mr2_core.intervals``), so it stays inside [-1, 1]. ``n_seeds`` counts the runs where rho
    is defined (a constant statistic has none); with none, rho is NaN.
    """
    _check_ci(ci, n_boot)
    gen = as_generator(rng) if ci != "t" else None
    rows, per_run = [], []
    for loss, grp in runs.groupby("loss", sort=False):
        err = 1.0 - np.stack(grp["per_class_accuracy"].to_numpy()).astype(float)
        for label, fn in SPREAD_STATS.items():
            if any(key not in grp or grp[key].isna().any() for key in _SPREAD_NEEDS[label]):
                continue
            stat = np.stack([np.asarray(fn(r), dtype=float) for _, r in grp.iterrows()])
            rho = _spearman_rows(stat, err)
            per_run += [{"loss": loss, "seed": int(sd), "statistic": label, "rho": v}
                        for sd, v in zip(grp["seed"], rho, strict=True)]  # fmt: skip
            ok = np.isfinite(rho)
            point, low, high = _interval(rho[ok], ci, gen, n_boot, CORRELATION) if ok.any() else (np.nan,) * 3
            match = float(np.mean(np.argmax(stat, 1) == np.argmax(err, 1)))
            rows.append({"loss": loss, "statistic": label, "n_seeds": int(ok.sum()), "rho": point,
                         "ci_low": low, "ci_high": high, "hardest_match": match,
                         "ci_method": ci_label(ci, CORRELATION)})  # fmt: skip
    out = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    out.attrs["per_run"] = pd.DataFrame(per_run, columns=["loss", "seed", "statistic", "rho"])
    return out


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
    rule_groups: list[list[str]] = field(default_factory=list)  # rules that selected the same models
    notes: list[str] = field(default_factory=list)  # warnings stated at the top of the report


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
    runs = load_study(study_dir)  # runs of different settings split apart (mr2.study.split_settings)
    notes = list(runs.attrs.get("notes", []))
    gen = as_generator(rng)
    table = summary(runs, baseline=baseline, ci=ci, rng=gen, n_boot=n_boot, selection=selection)
    groups = table.attrs["rule_groups"]
    corr = spread_error_correlation(runs, ci=ci, rng=gen, n_boot=n_boot)
    table.insert(0, "study", Path(study_dir).name)
    k = len(runs["per_class_accuracy"].iloc[0])
    return StudyReport(
        study_dir=Path(study_dir), runs=runs, long=per_class_table(runs), table=table, corr=corr,
        baseline=baseline, ci=ci, n_boot=n_boot, rules=list(dict.fromkeys(table["selection"])),
        seed=rng if isinstance(rng, int) else None, endpoints=[m for m in METRICS if _alias(m, k) == m],
        margins=margin_range(runs), rule_groups=groups, notes=notes,
    )  # fmt: skip


def per_run_table(rep: StudyReport) -> pd.DataFrame:
    """``per_run.csv``: every run's summary metrics under every reported rule (``selection, loss, seed,
    <metrics>``), the values behind summary.csv, so that a later re-analysis is exact."""
    frames = [select(rep.runs, rule).assign(selection=rule) for rule in rep.rules]
    cols = ["selection", "loss", "seed", *METRICS]
    return pd.concat(frames, ignore_index=True)[cols]


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
    """Write ``report.md``, ``summary.csv``, ``correlation.csv``, ``per_run.csv`` (the per-run metrics)
    and ``per_run_rho.csv`` (the per-run Spearman rho) to ``out`` (default
    ``study_dir/report``); ``figures(report, out)``, when given, draws the plots into ``out`` and
    returns their paths, which the report links (``paper_figs.study_plots.draw_report_figures``).
    Returns the written paths by name."""
    from mr2_core.io import write_csv, write_text

    rep = build_report(study_dir, baseline=baseline, ci=ci, selection=selection, rng=rng, n_boot=n_boot)
    out = Path(out) if out is not None else Path(study_dir) / "report"
    paths = {
        "summary": out / "summary.csv",
        "correlation": out / "correlation.csv",
        "per_run": out / "per_run.csv",
        "per_run_rho": out / "per_run_rho.csv",
        "report": out / "report.md",
    }
    write_csv(paths["summary"], rep.table)
    write_csv(paths["correlation"], rep.corr)
    write_csv(paths["per_run"], per_run_table(rep))
    write_csv(paths["per_run_rho"], rep.corr.attrs.get("per_run", pd.DataFrame()))
    drawn = dict(figures(rep, out)) if figures is not None else {}
    write_text(paths["report"], render_markdown(rep, drawn))
    return {**paths, **drawn}
