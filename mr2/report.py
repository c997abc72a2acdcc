"""Study reports: per-class numbers over seeds with bootstrap CIs, paired against CE, and the bound's
spread a_k tested on real features.

Inputs are the run directories of one study (``RUNS/<study>/<loss>/seed<k>/metrics.json``,
docs/CONTRACTS.md). Every interval is a percentile bootstrap over seeds (``common.stats.bootstrap_ci``)
drawn from one explicit ``np.random.Generator``, so the same seed gives the same report.

* ``summary``: for each loss and metric, the mean over seeds with its CI, and the mean paired
  difference to the baseline (CE) over the seeds both have, with its CI.
* ``spread_error_correlation``: per run, Spearman's rho between a_k = ||mu_k||² + s_k² (training
  features of the selected model) and the class's test error 1 - acc_k; the mean rho over seeds with
  its CI. rho > 0 means the bound's spread points at the hard classes.
* plots (seaborn, ``ax=``): sorted per-class accuracy, per-class accuracy by class, paired
  differences, spread against error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.checks import bad
from common.io import read_json, write_csv, write_text
from common.seeding import as_generator
from common.stats import bootstrap_ci

__all__ = [
    "METRICS",
    "HIGHER_IS_BETTER",
    "load_study",
    "summary",
    "spread_error_correlation",
    "verdict",
    "plot_sorted_class_accuracy",
    "plot_class_accuracy",
    "plot_paired_differences",
    "plot_spread_vs_error",
    "write_report",
]

METRICS = ("accuracy", "bottom10_accuracy", "worst_class_accuracy", "top10_accuracy", "class_accuracy_std")
HIGHER_IS_BETTER = {m: m != "class_accuracy_std" for m in METRICS}
METRIC_LABELS = {
    "accuracy": "overall accuracy",
    "bottom10_accuracy": "bottom-10% classes",
    "worst_class_accuracy": "worst class",
    "top10_accuracy": "top-10% classes",
    "class_accuracy_std": "std over classes",
}
# statistic label -> metrics.json key (labels avoid '|', which would split a Markdown table cell)
SPREAD_KEYS = {
    "a_k": "class_spread",
    "s_k²": "class_within_spread",
    "‖mu_k‖²": "class_mean_norm2",
    # scale-free: within-class spread relative to the class mean's squared norm
    "s_k²/‖mu_k‖²": lambda g: (
        np.stack(g["class_within_spread"].to_numpy()) / np.stack(g["class_mean_norm2"].to_numpy())
    ),
}
LOSS_ORDER = ("ce", "focal", "ldam", "cdb", "mr2", "mr2-logit", "mr2-rep")


def load_study(study_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run under ``study_dir/<loss>/seed<k>/metrics.json``.

    Columns: ``loss, seed`` and every ``metrics.json`` key (per-class lists stay lists), sorted by
    loss (CE first, then the project's order) and seed.
    """
    root = Path(study_dir)
    if not root.is_dir():
        raise bad("study_dir", str(root), "a folder of runs <loss>/seed<k>/metrics.json (from mr2 train)")
    rows = [read_json(p) for p in sorted(root.glob("*/seed*/metrics.json"))]
    if not rows:
        raise bad("study_dir", str(root), "a folder holding finished runs (<loss>/seed<k>/metrics.json)")
    frame = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(LOSS_ORDER)}
    frame["_order"] = frame["loss"].map(lambda n: order.get(n, len(order)))
    return frame.sort_values(["_order", "loss", "seed"]).drop(columns="_order").reset_index(drop=True)


