"""The verdict: does "the optimal margin grows with the class's variance" hold, per criterion and regime?

A regime is (K, loss form, d, n per class, mean norm mu). Two pieces of evidence per regime and
criterion: the 95% bootstrap CI of the empirical exponent d log gamma* / d log a (a slope across
sigma ratios, or across classes), and the direction of each setting's optimum (``agree``: its CI
lies strictly on the theory's side of 0, a larger margin for the larger spread; ``oppose``: strictly
on the other side). The verdict:

* ``holds``: exponent CI above 0 and no setting opposes;
* ``reversed``: exponent CI below 0 and no setting agrees;
* ``mixed``: some settings agree and some oppose (a non-monotone response: a slope alone would
  hide it);
* ``inconclusive``: anything else (CIs that cover 0).

The magnitude is set beside the theory's exponent (1/3). Nothing here is tuned: the table is
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
        if agree > 0 and oppose > 0:
            verdict = "mixed"
        elif oppose == 0 and e["ci_low"] > 0:
            verdict = "holds"
        elif agree == 0 and e["ci_high"] < 0:
            verdict = "reversed"
        else:
            verdict = "inconclusive"
        rows.append(
            {
                **{k: e[k] for k in keys},
                "exponent": e["exponent"],
                "ci_low": e["ci_low"],
                "ci_high": e["ci_high"],
                "theory_exponent": e["theory_exponent"],
                "verdict": verdict,
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
        "Verdict per regime and criterion. `agree`/`oppose` = settings (sigma ratios, or classes for "
        "K = 5) whose optimal log-margin ratio has a 95% CI strictly on the theory's side of 0 (a larger "
        "margin for the larger spread) / strictly on the other side, out of `settings`. `holds` = the "
        "CI of the empirical exponent d log gamma*/d log a is above 0 and no setting opposes; "
        "`reversed` = below 0 and no setting agrees; `mixed` = some agree and some oppose "
        "(non-monotone); `inconclusive` = otherwise. `edge` = optima at an end of the search range "
        "(censored: the true optimum may lie beyond).",
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
            # within a setting (same n, d, loss): does the class with the larger term have the larger
            # gap? The pooled correlation above is driven by n, which shrinks both.
            within = g.groupby("setting").apply(
                lambda h: h["margin_term"].corr(h["gen_gap"], method="spearman"), include_groups=False
            )
            rows.append(
                {
                    "K": K,
                    "loss": loss,
                    "margins": choice,
                    "Spearman(term, gap), pooled": f"{rho:+.2f}",
                    "within setting, mean": f"{within.mean():+.2f} ({within.notna().sum()} settings)",
                    "median margin_term": f"{g['margin_term'].median():.3g}",
                    "median gen_gap": f"{g['gen_gap'].median():.3g}",
                    "term >= gap": f"{(g['margin_term'] >= g['gen_gap']).mean():.0%}",
                }
            )
        out += [
            "## The bound's margin term vs the true generalisation gap (per class)",
            "",
            "`margin_term` = 4 B sqrt(K / n_k) sqrt(a_k) / gamma_k, the complexity term of class k's own "
            "bound; `gen_gap` = test minus training error of class k. Pooled: Spearman over all "
            "(setting, class) rows; within setting: Spearman across the classes of one setting, "
            "averaged (for K = 2 it is +1 when the class with the larger term has the larger gap).",
            "",
            _md_table(pd.DataFrame(rows)),
            "",
        ]
    return "\n".join(out)
