"""The Markdown of a study report (``report.md``): tables and verdict sentences from a
``mr2.report.StudyReport``; no statistics are computed here, only formatted.

Differences, MDEs and TOST bounds are shown in accuracy points (x 100); means as fractions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mr2.study import CONFIGURED
from mr2_core.contracts import METRIC_LABELS, SELECTION_LABELS, SUMMARY_METRICS, loss_label
from mr2_core.stats import MIN_CLAIM_SEEDS, all_equal
from mr2_core.summaries import tail_size

__all__ = ["render_markdown", "CI_NAMES", "POINTS"]

POINTS = 100.0  # accuracy fractions -> percentage points


CI_NAMES = {"t": "Student-t", "bca": "BCa bootstrap", "percentile": "percentile bootstrap"}


def _fmt(point: float, low: float, high: float, digits: int = 4, scale: float = 1.0) -> str:
    if not np.isfinite(point):
        return "-"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{scale * point:.{digits}f} (no CI)"
    if all_equal(point, low, high):
        return f"{scale * point:.{digits}f} (all seeds equal: no interval)"
    return f"{scale * point:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def _points(x: float) -> str:
    return f"{POINTS * x:.2f}" if np.isfinite(x) else "-"


def _p(p: float) -> str:
    return f"{p:.2g}" if np.isfinite(p) else "-"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _rule_name(rule: str) -> str:
    if rule == CONFIGURED:
        return "the runs' own rule (not recorded)"
    return f"{SELECTION_LABELS.get(rule, rule)} (`{rule}`)"


def _rule_title(rules: str | list[str]) -> str:
    rules = [rules] if isinstance(rules, str) else rules
    same = " (the same models: one table)" if len(rules) > 1 else ""
    return "Selected by " + " and by ".join(_rule_name(r) for r in rules) + same


def _statement(table: pd.DataFrame, loss: str, rules: list[str], endpoints: list[str]) -> str:
    """One bullet: ``loss`` against the baseline under ``rules`` (that selected the same models)."""
    sub = table[(table["loss"] == loss) & (table["selection"] == rules[0])].set_index("metric")
    title = " and ".join(SELECTION_LABELS.get(r, r) for r in rules)
    if sub.empty:
        return f"- {title}: no runs"
    n = int(sub.loc["accuracy", "n_paired"])
    parts = [f"{METRIC_LABELS[m]} {POINTS * sub.loc[m, 'diff']:+.2f} points: {sub.loc[m, 'verdict']}"
             for m in endpoints if m != "class_accuracy_std"]  # fmt: skip
    wanted = [m for m in ("accuracy", "bottom10_accuracy", "worst_class_accuracy") if m in endpoints]
    if n < 2:
        answer = "undetermined (fewer than 2 paired seeds)"
    else:
        improves = all(sub.loc[m, "verdict"].startswith("improves") for m in wanted)
        answer = (
            "yes" if improves and not sub.loc["top10_accuracy", "verdict"].startswith("worsens") else "no"
        )
    return (f"- **{title}** ({n} paired seeds): " + "; ".join(parts) + ". Improves "
            f"{' and '.join(METRIC_LABELS[m] for m in wanted)} without lowering the top-10% "
            f"(Holm-adjusted): **{answer}**.")  # fmt: skip


def _first(runs: pd.DataFrame, key: str, default: str = "?") -> Any:
    values = runs[key].dropna() if key in runs else []
    return values.iloc[0] if len(values) else default


def render_markdown(rep: Any, figures: dict[str, Path] | None = None) -> str:
    """``report.md`` of ``rep`` (a ``mr2.report.StudyReport``), linking ``figures`` {name: path}."""
    runs, table, corr = rep.runs, rep.table, rep.corr
    names = list(runs["class_names"].iloc[0]) if "class_names" in runs else []
    k = len(runs["per_class_accuracy"].iloc[0])
    seeds = sorted(set(runs["seed"]))
    setup = [f"dataset {_first(runs, 'dataset', 'unknown')} ({k} classes)"]
    setup += [f"model {_first(runs, 'model')}"] if "model" in runs else []
    setup += [f"{_first(runs, 'epochs')} epochs"] if "epochs" in runs else []
    if "train_time_s" in runs and runs["train_time_s"].notna().all():
        device = f" ({_first(runs, 'device')})" if "device" in runs else ""
        setup.append(f"summed training time {runs['train_time_s'].sum() / 3600.0:.2f} h{device}")
    n_tests = table.attrs.get("n_tests", int(table["p_holm"].notna().sum()))
    boot = f" ({rep.n_boot} resamples, seed {rep.seed})" if rep.ci != "t" else ""
    one_seed = int(table["n_seeds"].min()) < 2
    groups = getattr(rep, "rule_groups", None) or [[r] for r in rep.rules]
    lines = [f"# Study `{rep.study_dir.name}`: per-class accuracy over seeds", ""]
    lines += _warnings(rep)
    scale = (
        " (on the logit scale for accuracies, the log scale for the std over classes and Fisher's z for "
        "correlations, so that no interval leaves its metric's range; differences: t, clipped to [-1, 1])"
        if rep.ci == "t" else ""
    )  # fmt: skip
    lines += [
        f"{len(runs)} runs: losses {', '.join(dict.fromkeys(runs['loss']))}; seeds {seeds}; "
        f"{', '.join(setup)}; model selection on the validation split "
        f"({'; '.join(SELECTION_LABELS.get(r, r) for r in rep.rules)}). Numbers are test-split means over "
        f"seeds with 95% {CI_NAMES[rep.ci]} intervals over seeds{boot}{scale}. With {k} classes the "
        f"bottom/top 10% is {tail_size(k)} class(es)"
        + ("; the bottom-10% is then the worst class, shown and tested once." if tail_size(k) == 1 else "."),
        "",
        f"Each loss is compared with {rep.baseline} on the seeds both have (paired differences in accuracy "
        f"points): paired t-test (Wilcoxon signed-rank as a check; with fewer than 6 seeds it cannot reach "
        f"p < 0.05), Holm-adjusted over the {n_tests} comparisons of this report (every rule, loss and "
        f"endpoint; rules that selected the same models counted once), alpha {rep.alpha:g}. A comparison "
        f"without a detectable effect states the TOST bound (the {100 * (1 - 2 * rep.alpha):.0f}% t "
        "interval's largest |end|: effects beyond it are excluded "
        f"at alpha {rep.alpha:g}, not adjusted for multiplicity) and the minimum detectable effect at "
        f"{100 * rep.power:.0f}% power for its seeds.",
        "",
    ]
    if one_seed:
        lines += ["Some losses have a single seed: no confidence interval or test can be made for them, and "
                  "none is shown.", ""]  # fmt: skip
    others = [loss for loss in dict.fromkeys(table["loss"]) if loss != rep.baseline]
    base = loss_label(rep.baseline)
    lines += [f"## Verdicts: each method vs {base}", ""]
    for loss in others:
        lines += [f"### {loss_label(loss)} vs {base}", ""]
        lines += [_statement(table, loss, rules, rep.endpoints) for rules in groups] + [""]
    if not others:
        lines += [f"- no method besides {base} in this study", ""]

    lines += ["## Accuracy", ""]
    shown = [m for m in SUMMARY_METRICS if m in rep.endpoints]
    header = ["loss", "n"] + [METRIC_LABELS[m] for m in shown]
    for rules in groups:
        rows = []
        for loss, grp in table[table["selection"] == rules[0]].groupby("loss", sort=False):
            g = grp.set_index("metric")
            cells = [_fmt(*g.loc[m, ["point", "ci_low", "ci_high"]]) for m in shown]
            rows.append([loss, str(int(g["n_seeds"].iloc[0])), *cells])
        lines += [f"### {_rule_title(rules)}", "", _markdown_table(header, rows), ""]
    margins = _margin_rows(rep)
    if margins:
        lines += ["### Realised MR² margins at the end of training", "",
                  "The smallest and largest per-class margin gamma_k, mean over seeds [95% CI].", "",
                  _markdown_table(["loss", "n", "margin min", "margin max"], margins), ""]  # fmt: skip

    lines += [f"## Paired difference to {rep.baseline} (same seeds)", ""]
    header = ["loss", "metric", "n", "diff (points) [95% CI]", "paired-t p", "Holm p", "Wilcoxon p",
              "MDE (points)", "TOST bound (points)", "verdict"]  # fmt: skip
    for rules in groups:
        sub = table[(table["selection"] == rules[0]) & (table["loss"] != rep.baseline)]
        rows = [
            [r["loss"], METRIC_LABELS[r["metric"]], str(int(r["n_paired"])),
             _fmt(r["diff"], r["diff_ci_low"], r["diff_ci_high"], 2, POINTS), _p(r["p_value"]),
             _p(r["p_holm"]), _p(r["wilcoxon_p"]), _points(r["mde"]), _points(r["tost_bound"]), r["verdict"]]
            for _, r in sub.iterrows() if r["metric"] in rep.endpoints
        ]  # fmt: skip
        lines += [
            f"### {_rule_title(rules)}",
            "",
            _markdown_table(header, rows) if rows else "- no other loss",
            "",
        ]
    lines += [
        "'improves'/'worsens': the Holm-adjusted paired-t p is below alpha. For the std over classes lower "
        "is better. A difference's CI is not adjusted for multiplicity.",
        "",
        "## The bound's spread on real features",
        "",
        "Spearman's rho between a class's statistic (training features of each run's selected model, "
        f"top-level numbers) and its test error, per run, averaged over seeds (95% {CI_NAMES[rep.ci]} CI). "
        "rho > 0: the larger the spread, the harder the class. 'hardest match': fraction of runs whose "
        "largest statistic falls on the class with the highest test error.",
        "",
    ]
    rows = [[r["loss"], r["statistic"], str(r["n_seeds"]), _fmt(r["rho"], r["ci_low"], r["ci_high"], 3),
             f"{r['hardest_match']:.2f}"] for _, r in corr.iterrows()]  # fmt: skip
    lines += [_markdown_table(["loss", "statistic", "n", "Spearman rho", "hardest match"], rows), ""]
    lines += ["## Mean test accuracy per class (top-level numbers)", ""]
    per_class = {loss: np.mean(np.stack(g["per_class_accuracy"].to_numpy()), 0)
                 for loss, g in runs.groupby("loss", sort=False)}  # fmt: skip
    names = names or [str(i) for i in range(k)]
    rows = [[name] + [f"{per_class[loss][i]:.4f}" for loss in per_class] for i, name in enumerate(names)]
    lines += [_markdown_table(["class", *per_class], rows), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}]({path.name})" for name, path in figures.items()] + [""]
    return "\n".join(lines)


def _warnings(rep: Any) -> list[str]:
    """The report's warnings, stated at its top: too few seeds for claims, and runs of different
    settings that were split (or that could not be checked)."""
    table = rep.table
    out = []
    fewest = int(table["n_seeds"].min())
    if fewest < MIN_CLAIM_SEEDS:
        few = list(dict.fromkeys(table.loc[table["n_seeds"] < MIN_CLAIM_SEEDS, "loss"].astype(str)))
        out.append(
            f"> **Too few seeds.** {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than "
            f"{MIN_CLAIM_SEEDS} seeds (fewest: {fewest}). Intervals over so few seeds are very wide and "
            "rest on a standard deviation with at most 1 degree of freedom; no equivalence (TOST) bound or "
            "minimum detectable effect is stated for them, and a 'no detectable effect' says nothing about "
            "the effect's size. Treat these numbers as a pilot."
        )
    out += [f"> **Warning.** {note}" for note in getattr(rep, "notes", [])]
    return [line for note in out for line in (note, "")]


def _margin_rows(rep: Any) -> list[list[str]]:
    margins = rep.margins
    if margins is None or margins.empty:
        return []
    rows = []
    for loss, grp in margins.groupby("loss", sort=False):
        g = grp.set_index("quantity")
        cells = [_fmt(*g.loc[q, ["point", "ci_low", "ci_high"]], 3) if q in g.index else "-"
                 for q in ("margin_min", "margin_max")]  # fmt: skip
        rows.append([loss, str(int(g["n_runs"].max())), *cells])
    return rows