def _ci(values: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:  # one seed: a point, no interval
        return (float(values.mean()) if len(values) else float("nan")), float("nan"), float("nan")
    res = bootstrap_ci(values, rng=gen, n_boot=n_boot)
    return res.point, res.low, res.high


def summary(
    runs: pd.DataFrame, *, rng: int | np.random.Generator, baseline: str = "ce", n_boot: int = 2000
) -> pd.DataFrame:
    """Mean over seeds and the paired difference to ``baseline``, with bootstrap CIs.

    Returns one row per (loss, metric): ``loss, metric, n_seeds, point, ci_low, ci_high,
    n_paired, diff, diff_ci_low, diff_ci_high`` (diff = loss - baseline on the seeds both have; the
    baseline's own diff is 0 with no interval).
    """
    gen = as_generator(rng)
    base = runs[runs["loss"] == baseline].set_index("seed")
    rows = []
    for loss, grp in runs.groupby("loss", sort=False):
        grp = grp.set_index("seed")
        paired = grp.index.intersection(base.index).sort_values()
        for metric in METRICS:
            point, low, high = _ci(grp[metric].to_numpy(), gen, n_boot)
            row = {
                "loss": loss,
                "metric": metric,
                "n_seeds": len(grp),
                "point": point,
                "ci_low": low,
                "ci_high": high,
            }
            if loss == baseline or len(paired) == 0:
                diff = (0.0, float("nan"), float("nan")) if loss == baseline else (float("nan"),) * 3
            else:
                d = grp.loc[paired, metric].to_numpy() - base.loc[paired, metric].to_numpy()
                diff = _ci(d, gen, n_boot)
            row.update(
                {"n_paired": len(paired), "diff": diff[0], "diff_ci_low": diff[1], "diff_ci_high": diff[2]}
            )
            rows.append(row)
    return pd.DataFrame(rows)


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
    runs: pd.DataFrame, *, rng: int | np.random.Generator, n_boot: int = 2000
) -> pd.DataFrame:
    """Does the bound's spread identify the hard classes? Spearman's rho between a per-class feature
    statistic and the class's test error (1 - acc_k), per run, then the mean over seeds with its CI.

    Returns one row per (loss, statistic) with statistic in ``a_k`` (the bound's
    ||mu_k||² + s_k²), ``s_k²`` (within-class spread), ``‖mu_k‖²`` and the scale-free ratio
    ``s_k²/‖mu_k‖²``: ``loss, statistic, n_seeds, rho, ci_low, ci_high, hardest_match``
    (fraction of runs whose largest statistic is on the class with the highest error).
    """
    gen = as_generator(rng)
    rows = []
    for loss, grp in runs.groupby("loss", sort=False):
        err = 1.0 - np.stack(grp["per_class_accuracy"].to_numpy())
        for label, key in SPREAD_KEYS.items():
            needed = [key] if isinstance(key, str) else ["class_within_spread", "class_mean_norm2"]
            if any(k not in grp for k in needed):
                continue
            stat = np.stack(grp[key].to_numpy()) if isinstance(key, str) else key(grp)
            rho = _spearman_rows(stat, err)
            ok = np.isfinite(rho)
            point, low, high = _ci(rho[ok], gen, n_boot)
            match = float(np.mean(np.argmax(stat, 1) == np.argmax(err, 1)))
            rows.append(
                {"loss": loss, "statistic": label, "n_seeds": int(ok.sum()), "rho": point, "ci_low": low,
                 "ci_high": high, "hardest_match": match}
            )  # fmt: skip
    return pd.DataFrame(rows)


def verdict(metric: str, low: float, high: float) -> str:
    """Reading of a paired difference's CI [low, high] for ``metric``: 'better', 'worse' or
    'no detectable change' (the CI covers 0)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval (fewer than 2 paired seeds)"
    up = HIGHER_IS_BETTER[metric]
    if low > 0:
        return "better" if up else "worse"
    if high < 0:
        return "worse" if up else "better"
    return "no detectable change"


# ------------------------------------------------------------------------------------------ plots
def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
        return fig, ax
    return ax.figure, ax


def _palette(losses: list[str]) -> dict[str, Any]:
    import seaborn as sns

    return dict(zip(losses, sns.color_palette("colorblind", len(losses)), strict=True))


def plot_sorted_class_accuracy(runs: pd.DataFrame, *, ax=None):
    """Per-class test accuracy sorted from the worst class to the best, mean over seeds per loss, with
    the seeds' min-max band. Returns ``(fig, ax)``."""
    import seaborn as sns

    fig, ax = _axes(ax)
    rows = []
    for _, r in runs.iterrows():
        for rank, acc in enumerate(np.sort(r["per_class_accuracy"])):
            rows.append({"loss": r["loss"], "seed": r["seed"], "rank": rank + 1, "accuracy": acc})
    long = pd.DataFrame(rows)
    losses = list(dict.fromkeys(runs["loss"]))
    sns.lineplot(data=long, x="rank", y="accuracy", hue="loss", hue_order=losses, palette=_palette(losses),
                 errorbar=("pi", 100), marker="o", ax=ax)  # fmt: skip
    ax.set_xlabel("class rank (1 = worst class of the run)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Sorted per-class accuracy (mean over seeds, band: min-max)")
    return fig, ax


