"""Analysis over backbones: studies of one protocol repeated on several backbones, seeds nested inside.

A probe (or fine-tune) study starts every seed from one backbone, so its intervals hold the probe
seeds' variation only: they measure that one backbone. ``mr2 report --over S0 S1 ... S4`` reads B such
study folders (``RUNS/<study>/<method>/seed<k>/metrics.json``, one backbone each: the same methods and
seeds, another ``init_checkpoint``) and, for each selection rule, method and endpoint against the
baseline:

* per backbone b, the paired differences d_bs = method - baseline on the probe seeds s both have, and
  their mean m_b (the backbone's effect);
* the effect: the mean of the m_b (each backbone weighs the same), its Student-t interval and p-value
  over the B backbones (df = B - 1), Holm-adjusted over every (rule, method, endpoint) of the report
  (an endpoint that is another's alias counted once);
* how much of the variance is the backbone's: a one-way random-effects decomposition of d_bs
  (backbone random, seeds nested): MS_within = sum_bs (d_bs - m_b)^2 / (N - B), MS_between =
  sum_b n_b (m_b - m)^2 / (B - 1), sigma_w^2 = MS_within, sigma_b^2 = max(0, (MS_between - MS_within)
  / n_0) with n_0 = (N - sum_b n_b^2 / N) / (B - 1) (Searle, Casella & McCulloch 1992, ch. 3), and the
  backbone share sigma_b^2 / (sigma_b^2 + sigma_w^2);
* for contrast, the naive interval that pools all N differences as if independent: where the backbone
  share is large it is too narrow, which is why the effect's interval is taken over backbones;
* with >= 3 backbones, as the per-study report states over seeds: the TOST bound (the 90% t interval's
  largest |end| over backbones: effects beyond it are excluded at alpha) and the minimum detectable
  effect at 80% power with B backbones (``mr2_core.stats.paired_comparison`` of the B backbone means).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mr2.report import ALPHA, METRICS, _alias
from mr2.report_markdown import POINTS, _markdown_table, _p, _rule_name
from mr2.study import load_study, select, selection_rules
from mr2_core.checks import bad
from mr2_core.contracts import BASELINE_LOSS, HIGHER_IS_BETTER, METRIC_LABELS, loss_label
from mr2_core.stats import (
    DIFFERENCE,
    MIN_CLAIM_SEEDS,
    SD_TOL,
    holm,
    interval_from_moments,
    paired_comparison,
)
from mr2_core.summaries import tail_size

__all__ = ["OVER_COLUMNS", "MIN_BACKBONES", "variance_components", "over_backbones", "write_over_report"]

MIN_BACKBONES = 2  # an interval over backbones needs at least two
OVER_COLUMNS = (
    "selection", "loss", "metric", "n_backbones", "seeds_per_backbone", "diff", "ci_low", "ci_high",
    "p_value", "p_holm", "sd_between", "sd_within", "backbone_share", "naive_ci_low", "naive_ci_high",
    "tost_bound", "mde", "verdict",
)  # fmt: skip
POWER = 0.8  # power at which the minimum detectable effect over backbones is stated


def variance_components(groups: Sequence[np.ndarray]) -> dict[str, float]:
    """One-way random-effects (nested) decomposition of values grouped by backbone (module docstring).

    Args:
        groups: one 1-D array of per-seed values per backbone (each >= 1 value, >= 2 backbones, and
            some backbone with >= 2 values).

    Returns:
        ``var_between, var_within, share`` (share NaN when both are 0).
    """
    arrs = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    n = np.array([a.size for a in arrs])
    if len(arrs) < MIN_BACKBONES or np.any(n < 1) or n.sum() <= len(arrs):
        raise bad("groups", [int(k) for k in n], ">= 2 backbones with >= 1 seed each, one with >= 2")
    total, b = int(n.sum()), len(arrs)
    means = np.array([a.mean() for a in arrs])
    grand = float(np.sum(n * means) / total)
    ms_within = float(sum(((a - m) ** 2).sum() for a, m in zip(arrs, means, strict=True)) / (total - b))
    ms_between = float(np.sum(n * (means - grand) ** 2) / (b - 1))
    n0 = (total - float(np.sum(n * n)) / total) / (b - 1)
    var_between = max(0.0, (ms_between - ms_within) / n0)
    tot = var_between + ms_within
    return {
        "var_between": var_between,
        "var_within": ms_within,
        "share": var_between / tot if tot > 0 else math.nan,
    }


def over_backbones(
    study_dirs: Sequence[str | os.PathLike],
    *,
    baseline: str = BASELINE_LOSS,
    selection: Sequence[str] | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """The effect of each method against ``baseline`` over backbones (module docstring).

    Args:
        study_dirs: B >= 2 study folders, one per backbone, with the probe seeds nested inside.
        baseline: the method the others are paired with, on the seeds of the same backbone.
        selection: the rules to report (default: those every study has).
        alpha: level of the tests and of the Holm family.

    Returns:
        one row per (selection, loss, metric), columns ``OVER_COLUMNS`` (differences in accuracy
        units); ``attrs["n_tests"]`` is the Holm family's size.
    """
    if len(study_dirs) < MIN_BACKBONES:
        raise bad(
            "--over", [str(s) for s in study_dirs], f">= {MIN_BACKBONES} study folders, one per backbone"
        )
    studies = {Path(s).name: load_study(s) for s in study_dirs}
    if len(studies) != len(study_dirs):
        raise bad(
            "--over", [str(s) for s in study_dirs], "study folders with distinct names (one per backbone)"
        )
    common = set.intersection(*(set(selection_rules(r)) for r in studies.values()))
    rules = [r for r in selection_rules(next(iter(studies.values()))) if r in common]
    if selection is not None:
        rules = [r for r in selection if r in common] or bad(
            "selection", list(selection), f"rules of {rules}"
        )
    k = len(next(iter(studies.values()))["per_class_accuracy"].iloc[0])
    methods = [m for m in dict.fromkeys(pd.concat([r["loss"] for r in studies.values()])) if m != baseline]
    rows = []
    for rule in rules:
        views = {name: select(runs, rule) for name, runs in studies.items()}
        for name, v in views.items():
            if baseline not in set(v["loss"]):
                raise bad(
                    "baseline", baseline, f"a method of every study ({name} has {sorted(set(v['loss']))})"
                )
        for loss in methods:
            for metric in METRICS:
                diffs = [d for d in (_paired(v, loss, baseline, metric) for v in views.values()) if d.size]
                rows.append(_effect_row(rule, loss, metric, diffs, alpha))
    table = pd.DataFrame(rows, columns=OVER_COLUMNS)
    tested = table[table["p_value"].notna()].copy()
    tested["endpoint"] = [_alias(m, k) for m in tested["metric"]]
    keys = ["selection", "loss", "endpoint"]
    tests = tested.drop_duplicates(keys).copy()
    if len(tests):
        tests["p_holm"] = holm(tests["p_value"].to_numpy())
        merged = tested[keys].merge(tests[[*keys, "p_holm"]], on=keys, how="left")
        table.loc[tested.index, "p_holm"] = merged["p_holm"].to_numpy()
    table["verdict"] = [_verdict(r, alpha) for _, r in table.iterrows()]
    table.attrs["n_tests"] = len(tests)
    table.attrs["studies"] = list(studies)
    return table


def _paired(view: pd.DataFrame, loss: str, baseline: str, metric: str) -> np.ndarray:
    a = view[view["loss"] == loss].set_index("seed")[metric]
    b = view[view["loss"] == baseline].set_index("seed")[metric]
    seeds = a.index.intersection(b.index).sort_values()
    return (a.loc[seeds] - b.loc[seeds]).to_numpy(float)


def _effect_row(rule: str, loss: str, metric: str, diffs: list[np.ndarray], alpha: float) -> dict:
    row = dict.fromkeys(OVER_COLUMNS, np.nan)
    row.update(selection=rule, loss=loss, metric=metric, n_backbones=len(diffs),
               seeds_per_backbone="/".join(str(d.size) for d in diffs))  # fmt: skip
    if not diffs:
        return row
    means = np.array([d.mean() for d in diffs])
    row["diff"] = float(means.mean())
    if len(diffs) < MIN_BACKBONES:
        return row
    sd = float(means.std(ddof=1))
    _, (lo, hi) = interval_from_moments(row["diff"], sd, len(diffs), confidence=1 - alpha, bounds=DIFFERENCE,
                                        scale="clip")  # fmt: skip
    row.update(ci_low=lo, ci_high=hi)
    if sd > SD_TOL * max(1.0, abs(row["diff"])):  # else every backbone agrees (float rounding): no test
        test = paired_comparison(means, np.zeros_like(means), alpha=alpha, power=POWER)  # over backbones
        row["p_value"] = test.p_value
        if len(diffs) >= MIN_CLAIM_SEEDS:
            row.update(tost_bound=test.tost_bound, mde=test.mde)
    pooled = np.concatenate(diffs)
    if pooled.size > len(diffs):
        comp = variance_components(diffs)
        row.update(sd_between=math.sqrt(comp["var_between"]), sd_within=math.sqrt(comp["var_within"]),
                   backbone_share=comp["share"])  # fmt: skip
        _, (nlo, nhi) = interval_from_moments(
            pooled.mean(),
            pooled.std(ddof=1),
            pooled.size,
            confidence=1 - alpha,
            bounds=DIFFERENCE,
            scale="clip",
        )
        row.update(naive_ci_low=nlo, naive_ci_high=nhi)
    return row


def _verdict(r: pd.Series, alpha: float) -> str:
    if r["n_backbones"] < MIN_BACKBONES or not np.isfinite(r["p_holm"]):
        return f"{int(r['n_backbones'])} backbone(s) with paired seeds, or no spread: no test over backbones"
    if r["p_holm"] < alpha:
        better = (r["diff"] > 0) == HIGHER_IS_BETTER[r["metric"]]
        return f"{'improves' if better else 'worsens'} over backbones (Holm-adjusted p = {r['p_holm']:.2g})"
    if np.isfinite(r["tost_bound"]) and np.isfinite(r["mde"]):
        return (
            f"no detectable effect over backbones; effects larger than {POINTS * r['tost_bound']:.2f} points "
            f"are excluded (TOST, alpha {alpha:g}); MDE at {100 * POWER:.0f}% power = "
            f"{POINTS * r['mde']:.2f} points with {int(r['n_backbones'])} backbones"
        )
    return "no detectable effect over backbones"


def render_over(table: pd.DataFrame, baseline: str, k: int) -> str:
    """The Markdown of :func:`over_backbones`' table."""
    studies = table.attrs.get("studies", [])
    b = len(studies)
    lines = [
        f"# Over {b} backbones: {', '.join(f'`{s}`' for s in studies)}",
        "",
        "Each study starts its seeds from one backbone. Per backbone, each method's paired differences "
        f"to {loss_label(baseline)} are averaged over that backbone's seeds; the effect is the mean over the "
        f"{b} backbones, with a 95% Student-t interval and a t-test over backbones (df = {b - 1}), "
        f"Holm-adjusted over the {table.attrs.get('n_tests', 0)} comparisons (every rule, method and "
        "endpoint). "
        "'backbone share': the share of the paired differences' variance that lies between backbones "
        "(one-way random effects, seeds nested in backbones). 'naive CI' pools every seed as if "
        "independent: it ignores the backbone's variance and is shown only for contrast. Without a "
        "detectable effect the verdict states the TOST bound over backbones (the "
        f"{100 * (1 - 2 * ALPHA):.0f}% "
        "t interval's largest |end|: effects beyond it are excluded) and the minimum detectable effect at "
        f"{100 * POWER:.0f}% power with these backbones. Differences in accuracy points.",
        "",
    ]
    if b < 5:
        lines += [f"> **Few backbones ({b}).** An interval over {b} backbones is wide; the verdict "
                  "generalises over backbones only as far as these few represent them.", ""]  # fmt: skip
    header = [
        "method",
        "metric",
        "backbones",
        "seeds",
        f"diff vs {loss_label(baseline)} [95% CI over backbones]",
        "p",
        "Holm p",
        "SD between",
        "SD within",
        "backbone share",
        "naive CI (seeds pooled)",
        "verdict",
    ]
    endpoints = [m for m in METRICS if _alias(m, k) == m]
    for rule in dict.fromkeys(table["selection"]):
        sub = table[(table["selection"] == rule) & table["metric"].isin(endpoints)]
        rows = [[loss_label(r["loss"]), METRIC_LABELS[r["metric"]], str(int(r["n_backbones"])),
                 str(r["seeds_per_backbone"]), _pts(r["diff"], r["ci_low"], r["ci_high"]), _p(r["p_value"]),
                 _p(r["p_holm"]), _sd(r["sd_between"]), _sd(r["sd_within"]), _share(r["backbone_share"]),
                 _pts(r["diff"], r["naive_ci_low"], r["naive_ci_high"]), r["verdict"]]
                for _, r in sub.iterrows()]  # fmt: skip
        lines += [f"## Selected by {_rule_name(rule)}", "", _markdown_table(header, rows), ""]
    lines += [f"With {k} classes the bottom/top 10% is {tail_size(k)} class(es).", ""]
    return "\n".join(lines)


