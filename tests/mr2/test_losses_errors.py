"""Every bad input gives a ValueError that names the argument, shows the value and says what was expected."""

from __future__ import annotations

import pytest
import torch

from mr2.losses import LOSS_NAMES, CDBLoss, LDAMLoss, MR2Loss, make_loss

K, B, D = 4, 6, 3


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(B, K, generator=gen),
        torch.randn(B, D, generator=gen),
        torch.randint(K, (B,), generator=gen),
    )


def _with(index, value):
    logits, feats, y = _inputs()
    args = [logits, feats, y]
    args[index] = value
    return args


def _nan(t, pos=(1, 0), v=float("nan")):
    t = t.clone()
    t[pos] = v
    return t


logits0, feats0, y0 = _inputs()
BAD_BATCHES = {
    "label too large": (_with(2, torch.tensor([0, 1, 2, 3, 4, 0])), "targets"),
    "negative label": (_with(2, torch.tensor([0, -1, 2, 3, 1, 0])), "targets"),
    "float labels": (_with(2, y0.float()), "targets"),
    "targets length": (_with(2, y0[:5]), "targets"),
    "targets 2-D": (_with(2, y0[:, None]), "targets"),
    "logits 1-D": (_with(0, logits0[:, 0]), "logits"),
    "logits wrong K": (_with(0, logits0[:, :3]), "logits"),
    "features rows": (_with(1, feats0[:5]), "features"),
    "features 1-D": (_with(1, feats0[:, 0]), "features"),
    "NaN logits": (_with(0, _nan(logits0)), "logits"),
    "inf logits": (_with(0, _nan(logits0, v=float("inf"))), "logits"),
    "-inf logits": (_with(0, _nan(logits0, v=-float("inf"))), "logits"),
    "NaN features": (_with(1, _nan(feats0)), "features"),
    "inf features": (_with(1, _nan(feats0, v=float("inf"))), "features"),
    "empty batch": ([logits0[:0], feats0[:0], y0[:0]], "logits"),
    "not a tensor": (_with(0, logits0.tolist()), "logits"),
    "integer logits": (_with(0, logits0.long()), "logits"),
}


def _make(name):
    if name == "ldam":
        return make_loss(name, K, class_counts=[5, 4, 3, 2])
    return make_loss(name, K)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batches(name, case):
    args, arg_name = BAD_BATCHES[case]
    loss = _make(name)  # losses that ignore the features still refuse malformed or non-finite ones
    with pytest.raises(ValueError, match=rf"^{arg_name}=.*: expected ") as err:
        loss(*args)
    assert "expected" in str(err.value)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_batch_of_one_and_single_class_work(name):
    loss = _make(name)
    assert torch.isfinite(loss(torch.randn(1, K), torch.randn(1, D), torch.tensor([3])))
    assert torch.isfinite(loss(torch.randn(5, K), torch.randn(5, D), torch.full((5,), 2)))


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.5, True, "10"])
def test_num_classes(name, num_classes):
    with pytest.raises(ValueError, match=r"^num_classes=.*expected an integer >= 2"):
        make_loss(name, num_classes)


def test_make_loss_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^name='mr3'.*ce, focal, ldam, cdb, mr2, mr2-logit, mr2-rep"):
        make_loss("mr3", 10)


def test_make_loss_unknown_or_fixed_option():
    with pytest.raises(ValueError, match=r"^lambda=.*an option of loss 'mr2'.*lambda_rep"):
        make_loss("mr2", 10, lambda_rep=0.1, **{"lambda": 0.1})
    with pytest.raises(ValueError, match=r"^lambda_rep=.*an option of loss 'mr2-logit'"):
        make_loss("mr2-logit", 10, lambda_rep=0.1)
    with pytest.raises(ValueError, match=r"^label_smoothing="):
        make_loss("focal", 10, label_smoothing=0.1)


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"lambda_rep": -0.1}, "lambda_rep"),
        ({"lambda_rep": float("nan")}, "lambda_rep"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
        ({"norm_p": 0.5}, "norm_p"),
        ({"margin_form": "multiplicative"}, "margin_form"),
        ({"mean_margin": 0.0}, "mean_margin"),
        ({"rep_target": "median"}, "rep_target"),
        ({"rep_temperature": 0.0}, "rep_temperature"),
        ({"rep_temperature": "hot"}, "rep_temperature"),
    ],
)
def test_mr2_options(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}=.*: expected "):
        MR2Loss(10, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "arg"),
    [
        ("ce", {"label_smoothing": 1.0}, "label_smoothing"),
        ("ce", {"label_smoothing": -0.1}, "label_smoothing"),
        ("focal", {"gamma": -1.0}, "gamma"),
        ("ldam", {"class_counts": [1, 2, 3]}, "class_counts"),
        ("ldam", {"class_counts": [1, 2, 0, 4]}, "class_counts"),
        ("ldam", {"class_counts": [1, 2, float("nan"), 4]}, "class_counts"),
        ("ldam", {"max_m": 0.0}, "max_m"),
        ("ldam", {"s": -30.0}, "s"),
        ("ldam", {"normalize": True}, "head"),
        ("ldam", {"normalize": True, "head": torch.nn.Linear(3, 5)}, "head"),
        ("ldam", {"head": torch.nn.Linear(3, 4)}, "head"),
        ("ldam", {"drw_epoch": -1}, "drw_epoch"),
        ("ldam", {"drw_epoch": 1.5}, "drw_epoch"),
        ("ldam", {"beta": 1.0}, "beta"),
        ("cdb", {"tau": -2.0}, "tau"),
        ("cdb", {"tau": "fast"}, "tau"),
        ("cdb", {"min_difficulty": 0.0}, "min_difficulty"),
    ],
)
def test_baseline_options(name, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}=.*: expected "):
        make_loss(name, 4, **kwargs)


def test_ldam_head_width_must_match_features():
    loss = LDAMLoss(K, normalize=True, head=torch.nn.Linear(5, K))
    with pytest.raises(ValueError, match=r"^features=.*d = 5"):
        loss(logits0, feats0, y0)


def test_cdb_set_class_accuracy_checks():
    loss = CDBLoss(K)
    with pytest.raises(ValueError, match=r"^accuracy=.*4 finite"):
        loss.set_class_accuracy([0.5, 0.5])
    with pytest.raises(ValueError, match=r"^accuracy=.*\[0, 1\]"):
        loss.set_class_accuracy([0.5, 0.5, 1.5, 0.1])


def test_devices_must_agree_message():
    # the only device here is the CPU, so a meta tensor stands in for "another device"
    loss = MR2Loss(K)
    with pytest.raises(ValueError, match=r"^targets=.*device of logits"):
        loss(logits0, feats0, y0.to("meta"))