def plot_class_accuracy(runs: pd.DataFrame, *, baseline: str = "ce", ax=None):
    """Per-class test accuracy by class, classes ordered by the baseline's mean accuracy; bars are
    means over seeds with 95% bootstrap intervals (seaborn's). Returns ``(fig, ax)``."""
    import seaborn as sns

    fig, ax = _axes(ax)
    names = list(runs["class_names"].iloc[0])
    rows = []
    for _, r in runs.iterrows():
        for k, acc in enumerate(r["per_class_accuracy"]):
            rows.append({"loss": r["loss"], "class": names[k], "accuracy": acc})
    long = pd.DataFrame(rows)
    ref = long[long["loss"] == baseline] if (long["loss"] == baseline).any() else long
    order = ref.groupby("class")["accuracy"].mean().sort_values().index.tolist()
    losses = list(dict.fromkeys(runs["loss"]))
    sns.pointplot(data=long, x="class", y="accuracy", hue="loss", order=order, hue_order=losses,
                  palette=_palette(losses), dodge=0.5, linestyle="none", errorbar=("ci", 95), ax=ax,
                  seed=0)  # fmt: skip
    ax.tick_params(axis="x", rotation=45)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Per-class accuracy (classes ordered by {baseline})")
    return fig, ax


def plot_paired_differences(table: pd.DataFrame, *, baseline: str = "ce", ax=None):
    """Paired difference to the baseline per metric and loss with bootstrap CIs (a forest plot).
    ``table`` is ``summary``'s output. Returns ``(fig, ax)``."""
    fig, ax = _axes(ax)
    sub = table[(table["loss"] != baseline) & table["diff"].notna()]
    losses = list(dict.fromkeys(sub["loss"]))
    pal = _palette(losses)
    metrics = [m for m in METRICS if m != "class_accuracy_std"]
    width = 0.8 / max(1, len(losses))
    for i, loss in enumerate(losses):
        rows = sub[sub["loss"] == loss].set_index("metric").loc[metrics]
        y = np.arange(len(metrics)) + (i - (len(losses) - 1) / 2) * width
        err = np.vstack([rows["diff"] - rows["diff_ci_low"], rows["diff_ci_high"] - rows["diff"]])
        ax.errorbar(rows["diff"], y, xerr=err, fmt="o", color=pal[loss], label=loss, capsize=2)
    ax.axvline(0.0, color="0.3", lw=1)
    ax.set_yticks(np.arange(len(metrics)), [METRIC_LABELS[m] for m in metrics])
    ax.set_xlabel(f"paired difference to {baseline} (accuracy, 95% bootstrap CI)")
    ax.legend(fontsize="small")
    return fig, ax


def plot_spread_vs_error(runs: pd.DataFrame, *, loss: str = "ce", ax=None):
    """a_k / mean_j a_j (training features) against test error per class, every seed of ``loss``.
    Returns ``(fig, ax)``."""
    import seaborn as sns

    fig, ax = _axes(ax)
    sub = runs[runs["loss"] == loss]
    if sub.empty:
        raise bad("loss", loss, f"one of the study's losses {sorted(set(runs['loss']))}")
    names = list(sub["class_names"].iloc[0])
    spread = np.stack(sub["class_spread"].to_numpy())
    err = 1.0 - np.stack(sub["per_class_accuracy"].to_numpy())
    long = pd.DataFrame(
        {"relative a_k": (spread / spread.mean(1, keepdims=True)).ravel(), "test error": err.ravel(),
         "class": np.tile(names, len(sub))}
    )  # fmt: skip
    sns.scatterplot(data=long, x="relative a_k", y="test error", hue="class", palette="colorblind", ax=ax)
    ax.set_title(f"{loss}: class spread a_k vs test error ({len(sub)} seeds)")
    ax.legend(fontsize="x-small", ncol=2)
    return fig, ax


