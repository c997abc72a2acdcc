"""Which training runs the figures and the demo make when none are cached (``mr2.train.run_study``).

Three plans, all CE against MR2 on the same seeds (figures 1 and 2 pair them):

* ``full``: the verification protocol's preset (``fmnist-protocol``), CE and MR2 only, 12 seeds;
* ``quick``: ``fmnist-smoke`` (20k images, 3 epochs) with five seeds: the demo's training, about
  three minutes on 2 idle CPU cores;
* ``tiny``: scikit-learn digits (``digits-smoke``): seconds, for tests.

When Fashion-MNIST is not installed, ``full`` and ``quick`` fall back to the digits plan with a notice
(the training pillar's own error names the install command).

A plan is the keyword arguments of one ``mr2.train.run_study`` call (``TrainingPlan.study_kwargs``):
``TrainingPlan.run`` makes it, ``TrainingPlan.describe`` writes that call for the figure index. The
figures never build command lines: mapping a call to ``mr2 train`` flags is the command line's own job
(``mr2_cli.commands.train.command_line``, used by the demo).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mr2.train.presets import PROBE_METHODS
from mr2_core.checks import bad

PROBE_LOSSES = tuple(PROBE_METHODS)

__all__ = [
    "TrainingPlan",
    "PLANS",
    "PROBE_PLANS",
    "PROBE_STUDIES",
    "fashion_mnist_available",
    "choose_plan",
    "choose_probe_plan",
]


@dataclass(frozen=True)
class TrainingPlan:
    """Arguments of one ``run_study`` call; runs land in ``RUNS/<study>/<loss>/seed<k>``."""

    name: str
    preset: str  # a preset of mr2.train
    study: str  # study folder name (distinct per plan: a changed config must not resume another's runs)
    dataset: str  # what the preset trains on (for notices)
    losses: tuple[str, ...] = ("ce", "mr2")
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: dict[str, str] = field(default_factory=dict)  # config fields (mr2.train.apply_overrides)
    epochs: int | None = None  # None: the preset's

    def study_kwargs(self, runs: str | Path, losses: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The keyword arguments of ``mr2.train.run_study`` that make (or skip, when finished) every
        run of the plan under ``runs`` (``losses``: a subset of the plan's)."""
        overrides: dict[str, Any] = dict(self.overrides)
        if self.epochs is not None:
            overrides["epochs"] = self.epochs
        return {
            "preset": self.preset,
            "runs": str(runs),
            "losses": tuple(losses or self.losses),
            "seeds": self.seeds,
            "overrides": overrides,
            "study": self.study,
        }

    def describe(self, runs: str | Path, losses: tuple[str, ...] | None = None) -> str:
        """The library call ``run`` makes, as text for the figure index."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.study_kwargs(runs, losses).items())
        return f"mr2.train.run_study({args})"

    def run(self, runs: str | Path, losses: tuple[str, ...] | None = None, *, progress: bool = True) -> Path:
        """Make (or skip, when finished) every run of the plan under ``runs``; the study folder.

        Raises RuntimeError naming the runs that diverged (the figures cannot use a half study).
        """
        from mr2.train import run_study

        records = run_study(**self.study_kwargs(runs, losses), progress=progress)
        failed = [r for r in records if r["status"] == "diverged"]
        if failed:
            raise RuntimeError("; ".join(f"{r['run_dir']} diverged: {r['error']}" for r in failed))
        return Path(runs) / self.study


PLANS: dict[str, TrainingPlan] = {
    # the verification protocol's key comparison: its CE and MR2 runs, 12 seeds (shared with the study)
    "full": TrainingPlan(name="full", preset="fmnist-protocol", study="fmnist-protocol",
                         dataset="fashion-mnist", seeds=tuple(range(12))),
    # fmnist-smoke as it is (20k images, 3 epochs): ~18 s a run on 2 idle cores, 10 runs ~3 min
    "quick": TrainingPlan(name="quick", preset="fmnist-smoke", study="fmnist-quick", dataset="fashion-mnist",
                          seeds=(0, 1, 2, 3, 4)),
    "tiny": TrainingPlan(name="tiny", preset="digits-smoke", study="digits-tiny", dataset="digits",
                         seeds=(0, 1, 2)),
}  # fmt: skip
DIGITS_FALLBACK = {"full": "digits-full", "quick": "digits-quick"}
# the linear-probe study of figure 8: every margin statistic on a frozen, shared backbone
PROBE_PLANS: dict[str, TrainingPlan] = {
    "full": TrainingPlan(name="full", preset="fmnist-probe", study="fmnist-probe", dataset="fashion-mnist",
                         losses=PROBE_LOSSES, seeds=tuple(range(24))),
    "quick": TrainingPlan(name="quick", preset="digits-probe", study="digits-probe", dataset="digits",
                          losses=PROBE_LOSSES, seeds=(0, 1, 2)),
}  # fmt: skip
PROBE_STUDIES = tuple(p.study for p in PROBE_PLANS.values())


def fashion_mnist_available(data_dir: str | None = None) -> bool:
    """True when ``mr2.data`` finds Fashion-MNIST's four IDX files (no download is tried)."""
    from mr2.data import find_fashion_mnist

    try:
        find_fashion_mnist(data_dir)
    except (ValueError, FileNotFoundError, OSError):
        return False
    return True


def choose_probe_plan(name: str, *, notice=print) -> TrainingPlan:
    """The probe plan ``name`` (``full`` or ``quick``); ``full`` becomes ``quick`` (digits), with a
    notice, when Fashion-MNIST is not installed."""
    if name not in PROBE_PLANS:
        raise bad("plan", name, f"one of {sorted(PROBE_PLANS)}")
    if name == "full" and not fashion_mnist_available():
        notice("notice: Fashion-MNIST is not installed; the probe study runs on scikit-learn digits instead.")
        return PROBE_PLANS["quick"]
    return PROBE_PLANS[name]


def choose_plan(name: str, *, notice=print) -> TrainingPlan:
    """The plan ``name``; a Fashion-MNIST plan becomes its digits fallback, with a notice, if absent."""
    if name not in PLANS:
        raise bad("plan", name, f"one of {sorted(PLANS)}")
    plan = PLANS[name]
    if plan.dataset == "fashion-mnist" and not fashion_mnist_available():
        notice(
            "notice: Fashion-MNIST is not installed (as root: apt-get install -y dataset-fashion-mnist); "
            "training on scikit-learn digits instead.",
        )
        plan = dataclasses.replace(PLANS["tiny"], name=name, study=DIGITS_FALLBACK[name])
    return plan
