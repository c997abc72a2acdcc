"""Per-class numbers over seeds for the figures: each class's mean with its CI, and each class's paired
difference to the baseline (``paper_figs.study_plots`` draws them; nothing here plots). Re-exported by
:mod:`mr2.report`.

Every interval comes from ``mr2_core.stats.interval_estimates`` and stays inside its value's range
(``VALUE_BOUNDS``; differences clipped to [-1, 1]).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mr2_core.checks import bad, check_in, check_int
from mr2_core.contracts import BASELINE_LOSS, CI_METHODS
from mr2_core.stats import DIFFERENCE, MIN_BOOT, NON_NEGATIVE, UNIT, interval_estimates

__all__ = ["VALUE_BOUNDS", "class_intervals", "paired_class_differences"]

# per_class_table columns -> their range, for class_intervals
VALUE_BOUNDS = {"accuracy": UNIT, "error": UNIT, "spread": NON_NEGATIVE, "rel_spread": NON_NEGATIVE}


def _check_ci(ci: str, n_boot: int) -> None:
    check_in("ci", ci, CI_METHODS)
    if ci != "t":
        check_int("n_boot", n_boot, MIN_BOOT)


def _wide(long: pd.DataFrame, loss: str, value: str) -> pd.DataFrame:
    sub = long[long["loss"] == loss]
    return sub.pivot(index="seed", columns="class_index", values=value).sort_index(axis=1)


def _class_names(long: pd.DataFrame) -> pd.Series:
    return long.drop_duplicates("class_index").set_index("class_index")["class_name"]


def class_intervals(
    long: pd.DataFrame,
    *,
    value: str = "accuracy",
    ci: str = "t",
    rng: int | np.random.Generator | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Mean over seeds of ``value`` per (loss, class) with its CI (``interval_estimates``), inside the
    value's range (``VALUE_BOUNDS``: [0, 1] for accuracy and error, [0, inf) for spreads).

    Args:
        long: :func:`per_class_table`'s table.
        value: its column to summarise (``accuracy``, ``error``, ``rel_spread``, ...).

    Returns:
        ``loss, class_index, class_name, mean, ci_low, ci_high, n_seeds``; no CI below 2 seeds.
    """
    _check_ci(ci, n_boot)
    scores = {loss: _wide(long, loss, value).to_numpy() for loss in dict.fromkeys(long["loss"])}
    table = interval_estimates(scores, method=ci, rng=rng, n_boot=n_boot, key_name="loss",
                               index_names=["class_index"], bounds=VALUE_BOUNDS.get(value))  # fmt: skip
    table.insert(2, "class_name", _class_names(long).loc[table["class_index"]].to_numpy())
    return table.rename(columns={"point": "mean", "n_runs": "n_seeds"})[
        ["loss", "class_index", "class_name", "mean", "ci_low", "ci_high", "n_seeds"]
    ]


def paired_class_differences(
    long: pd.DataFrame,
    loss: str,
    baseline: str = BASELINE_LOSS,
    *,
    ci: str = "t",
    rng: int | np.random.Generator | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Per-class accuracy of ``loss`` minus ``baseline`` on the seeds both have, with CIs (clipped to
    [-1, 1]).

    Returns:
        ``class_index, class_name, diff, ci_low, ci_high, n_seeds``; no CI below 2 paired seeds.
    """
    _check_ci(ci, n_boot)
    present = sorted(set(long["loss"]))
    for name, arg in ((loss, "loss"), (baseline, "baseline")):
        if name not in present:
            raise bad(arg, name, f"one of the study's losses {present}")
    a, b = _wide(long, loss, "accuracy"), _wide(long, baseline, "accuracy")
    seeds = a.index.intersection(b.index)
    if len(seeds) == 0:
        raise bad("loss", loss, f"a loss with runs on seeds of {baseline!r} (none shared): cannot pair")
    diff = a.loc[seeds].to_numpy() - b.loc[seeds].to_numpy()
    table = interval_estimates({loss: diff}, method=ci, rng=rng, n_boot=n_boot, index_names=["class_index"],
                               bounds=DIFFERENCE, scale="clip")  # fmt: skip
    return pd.DataFrame({
        "class_index": a.columns, "class_name": _class_names(long).loc[a.columns].to_numpy(),
        "diff": table["point"].to_numpy(), "ci_low": table["ci_low"].to_numpy(),
        "ci_high": table["ci_high"].to_numpy(), "n_seeds": len(seeds),
    })  # fmt: skip