# ----------------------------------------------------------------------------------------- report
def _fmt(point: float, low: float, high: float, digits: int = 4) -> str:
    if not np.isfinite(point):
        return "-"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{point:.{digits}f}"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _mr2_statement(table: pd.DataFrame, baseline: str) -> list[str]:
    out = []
    for loss in ("mr2", "mr2-logit", "mr2-rep"):
        sub = table[table["loss"] == loss].set_index("metric")
        if sub.empty or not np.isfinite(sub.loc["accuracy", "diff"]):
            continue
        parts = []
        for m in ("accuracy", "bottom10_accuracy", "worst_class_accuracy", "top10_accuracy"):
            r = sub.loc[m]
            ci = (
                f" [{r['diff_ci_low']:+.4f}, {r['diff_ci_high']:+.4f}]"
                if np.isfinite(r["diff_ci_low"]) and np.isfinite(r["diff_ci_high"])
                else ""
            )
            parts.append(
                f"{METRIC_LABELS[m]} {r['diff']:+.4f}{ci} ({verdict(m, r['diff_ci_low'], r['diff_ci_high'])})"
            )
        readings = {
            m: verdict(m, sub.loc[m, "diff_ci_low"], sub.loc[m, "diff_ci_high"])
            for m in ("accuracy", "bottom10_accuracy", "worst_class_accuracy", "top10_accuracy")
        }
        if any(v.startswith("no interval") for v in readings.values()):
            answer = "undetermined (fewer than 2 paired seeds)"
        else:
            improves = all(
                readings[m] == "better" for m in ("accuracy", "bottom10_accuracy", "worst_class_accuracy")
            )
            answer = "yes" if improves and readings["top10_accuracy"] != "worse" else "no"
        n = int(sub.loc["accuracy", "n_paired"])
        out.append(
            f"- **{loss} vs {baseline}** ({n} paired seeds): " + "; ".join(parts) + ". Improves overall, "
            f"bottom-10% and worst-class accuracy without lowering the top-10%: **{answer}**."
        )
    return out


