"""``mr2 derive`` and ``mr2 bench theory``: they run, print the rules and write their files atomically."""

from __future__ import annotations

import csv
import dataclasses

import pytest

from mr2_cli.cli import main
from theory import bench
from theory.derivation import derivation
from theory.steps import Check


def test_derive_prints_rules_and_writes_theorem(tmp_path, capsys):
    assert main(["derive", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Step 1. Setting" in out and "Step 7. Non-centred" in out
    assert "Step 8. Trade-off" in out and "Step 12. Bias" in out
    assert "worst class (Thm 3)   gamma_k ~ (a_k/n_k)^(1/2)" in out
    assert "the MR2 exponent is 1/3" in out
    assert "gamma_k ~ n_k^(-1/4)" in out
    n_checks = len(derivation().checks)
    assert f"all {n_checks} checks passed" in out
    theorem = (tmp_path / "THEOREM.md").read_text()
    for needle in (
        "## Assumptions",
        "**A1 (data).**",
        "**Theorem 1",
        "**Theorem 2",
        "## Derivation, step by step",
        "**Theorem 3",
        "## What fixes the exponent: the budget and the criterion",
    ):
        assert needle in theorem
    assert "a_k^{\\frac{1}{3}}" in theorem and "n_k^{- \\frac{1}{4}}" in theorem
    # the side-by-side table: sum budget 1/(p+1), geometric and minimax 1/p, per-class 1/4, worst 1/2
    assert "$x_k^{\\frac{1}{p + 1}}$" in theorem and theorem.count("$x_k^{\\frac{1}{p}}$") == 2
    assert "a_k^{\\frac{1}{4}}" in theorem and "a_k^{\\frac{1}{2}}" in theorem
    assert f"all {n_checks} checks passed" in theorem and "❌" not in theorem
    assert [p.name for p in tmp_path.iterdir()] == ["THEOREM.md"]  # no temporary file left behind


def test_derive_latex(tmp_path, capsys):
    assert main(["derive", "--out", str(tmp_path), "--latex"]) == 0
    out = capsys.readouterr().out
    assert "\\begin{aligned}" in out and "Step 1." not in out


def test_derive_fails_loudly_when_a_check_fails(tmp_path, capsys, monkeypatch):
    real = derivation()
    first = real.steps[0]
    spoiled = dataclasses.replace(first, checks=(*first.checks, Check("a false claim", False, "test")))
    broken = dataclasses.replace(real, steps=(spoiled, *real.steps[1:]))
    monkeypatch.setattr("theory.derivation.derivation", lambda: broken)
    assert main(["derive", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: [FAIL] a false claim" in out
    theorem = (tmp_path / "THEOREM.md").read_text()
    assert f"1 of {len(real.checks) + 1} checks FAILED" in theorem and "❌ a false claim" in theorem


def test_bench_theory_writes_csv(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--classes", "1000", "--repeats", "3", "--instances", "2"]
    assert main(["bench", "theory", *argv, "--sizes", "2,10", "--derive-runs", "1"]) == 0
    rows = list(csv.DictReader((tmp_path / "theory_bench.csv").open()))
    assert set(rows[0]) == set(bench.COLUMNS)
    kinds = {r["benchmark"] for r in rows}
    assert {"optimal_margins time (best)", "max rel err vs scipy", "cold mr2 derive (best)"} <= kinds
    impls = {r["impl"] for r in rows}
    assert any(i.startswith("numpy") for i in impls) and any(i.startswith("torch") for i in impls)
    for r in rows:
        if r["benchmark"] == "max rel err vs scipy":
            assert float(r["value"]) < bench.TARGET_REL_ERR and r["passed"] == "True"
        assert float(r["value"]) >= 0
    assert "wrote" in capsys.readouterr().out


def test_bench_agreement_same_seed_same_numbers():
    a = bench.agreement(2, seed=5, sizes=(2, 5))
    b = bench.agreement(2, seed=5, sizes=(2, 5))
    assert a == b


@pytest.mark.parametrize(
    ("argv", "name"),
    [(["--classes", "0"], "--classes"), (["--sizes", "2,x"], "--sizes"), (["--sizes", "1,2"], "--sizes")],
)
def test_bench_bad_arguments(argv, name, capsys):
    assert main(["bench", "theory", *argv]) == 2
    assert f"{name}=" in capsys.readouterr().err
