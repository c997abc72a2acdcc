"""The verdict: does "the optimal margin grows with the class's variance" hold, per criterion and regime?

A regime is (K, loss form, d, n per class, mean norm mu). The claim *holds* in a regime when the
95% bootstrap CI of the empirical exponent d log gamma* / d log a lies above 0, is *reversed* when
it lies below 0, and is *inconclusive* otherwise. The magnitude is set beside the theory's exponent
(1/3), and the per-ratio optima beside the theory's margins. Nothing here is tuned: the table is
whatever the sweep measured.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["verdict_table", "summary_markdown"]


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}"


def verdict_table(exps: pd.DataFrame, mvv: pd.DataFrame) -> pd.DataFrame:
    """One row per regime and criterion: exponent [CI], theory, verdict, and per-ratio direction counts.

    ``agree``/``oppose`` count the settings (sigma ratios, or classes for K > 2) whose optimum's CI
    lies strictly on the theory's side of 0 (a larger margin for the larger spread) or strictly on
    the other side.
    """
    keys = ["K", "loss", "d", "n_per_class", "mu", "criterion"]
    rows = []
    for _, e in exps.iterrows():
        sel = mvv
        for k in keys:
            sel = sel[sel[k] == e[k]]
        sel = sel[sel["theory_log_margin_ratio"].abs() > 1e-12]
        side = sel["theory_log_margin_ratio"].apply(lambda v: 1 if v > 0 else -1)
        agree = int((((sel["ci_low"] > 0) & (side > 0)) | ((sel["ci_high"] < 0) & (side < 0))).sum())
        oppose = int((((sel["ci_high"] < 0) & (side > 0)) | ((sel["ci_low"] > 0) & (side < 0))).sum())
        rows.append(
            {
                **{k: e[k] for k in keys},
                "exponent": e["exponent"],
                "ci_low": e["ci_low"],
                "ci_high": e["ci_high"],
                "theory_exponent": e["theory_exponent"],
                "verdict": e["verdict"],
                "agree": agree,
                "oppose": oppose,
                "settings": len(sel),
                "boundary_optima": e["boundary_optima"],
            }
        )
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def summary_markdown(
    vt: pd.DataFrame, tvu: pd.DataFrame | None, bvg: pd.DataFrame | None, header: dict
) -> str:
    """The Markdown summary written to ``summary.md`` (and printed)."""
    out = ["# Gaussian-mixture simulations: does the optimal margin grow with the class's variance?", ""]
    out += [f"- {k}: {v}" for k, v in header.items()]
    out += [
        "",
        "Verdict per regime: `holds` = the 95% CI of the empirical exponent d log gamma*/d log a is "
        "above 0; `reversed` = below 0; `inconclusive` = it contains 0. `agree`/`oppose` = settings "
        "whose optimal log-margin ratio has a CI strictly on the theory's side of 0 / strictly on the "
        "other side, out of `settings`. `edge` = optima on the edge of the search range (censored).",
        "",
    ]
    if len(vt):
        counts = vt.groupby(["K", "loss", "criterion"])["verdict"].value_counts().unstack(fill_value=0)
        out += ["## Tally of regimes", "", _md_table(counts.reset_index()), ""]
        show = vt.copy()
        show["exponent [95% CI]"] = show.apply(
            lambda r: f"{r['exponent']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]", axis=1
        )
        show["theory"] = show["theory_exponent"].map(lambda v: f"{v:.3f}")
        show["agree/oppose/settings"] = show.apply(
            lambda r: f"{r['agree']}/{r['oppose']}/{r['settings']}", axis=1
        )
        show = show.rename(columns={"boundary_optima": "edge", "n_per_class": "n"})
        cols = [
            "K",
            "loss",
            "d",
            "n",
            "criterion",
            "exponent [95% CI]",
            "theory",
            "verdict",
            "agree/oppose/settings",
            "edge",
        ]
        out += ["## Verdict table", "", _md_table(show[cols]), ""]
    if tvu is not None and len(tvu):
        agg = tvu[(tvu["choice"] == "theory") & (tvu["metric"].isin(["balanced_error", "worst_class_error"]))]
        rows = []
        for (K, loss, metric), g in agg.groupby(["K", "loss", "metric"]):
            better = int((g["diff_ci_high"] < 0).sum())
            worse = int((g["diff_ci_low"] > 0).sum())
            rows.append(
                {
                    "K": K,
                    "loss": loss,
                    "metric": metric,
                    "median diff (theory - uniform)": f"{g['diff_vs_uniform'].median():+.4f}",
                    "theory better / worse / settings": f"{better}/{worse}/{len(g)}",
                }
            )
        out += [
            "## Theory's margins vs uniform margins",
            "",
            "Paired difference of the error under the theory's margins minus uniform margins, per setting; "
            "better/worse = its 95% CI is below/above 0.",
            "",
            _md_table(pd.DataFrame(rows)),
            "",
        ]
    if bvg is not None and len(bvg):
        rows = []
        for (K, loss, choice), g in bvg.groupby(["K", "loss", "choice"]):
            rho = g["margin_term"].corr(g["gen_gap"], method="spearman")
            rows.append(
                {
                    "K": K,
                    "loss": loss,
                    "margins": choice,
                    "Spearman(margin_term, gen_gap)": f"{rho:+.2f}",
                    "median margin_term": f"{g['margin_term'].median():.3g}",
                    "median gen_gap": f"{g['gen_gap'].median():.3g}",
                    "term >= gap": f"{(g['margin_term'] >= g['gen_gap']).mean():.0%}",
                }
            )
        out += [
            "## The bound's margin term vs the true generalisation gap (per class)",
            "",
            _md_table(pd.DataFrame(rows)),
            "",
        ]
    return "\n".join(out)