def write_report(
    study_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    baseline: str = "ce",
    rng: int | np.random.Generator = 0,
    n_boot: int = 2000,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv``, ``correlation.csv`` and plots (PNG) to ``out``
    (default ``study_dir/report``). Returns the written paths by name."""
    runs = load_study(study_dir)
    out = Path(out) if out is not None else Path(study_dir) / "report"
    gen = as_generator(rng)
    table = summary(runs, rng=gen, baseline=baseline, n_boot=n_boot)
    corr = spread_error_correlation(runs, rng=gen, n_boot=n_boot)
    table.insert(0, "study", Path(study_dir).name)
    paths = {
        "summary": out / "summary.csv",
        "correlation": out / "correlation.csv",
        "report": out / "report.md",
    }
    write_csv(paths["summary"], table)
    write_csv(paths["correlation"], corr)

    names = list(runs["class_names"].iloc[0])
    seeds = sorted(set(runs["seed"]))
    hours = runs["train_time_s"].sum() / 3600.0 if "train_time_s" in runs else float("nan")
    lines = [
        f"# Study `{Path(study_dir).name}`: per-class accuracy over seeds",
        "",
        f"{len(runs)} runs: losses {', '.join(dict.fromkeys(runs['loss']))}; seeds {seeds}; dataset "
        f"{runs['dataset'].iloc[0]} ({len(names)} classes), model {runs['model'].iloc[0]}, "
        f"{runs['epochs'].iloc[0]} epochs, model selection on the validation split. Summed training time "
        f"{hours:.2f} h ({runs['device'].iloc[0]}). Numbers are test-split means over seeds with 95% "
        f"percentile-bootstrap intervals ({n_boot} resamples, seed-level). With {len(names)} classes the "
        f"bottom/top 10% is {max(1, int(np.ceil(0.1 * len(names))))} class(es).",
        "",
        "## Accuracy",
        "",
    ]
    header = ["loss", "n"] + [METRIC_LABELS[m] for m in METRICS]
    rows = []
    for loss, grp in table.groupby("loss", sort=False):
        g = grp.set_index("metric")
        rows.append(
            [loss, str(int(g["n_seeds"].iloc[0]))]
            + [_fmt(*g.loc[m, ["point", "ci_low", "ci_high"]]) for m in METRICS]
        )
    lines += [_markdown_table(header, rows), "", f"## Paired difference to {baseline} (same seeds)", ""]
    rows = []
    for loss, grp in table.groupby("loss", sort=False):
        if loss == baseline:
            continue
        g = grp.set_index("metric")
        rows.append([loss, str(int(g["n_paired"].iloc[0]))] + [
            _fmt(*g.loc[m, ["diff", "diff_ci_low", "diff_ci_high"]])
            + f" ({verdict(m, g.loc[m, 'diff_ci_low'], g.loc[m, 'diff_ci_high'])})"
            for m in METRICS
        ])  # fmt: skip
    lines += [_markdown_table(["loss", "n paired"] + [METRIC_LABELS[m] for m in METRICS], rows), ""]
    lines += ["## Does MR² help?", ""] + (_mr2_statement(table, baseline) or ["- no MR² runs in this study"])
    lines += [
        "",
        "'better'/'worse': the 95% CI of the paired difference excludes 0; otherwise 'no detectable change'. "
        "For the std over classes lower is better.",
        "",
        "## The bound's spread on real features",
        "",
        "Spearman's rho between a class's statistic (training features of the selected model) and its test "
        "error, per run, averaged over seeds (95% bootstrap CI). rho > 0: the larger the spread, the harder "
        "the class. 'hardest match': fraction of runs whose largest statistic falls on the class with the "
        "highest test error.",
        "",
    ]
    rows = [
        [r["loss"], r["statistic"], str(r["n_seeds"]), _fmt(r["rho"], r["ci_low"], r["ci_high"], 3),
         f"{r['hardest_match']:.2f}"]
        for _, r in corr.iterrows()
    ]  # fmt: skip
    lines += [_markdown_table(["loss", "statistic", "n", "Spearman rho", "hardest match"], rows), ""]
    lines += ["## Mean test accuracy per class", ""]
    per_class = {
        loss: np.mean(np.stack(g["per_class_accuracy"].to_numpy()), 0)
        for loss, g in runs.groupby("loss", sort=False)
    }
    rows = [[name] + [f"{per_class[loss][k]:.4f}" for loss in per_class] for k, name in enumerate(names)]
    lines += [_markdown_table(["class", *per_class], rows), ""]

    if plots:
        import matplotlib.pyplot as plt

        ref = baseline if baseline in set(runs["loss"]) else runs["loss"].iloc[0]
        figures = {
            "sorted_class_accuracy": lambda ax: plot_sorted_class_accuracy(runs, ax=ax),
            "class_accuracy": lambda ax: plot_class_accuracy(runs, baseline=baseline, ax=ax),
            "paired_differences": lambda ax: plot_paired_differences(table, baseline=baseline, ax=ax),
            "spread_vs_error": lambda ax: plot_spread_vs_error(runs, loss=ref, ax=ax),
        }  # fmt: skip
        lines += ["## Figures", ""]
        for name, draw in figures.items():
            fig, ax = plt.subplots(figsize=(7, 4.2))
            if (
                name == "paired_differences"
                and table[(table["loss"] != baseline) & table["diff"].notna()].empty
            ):
                plt.close(fig)
                continue
            draw(ax)
            fig.tight_layout()
            paths[name] = out / f"{name}.png"
            paths[name].parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(paths[name], dpi=120)
            plt.close(fig)
            lines.append(f"![{name}]({name}.png)")
        lines.append("")
    write_text(paths["report"], "\n".join(lines))
    return paths
