"""The temperature form's two regimes on two Gaussian classes (sims.temperature)."""

from __future__ import annotations

import numpy as np
import pytest

from sims.temperature import regimes_markdown, summarise_regimes, temperature_regimes


@pytest.fixture(scope="module")
def summary():
    table = temperature_regimes((1.0, 12.0), (1.0, 2.0), n_per_class=300, n_sets=4)
    return table, summarise_regimes(table)


def test_overlapping_classes_lose_ground_separable_ones_gain_a_margin(summary):
    _, s = summary
    row = s.set_index(["separation", "ratio"])
    # overlapping (delta = 1): the larger temperature moves the boundary toward its class
    assert row.loc[(1.0, 2.0), "shift_ci_low"] > 0.3
    assert row.loc[(1.0, 2.0), "recall_large"] < row.loc[(1.0, 2.0), "recall_small"] - 0.2
    assert row.loc[(1.0, 2.0), "share_below_crossover"] > 0.9
    # separable (delta = 12): it moves away, as a margin would
    assert row.loc[(12.0, 2.0), "shift_ci_high"] < -0.5
    assert row.loc[(12.0, 2.0), "train_error"] == 0.0
    assert row.loc[(12.0, 2.0), "share_below_crossover"] == 0.0
    assert "margin-like" in row.loc[(12.0, 2.0), "regime"]
    assert "pressure taken away" in row.loc[(1.0, 2.0), "regime"]


def test_equal_temperatures_leave_the_boundary_at_the_midpoint_on_average(summary):
    table, s = summary
    ref = s[s["ratio"] == 1.0]
    assert np.all(ref["boundary_shift"].abs() < 0.1)  # sampling noise of the boundary only
    assert set(ref["regime"]) == {"reference (plain CE)"}
    assert (table.groupby(["separation", "set"])["train_error"].nunique() == 1).all()


def test_the_markdown_lists_every_temperature_above_one(summary):
    _, s = summary
    text = regimes_markdown(s)
    assert text.count("\n| ") == 1 + int((s["ratio"] > 1).sum())


@pytest.mark.parametrize(
    "kw, what",
    [({"separations": (0.0,)}, "separations"), ({"ratios": (0.5,)}, "ratios"), ({"ratios": ()}, "ratios")],
)
def test_bad_input_is_named(kw, what):
    with pytest.raises(ValueError, match=what):
        temperature_regimes(**kw)
