"""``mr2 simulate`` end to end on a tiny preset: files, contract columns, resume, verdict."""

import json

import pandas as pd
import pytest

import sims.experiments as ex
from mr2_cli.cli import main
from mr2_core.contracts import SIMS_COLUMNS, SIMS_FILES, SIMS_MANIFEST_FILE, SIMS_RULES, SIMS_SUMMARY_FILE
from sims.verdict import verdict_table

TINY = ex.PresetSpec(
    sigma_ratios=(0.5, 1.0, 2.0),
    n_per_class=(8,),
    dims=(1,),
    losses=("additive", "temperature"),
    seeds_k2=3,
    grid_size=7,
    multi_sigmas=(0.5, 1.0, 2.0),
    multi_dims=(2,),
    multi_n=(8,),
    seeds_multi=2,
    beta_grid=3,
    refine_rounds=1,
    separations_k2=(3.0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sims")
    mp = pytest.MonkeyPatch()
    mp.setattr(ex, "QUICK", TINY)
    mp.setattr(ex, "N_BOOT", 200)
    try:
        rc = main(
            ["simulate", "--preset", "all", "--quick", "--out", str(out), "--jobs", "1", "--no-progress"]
        )
        summary_all = (out / "summary.md").read_text()
        rc2 = main(
            [
                "simulate",
                "--preset",
                "bound-vs-gap",
                "--quick",
                "--out",
                str(out),
                "--jobs",
                "1",
                "--no-progress",
            ]
        )
    finally:
        mp.undo()
    return out, rc, rc2, summary_all


def test_files_and_contract_columns(tiny_run):
    out, rc, _, summary = tiny_run
    assert rc == 0
    for name in (*SIMS_FILES, SIMS_MANIFEST_FILE, SIMS_SUMMARY_FILE):
        assert (out / name).exists(), name
    for name, columns in SIMS_COLUMNS.items():  # every file carries the contract's columns, in order
        assert list(pd.read_csv(out / name).columns[: len(columns)]) == list(columns), name
    mvv = pd.read_csv(out / "margin_vs_variance.csv")
    assert set(mvv["criterion"]) == {"balanced", "worst_class"}
    assert (mvv["ci_low"] <= mvv["opt_log_margin_ratio"] + 1e-12).all()
    assert (mvv["opt_log_margin_ratio"] <= mvv["ci_high"] + 1e-12).all()
    # one row per (K, loss, d, n, sigma ratio or class, criterion): 2 losses x 3 ratios x 2 + 2 losses x 2 x 2
    assert len(mvv) == 2 * 3 * 2 + 2 * 2 * 2
    bvg = pd.read_csv(out / "bound_vs_gap.csv")
    assert {"margin_term", "gen_gap", "margin_term_ci_low", "gen_gap_ci_high", "class"} <= set(bvg.columns)
    tvu = pd.read_csv(out / "theory_vs_uniform.csv")
    assert set(tvu["choice"]) == {"uniform", "theory", "optimum_balanced", "optimum_worst_class"}
    assert (tvu.loc[tvu["choice"] == "uniform", "diff_vs_uniform"] == 0).all()
    assert "Verdict table" in summary and "worst_class" in summary
    # the separation family: the variance rows and a second separation (K = 2 only), scored by every rule
    mvs = pd.read_csv(out / "margin_vs_separation.csv")
    assert len(mvs) == len(mvv) + 2 * 3 * 2 and sorted(mvs["mu"].unique()) == [1.5, 2.5, 3.0]
    assert set(mvs.loc[mvs["K"] == 2, "separation"]) == {3.0, 6.0}  # the means are 2 mu apart
    scores = pd.read_csv(out / "rule_scores.csv")
    assert set(scores["rule"]) == set(SIMS_RULES)
    assert (scores["mae"] >= scores["bias"].abs() - 1e-12).all() and scores["in_ci"].between(0, 1).all()
    assert "Which margin rule predicts the optima" in summary


def test_manifest_and_resume(tiny_run):
    out, _, rc2, _ = tiny_run
    assert rc2 == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["preset"] == "bound-vs-gap" and m["settings_computed"] == 0 and m["settings_reused"] > 0
    assert "git_commit" in m["code_version"] and m["models_not_converged"] == 0
    assert len(m["settings"]) == len(m["seeds"])


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["simulate", "--preset", "all", "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs=0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--preset", "nope", "--out", str(tmp_path)])


def _exps(lo, hi):
    base = dict(K=2, loss="a", d=2, n_per_class=10, mu=1.5, theory_exponent=1 / 3, boundary_optima=0)
    return pd.DataFrame([dict(base, criterion="balanced", exponent=(lo + hi) / 2, ci_low=lo, ci_high=hi)])


def _mvv(cis):
    base = dict(K=2, loss="a", d=2, n_per_class=10, mu=1.5, criterion="balanced")
    return pd.DataFrame([dict(base, theory_log_margin_ratio=t, ci_low=lo, ci_high=hi) for t, lo, hi in cis])


@pytest.mark.parametrize(
    "exp_ci, cis, agree, oppose, verdict",
    [
        # theory side: + for t > 0, - for t < 0; the third CI covers 0
        ((0.1, 0.7), [(0.3, 0.1, 0.5), (-0.3, -0.6, -0.1), (0.2, -0.1, 0.4)], 2, 0, "holds"),
        ((0.1, 0.7), [(0.3, 0.1, 0.5), (-0.3, -0.6, -0.1), (0.2, -0.5, -0.1)], 2, 1, "mixed"),
        ((-0.8, -0.2), [(0.3, -0.5, -0.1), (-0.3, 0.1, 0.6)], 0, 2, "reversed"),
        ((-0.2, 0.5), [(0.3, -0.5, 0.1), (-0.3, -0.1, 0.6)], 0, 0, "inconclusive"),
        ((0.1, 0.7), [(0.3, -0.5, -0.1), (0.0, -1.0, -0.5)], 0, 1, "inconclusive"),  # t = 0 is not counted
    ],
)
def test_verdict_rules(exp_ci, cis, agree, oppose, verdict):
    row = verdict_table(_exps(*exp_ci), _mvv(cis)).iloc[0]
    assert (row["agree"], row["oppose"], row["verdict"]) == (agree, oppose, verdict)
