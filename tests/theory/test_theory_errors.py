"""Every error path of the margin rules: a ValueError naming the argument, its value and what was expected."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theory import (
    bound_term,
    centred_spread,
    class_bound_term,
    gain_over_uniform,
    gaussian_ramp_risk,
    ldam_margins,
    margin_objective,
    margin_term,
    minimax_margins,
    optimal_margins,
    per_class_margins,
    tradeoff_margins,
    two_gaussians,
)
from theory.reference import scipy_optimal_margins

GOOD = np.array([1.0, 2.0, 3.0])

# (label, spread, expected fragment of the message)
BAD_SPREADS = [
    ("negative", np.array([1.0, -2.0, 3.0]), "non-negative"),
    ("nan", np.array([1.0, np.nan, 3.0]), "finite"),
    ("inf", np.array([1.0, np.inf, 3.0]), "finite"),
    ("-inf", np.array([-np.inf, 1.0]), "finite"),
    ("empty", np.array([]), "non-empty"),
    ("2-D", np.ones((2, 2)), "1-D"),
    ("text", ["a", "b"], "real numbers"),
    ("torch negative", torch.tensor([1.0, -1.0]), "non-negative"),
    ("torch nan", torch.tensor([1.0, float("nan")]), "finite"),
    ("torch inf", torch.tensor([float("inf"), 1.0]), "finite"),
    ("torch empty", torch.tensor([]), "non-empty"),
    ("torch 2-D", torch.ones(2, 3), "1-D"),
]
BAD_MEAN_MARGINS = [0.0, -1.0, math.nan, math.inf, "x"]
BAD_POWERS = [0.0, -2.0, math.nan, math.inf]
BAD_WEIGHTS = [
    ("too short", np.array([0.5, 0.5]), "shape"),
    ("too long", np.ones(4), "shape"),
    ("zero", np.array([1.0, 0.0, 1.0]), "positive"),
    ("negative", np.array([1.0, -1.0, 1.0]), "positive"),
    ("nan", np.array([1.0, np.nan, 1.0]), "finite"),
    ("inf", np.array([1.0, np.inf, 1.0]), "finite"),
    ("2-D", np.ones((3, 1)), "1-D"),
]


def _raises(fn, name: str, fragment: str):
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    assert msg.startswith(f"{name}="), msg  # names the argument and shows the value
    assert "expected" in msg and fragment in msg, msg
    return msg


# every function that takes a spread rejects the same bad spreads
SPREAD_FUNCTIONS = {
    "optimal_margins": lambda s: optimal_margins(s),
    "optimal_margins_geometric": lambda s: optimal_margins(s, budget="geometric"),
    "minimax_margins": lambda s: minimax_margins(s),
    "per_class_margins": lambda s: per_class_margins(s),
    "class_bound_term": lambda s: class_bound_term(s, np.ones(2), [1, 1]),
    "margin_objective": lambda s: margin_objective(s, np.ones(2)),
    "margin_term": lambda s: margin_term(s, np.ones(2)),
    "gain_over_uniform": lambda s: gain_over_uniform(s),
}


@pytest.mark.parametrize("fn_name", sorted(SPREAD_FUNCTIONS))
@pytest.mark.parametrize(("label", "spread", "fragment"), BAD_SPREADS, ids=[b[0] for b in BAD_SPREADS])
def test_bad_spread(fn_name, label, spread, fragment):
    _raises(lambda: SPREAD_FUNCTIONS[fn_name](spread), "spread", fragment)


@pytest.mark.parametrize("value", BAD_MEAN_MARGINS)
def test_bad_mean_margin(value):
    _raises(lambda: optimal_margins(GOOD, mean_margin=value), "mean_margin", "> 0")


@pytest.mark.parametrize("value", BAD_POWERS)
@pytest.mark.parametrize(
    "fn",
    [
        lambda p: optimal_margins(GOOD, power=p),
        lambda p: margin_objective(GOOD, np.ones(3), power=p),
        lambda p: margin_term(GOOD, np.ones(3), power=p),
        lambda p: gain_over_uniform(GOOD, power=p),
    ],
    ids=["optimal_margins", "margin_objective", "margin_term", "gain_over_uniform"],
)
def test_bad_power(fn, value):
    _raises(lambda: fn(value), "power", "> 0")


@pytest.mark.parametrize(("label", "weights", "fragment"), BAD_WEIGHTS, ids=[b[0] for b in BAD_WEIGHTS])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_bad_weights(label, weights, fragment, kind):
    spread = GOOD if kind == "numpy" else torch.tensor(GOOD)
    w = weights if kind == "numpy" else torch.tensor(weights)
    _raises(lambda: optimal_margins(spread, weights=w), "weights", fragment)
    _raises(lambda: gain_over_uniform(spread, weights=w), "weights", fragment)
    _raises(lambda: margin_term(spread, np.ones(3), weights=w), "weights", fragment)


@pytest.mark.parametrize(
    ("margins", "fragment"),
    [
        (np.ones(2), "shape"),
        (np.array([1.0, 0.0, 1.0]), "positive"),
        (np.array([1.0, np.nan, 1.0]), "finite"),
    ],
)
def test_bad_margins(margins, fragment):
    _raises(lambda: margin_objective(GOOD, margins), "margins", fragment)
    _raises(lambda: margin_term(GOOD, margins), "margins", fragment)


def test_message_shows_the_value():
    msg = _raises(lambda: optimal_margins(GOOD, mean_margin=-3.5), "mean_margin", "> 0")
    assert "-3.5" in msg
    msg = _raises(lambda: optimal_margins(np.array([1.0, -7.25])), "spread", "non-negative")
    assert "-7.25" in msg and "positions [1]" in msg


@pytest.mark.parametrize(
    ("counts", "fragment"),
    [(np.array([10.0, 0.0]), "positive"), (np.array([10.0, -1.0]), "positive"), (np.array([]), "non-empty")],
)
def test_bad_class_counts(counts, fragment):
    _raises(lambda: ldam_margins(counts), "class_counts", fragment)


@pytest.mark.parametrize("value", [0.0, -0.5, math.nan])
def test_bad_max_margin(value):
    _raises(lambda: ldam_margins(np.array([10.0, 20.0]), max_margin=value), "max_margin", "> 0")


def test_reference_solver_errors():
    _raises(lambda: scipy_optimal_margins(GOOD, method="newton"), "method", "'softmax'")
    _raises(lambda: scipy_optimal_margins(np.array([1.0, 0.0])), "spread", "strictly positive")
    _raises(lambda: scipy_optimal_margins(np.ones(300), method="slsqp"), "spread", "at most")
    _raises(lambda: scipy_optimal_margins(GOOD, weights=np.ones(2)), "weights", "positive weights")
    _raises(lambda: scipy_optimal_margins(GOOD, mean_margin=0), "mean_margin", "> 0")
    _raises(lambda: scipy_optimal_margins(GOOD, power=-1), "power", "> 0")


def test_validate_false_still_refuses_a_2d_tensor():
    _raises(lambda: optimal_margins(torch.ones(2, 2), validate=False), "spread", "1-D")


# ------------------------------------------------------------------ the rules of steps 8-12


COUNTS = np.array([10.0, 20.0, 30.0])


@pytest.mark.parametrize(
    ("fn", "name", "fragment"),
    [
        (lambda: optimal_margins(GOOD, budget="product"), "budget", "'sum'"),
        (lambda: optimal_margins(GOOD, budget="product", validate=False), "budget", "'geometric'"),
        (lambda: optimal_margins(np.array([0.0, 1.0]), budget="geometric"), "spread", "strictly positive"),
        (lambda: minimax_margins(GOOD, COUNTS[:2]), "class_counts", "shape (3,)"),
        (lambda: minimax_margins(GOOD, np.array([1.0, 0.0, 2.0])), "class_counts", "positive"),
        (lambda: minimax_margins(GOOD, power=0.0), "power", "> 0"),
        (lambda: minimax_margins(GOOD, mean_margin=-1.0), "mean_margin", "> 0"),
        (lambda: minimax_margins(np.array([1.0, -1.0])), "spread", "non-negative"),
        (lambda: per_class_margins(GOOD, np.array([1.0, np.nan, 2.0])), "class_counts", "finite"),
        (lambda: per_class_margins(GOOD, mean_margin=0.0), "mean_margin", "> 0"),
        (lambda: bound_term(GOOD, np.ones(3), COUNTS, weight_norm=0.0), "weight_norm", "> 0"),
        (lambda: bound_term(GOOD, np.ones(2), COUNTS), "margins", "shape"),
        (lambda: bound_term(GOOD, np.ones(3), COUNTS[:2]), "class_counts", "shape (3,)"),
        (lambda: bound_term(GOOD, np.ones(3), COUNTS, loss_weights=np.zeros(3)), "loss_weights", "positive"),
        (lambda: class_bound_term(GOOD, np.array([1.0, 0.0, 1.0]), COUNTS), "margins", "positive"),
        (lambda: class_bound_term(GOOD, np.ones(3), -COUNTS), "class_counts", "positive"),
        (lambda: class_bound_term(np.array([1.0, np.inf, 1.0]), np.ones(3), COUNTS), "spread", "finite"),
        (lambda: centred_spread(np.ones(3), GOOD), "class_means", "2-D"),
        (lambda: centred_spread(np.ones((3, 2)), GOOD[:2]), "class_spread", "shape (3,)"),
        (lambda: centred_spread(np.ones((3, 2)), -GOOD), "class_spread", "non-negative"),
        (lambda: centred_spread(np.ones((3, 2)), GOOD, weights=np.ones(2)), "weights", "3 strictly positive"),
    ],
)
def test_new_rules_name_the_bad_argument(fn, name, fragment):
    _raises(fn, name, fragment)


INST = {
    "spread": np.array([1.0, 2.0]),
    "margin_mean": np.array([1.0, 1.0]),
    "margin_sd": np.array([1.0, 2.0]),
    "complexity": 1e-3,
}


@pytest.mark.parametrize(
    ("change", "name", "fragment"),
    [
        ({"spread": np.array([1.0, 0.0])}, "spread", "strictly positive"),
        ({"spread": np.array([1.0, np.nan])}, "spread", "finite"),
        ({"margin_mean": np.array([1.0])}, "margin_mean", "shape (2,)"),
        ({"margin_sd": np.array([1.0, 0.0])}, "margin_sd", "strictly positive"),
        ({"complexity": 0.0}, "complexity", "> 0"),
        ({"complexity": 1e6}, "complexity", "smaller constant"),
        ({"weights": np.array([1.0, -1.0])}, "weights", "strictly positive"),
        ({"margin_mean": np.array([1.0, -400.0])}, "margin_mean", "positive margins"),
    ],
)
def test_tradeoff_names_the_bad_argument(change, name, fragment):
    _raises(lambda: tradeoff_margins(**{**INST, **change}), name, fragment)


@pytest.mark.parametrize(
    ("fn", "name", "fragment"),
    [
        (lambda: gaussian_ramp_risk(0.0, 1.0, 1.0), "margins", "strictly positive"),
        (lambda: gaussian_ramp_risk(1.0, np.nan, 1.0), "margin_mean", "finite"),
        (lambda: gaussian_ramp_risk(1.0, 1.0, -1.0), "margin_sd", "strictly positive"),
        (lambda: two_gaussians(0.0, [1.0, 1.0], n=10), "mean", "> 0"),
        (lambda: two_gaussians(1.0, [1.0, 1.0, 1.0], n=10), "sigmas", "shape (2,)"),
        (lambda: two_gaussians(1.0, [1.0, 1.0], n=0), "n", "> 0"),
    ],
)
def test_gaussian_helpers_name_the_bad_argument(fn, name, fragment):
    _raises(fn, name, fragment)
