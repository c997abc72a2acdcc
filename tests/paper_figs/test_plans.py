"""The figures' training plans are library calls (``run_study``), and the command line alone maps such a
call to ``mr2 train`` flags (the demo's train step)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from mr2_cli.commands import train as train_command
from paper_figs.plans import PLANS, PROBE_PLANS, TrainingPlan

ALL_PLANS = [*PLANS.values(), *PROBE_PLANS.values(), dataclasses.replace(PLANS["tiny"], epochs=2,
             overrides={"lr": "0.1", "loss.lam": "0.2"})]  # fmt: skip


def test_a_plan_runs_its_study_kwargs(monkeypatch, tmp_path):
    import mr2.train

    calls = []
    monkeypatch.setattr(mr2.train, "run_study", lambda **kw: calls.append(kw) or [])
    plan = ALL_PLANS[-1]
    assert plan.run(tmp_path, ("ce",), progress=False) == tmp_path / plan.study
    assert calls == [{**plan.study_kwargs(tmp_path, ("ce",)), "progress": False}]
    assert calls[0]["overrides"] == {"lr": "0.1", "loss.lam": "0.2", "epochs": 2}
    assert plan.describe(tmp_path).startswith("mr2.train.run_study(preset='digits-smoke', ")
    assert not hasattr(TrainingPlan, "argv")  # no command lines built in paper_figs


@pytest.mark.parametrize("plan", ALL_PLANS, ids=lambda p: f"{p.study}-{p.epochs}")
def test_the_command_line_asks_for_the_same_study(plan, tmp_path):
    kwargs = plan.study_kwargs(tmp_path / "runs")
    argv = train_command.command_line(**kwargs)
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    assert argv[0] == "train"
    back = train_command.study_arguments(parser.parse_args(argv[1:]))
    # the flags carry text: the overrides come back as the strings apply_overrides parses
    expected = {**kwargs, "overrides": {k: str(v) for k, v in kwargs["overrides"].items()}}
    assert {**back, "losses": tuple(back["losses"]), "seeds": tuple(back["seeds"])} == expected