def _pts(d: float, lo: float, hi: float) -> str:
    if not np.isfinite(d):
        return "-"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{POINTS * d:+.2f} (no CI)"
    return f"{POINTS * d:+.2f} [{POINTS * lo:+.2f}, {POINTS * hi:+.2f}]"


def _sd(x: float) -> str:
    return f"{POINTS * x:.2f}" if np.isfinite(x) else "-"


def _share(x: float) -> str:
    return f"{100 * x:.0f}%" if np.isfinite(x) else "-"


def default_out(study_dirs: Sequence[str | os.PathLike]) -> Path:
    """``<parent>/<common name prefix>over-backbones`` of the studies (e.g. fmnist-probe-b-over-backbones)."""
    names = [Path(s).name for s in study_dirs]
    prefix = os.path.commonprefix(names) or "studies-"
    return Path(study_dirs[0]).parent / f"{prefix.rstrip('-_')}-over-backbones"


def write_over_report(
    study_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    baseline: str = BASELINE_LOSS,
    selection: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write ``over_backbones.csv`` and ``report.md`` to ``out`` (default :func:`default_out`)."""
    from mr2_core.io import write_csv, write_text

    table = over_backbones(study_dirs, baseline=baseline, selection=selection)
    k = len(load_study(study_dirs[0])["per_class_accuracy"].iloc[0])
    out = Path(out) if out is not None else default_out(study_dirs)
    paths = {"over_backbones": out / "over_backbones.csv", "report": out / "report.md"}
    write_csv(paths["over_backbones"], table)
    write_text(paths["report"], render_over(table, baseline, k))
    return paths
