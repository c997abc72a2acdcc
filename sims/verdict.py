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

Which rule predicts the optima (:func:`rule_verdict`): per (K, margin form, criterion), every rule's
mean absolute error against the empirical optimum, pooled over the regimes of ``rule_scores.csv``
(weighted by their settings); the best rule is the one with the smallest; it "predicts" the optima
where its error is below ``PREDICTS_MAE`` and the CIs hold its value in at least ``PREDICTS_IN_CI`` of
the settings. The thresholds are fixed here, before any run, and are the same for every rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mr2_core.contracts import SIMS_REGIME_COLUMNS, SIMS_RULES

__all__ = ["verdict_table", "rule_verdict", "summary_markdown", "PREDICTS_MAE", "PREDICTS_IN_CI"]

PREDICTS_MAE = 0.25  # nats of log(gamma_k / gamma_ref): a rule within this of the optimum on average...
PREDICTS_IN_CI = 0.5  # ...and inside the optimum's 95% CI in at least this share of settings "predicts"
TIE_ATOL = 1e-9  # rules whose pooled MAE differ by less are tied (named together as the best)


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}"


def verdict_table(exps: pd.DataFrame, mvv: pd.DataFrame) -> pd.DataFrame:
    """One row per regime and criterion: exponent [CI], theory, verdict, and per-ratio direction counts.

    ``agree``/``oppose`` count the settings (sigma ratios, or classes for K > 2) whose optimum's CI
    lies strictly on the theory's side of 0 (a larger margin for the larger spread) or strictly on
    the other side.
    """
    keys = [*SIMS_REGIME_COLUMNS, "criterion"]
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


def rule_verdict(scores: pd.DataFrame, by: tuple[str, ...] = ("K", "loss", "criterion")) -> pd.DataFrame:
    """Per group of ``by``: every rule's MAE, bias and CI share pooled over the regimes of ``scores``
    (``rule_scores.csv``; weighted by their settings), the best rule by MAE and whether it predicts.

    Columns: ``by``, ``mae_<rule>`` for each rule, ``best``, ``best_mae``, ``best_bias``,
    ``best_in_ci``, ``runner_up``, ``margin`` (runner-up's MAE minus the best's), ``predicts``.
    """
    rows = []
    for key, g in scores.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        pooled = {}
        for rule in SIMS_RULES:
            r = g[(g["rule"] == rule) & (g["settings"] > 0)]
            w = r["settings"].to_numpy(dtype=float)
            if w.sum() == 0:
                continue
            pooled[rule] = {c: float(np.average(r[c], weights=w)) for c in ("mae", "bias", "in_ci")}
        if not pooled:
            continue
        order = sorted(pooled, key=lambda k: pooled[k]["mae"])
        best = pooled[order[0]]
        # rules with the same error (LDAM and uniform on balanced classes) are named together
        tied = [r for r in order if pooled[r]["mae"] - best["mae"] <= TIE_ATOL]
        rest = [r for r in order if r not in tied]
        row = {**dict(zip(by, key, strict=True))}
        row.update({f"mae_{rule}": pooled.get(rule, {}).get("mae", np.nan) for rule in SIMS_RULES})
        row.update(
            {
                "best": "/".join(tied),
                "best_mae": best["mae"],
                "best_bias": best["bias"],
                "best_in_ci": best["in_ci"],
                "runner_up": rest[0] if rest else "",
                "margin": pooled[rest[0]]["mae"] - best["mae"] if rest else np.nan,
                "predicts": bool(best["mae"] < PREDICTS_MAE and best["in_ci"] >= PREDICTS_IN_CI),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _num(v: float, fmt: str = "+.2f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def rules_markdown(scores: pd.DataFrame, geometry: pd.DataFrame | None = None) -> str:
    """The rule scores as Markdown: the verdict per (K, form, criterion), then every regime."""
    out = [
        "## Which margin rule predicts the optima",
        "",
        "Error of each rule's predicted log(gamma_k/gamma_ref) against the empirical optimum, over the "
        "settings of the separation x variance grid (settings where every rule predicts 0 left out). "
        "MAE = mean |predicted - optimal| (nats), pooled over d and n weighted by settings; best = "
        f"smallest MAE; it predicts when MAE < {PREDICTS_MAE} and the optimum's 95% CI holds the "
        f"prediction in >= {PREDICTS_IN_CI:.0%} of settings. LDAM's n^(-1/4) equals uniform here "
        "(balanced classes).",
        "",
    ]
    rv = rule_verdict(scores)
    show = pd.DataFrame(
        {
            "K": rv["K"],
            "loss": rv["loss"],
            "criterion": rv["criterion"],
            **{f"MAE {r}": rv[f"mae_{r}"].map(lambda v: _num(v, ".2f")) for r in SIMS_RULES},
            "best (bias, in CI)": rv.apply(
                lambda r: f"{r['best']} ({_num(r['best_bias'])}, {r['best_in_ci']:.0%})", axis=1
            ),
            "lead over runner-up": rv.apply(
                lambda r: f"{_num(r['margin'], '.2f')} ({r['runner_up']})", axis=1
            ),
            "predicts": rv["predicts"].map({True: "yes", False: "no"}),
        }
    )
    out += [_md_table(show), ""]
    per = scores.copy()
    per["MAE / bias / in CI"] = per.apply(
        lambda r: f"{_num(r['mae'], '.2f')} / {_num(r['bias'])} / {_num(r['in_ci'], '.0%')}", axis=1
    )
    wide = per.pivot_table(
        index=["K", "loss", "criterion", "d", "n_per_class"],
        columns="rule",
        values="MAE / bias / in CI",
        aggfunc="first",
    )[list(SIMS_RULES)].reset_index()
    settings = per.groupby(["K", "loss", "criterion", "d", "n_per_class"])["settings"].max().to_numpy()
    wide.insert(5, "settings", settings)
    out += ["### Per regime (MAE / bias / share of CIs holding the prediction)", "", _md_table(wide), ""]
    if geometry is not None and len(geometry):
        g = geometry.copy()
        for c in ("geo_mae", "separation_kept", "geo_gain"):
            g[c] = g[c].map(lambda v: _num(v, ".2f"))
        g["geo_bias"] = g["geo_bias"].map(_num)
        g["excess_error"] = g["excess_error"].map(lambda v: _num(v, ".4f"))
        out += [
            "### K = 2: the trained boundary against the population oracle (geometric units)",
            "",
            "At each empirical optimum: `geo_mae`/`geo_bias` = |oracle - trained| / (oracle - trained) "
            "log-ratio of the distances from the means to the trained boundary (the oracle taken at the "
            "separation the trained direction keeps); `separation_kept` = projected distance between the "
            "means along the trained normal over the true one (1 = the population optimum's direction); "
            "`geo_gain` = d log(m_v/m_ref) / d log(gamma_v/gamma_ref) at uniform margins (+1 = the "
            "stated mapping; < 0: a larger loss margin gives the class less room); `excess_error` = the "
            "optimum's error minus the population oracle's (the best linear rule).",
            "",
            _md_table(g),
            "",
        ]
    return "\n".join(out)


def summary_markdown(
    vt: pd.DataFrame,
    tvu: pd.DataFrame | None,
    bvg: pd.DataFrame | None,
    header: dict,
    *,
    scores: pd.DataFrame | None = None,
    geometry: pd.DataFrame | None = None,
) -> str:
    """The Markdown summary written to ``summary.md`` (``SIMS_SUMMARY_FILE``) and printed."""
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
    if scores is not None and len(scores):
        out += [rules_markdown(scores, geometry)]
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
