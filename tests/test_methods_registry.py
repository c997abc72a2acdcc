"""The method registry (mr2_core.contracts.METHODS): one home for what a method is, read by the
presets, make_loss, the figures' colours and labels, and the training benchmark."""

from __future__ import annotations

import math

import pytest
import torch

import mr2_core.contracts as C
from mr2.losses import MR2Loss, make_loss
from mr2.models import build_model
from mr2.train.config import TrainConfig, apply_overrides
from mr2.train.presets import BACKBONE_SEEDS, PRESETS, get_preset
from mr2.train.runtime import lr_at, make_optimizer


def test_every_preset_method_is_registered_and_trains_with_a_known_loss():
    for preset in PRESETS.values():
        for name in preset.losses:
            assert name in C.METHODS, f"{preset.name}: {name} is not registered"
            assert preset.config_for(name, 0).loss in C.LOSSES
    for m in C.METHODS.values():
        assert m.loss in C.LOSSES and m.family in C.METHOD_FAMILIES and m.label
        assert all(k.startswith("loss.") or k in TrainConfig.__dataclass_fields__ for k in m.options), m.name


def test_every_method_has_its_own_colour():
    from paper_figs.style import loss_color, method_palette

    indices = [m.color for m in C.METHODS.values()]
    assert len(set(indices)) == len(indices) and all(0 <= i < C.PALETTE_SIZE for i in indices)
    assert len(method_palette()) == C.PALETTE_SIZE
    colours = {loss_color(name) for name in C.METHODS}
    assert len(colours) == len(C.METHODS)
    # the colours of the losses that had one before the registry are unchanged (CE blue, MR2 orange)
    assert C.LOSS_COLOR_INDEX["ce"] == 0 and C.LOSS_COLOR_INDEX["mr2"] == 1


@pytest.mark.parametrize("name", sorted(C.METHODS))
def test_make_loss_accepts_every_method_and_applies_its_loss_options(name):
    loss = make_loss(name, 3, class_counts=[30, 20, 10])
    for key, value in C.METHODS[name].options.items():
        if key.startswith("loss."):
            assert getattr(loss, key[len("loss.") :]) == value, (name, key)


def test_make_loss_with_a_method_name_and_options():
    loss = make_loss("mr2-oracle-additive", 4, lambda_rep=0.0)
    assert isinstance(loss, MR2Loss) and loss.statistic == "oracle" and loss.margin_form == "additive"
    assert loss.exponent == 1.0 and loss.lambda_rep == 0.0
    with pytest.raises(ValueError, match=r"^name='nope'"):
        make_loss("nope", 4)


def test_probe_presets_train_mr2_with_its_logit_margins_and_nest_in_backbones():
    for b in BACKBONE_SEEDS:
        p = get_preset(f"fmnist-probe-b{b}")
        assert p.config.init_checkpoint == f"@fmnist-pretrain/ce/seed{b}" and p.config.freeze_backbone
        assert p.config_for("mr2", 0).loss == "mr2-logit"
        cfg = p.config_for("mr2-oracle-additive", 0)
        assert cfg.loss == "mr2-logit" and cfg.loss_options == dict(
            statistic="oracle", margin_form="additive", exponent=1.0
        )
    assert get_preset("fmnist-protocol").config_for("mr2-oracle-additive", 0).loss == "mr2"
    assert "mr2-official-wise" not in get_preset("fmnist-protocol").losses  # a random-init merge


def test_the_placebo_draws_one_permutation_per_seed():
    p = get_preset("fmnist-probe-b0")
    perms = set()
    for seed in range(5):
        cfg = p.config_for("mr2-shuffled", seed)
        assert cfg.loss_options["shuffle_seed"] == seed
        loss = make_loss(cfg.loss, 10, **cfg.loss_options)
        perms.add(tuple(loss.permutation.tolist()))
    assert len(perms) == 5
    # an explicit seed wins
    assert p.config_for("mr2-shuffled", 3, **{"loss.shuffle_seed": 7}).loss_options["shuffle_seed"] == 7


def test_ldam_drw_authors_optimiser_and_step_schedule():
    cfg = get_preset("fmnist-lt100").config_for("ldam-drw-authors", 0)
    assert (cfg.lr, cfg.weight_decay, cfg.nesterov, cfg.schedule) == (0.1, 2e-4, False, "step")
    assert cfg.warmup_epochs == pytest.approx(30 * 5 / 200) and cfg.loss_options["drw_epoch"] == 24
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    assert opt.param_groups[0]["nesterov"] is False
    default = make_optimizer([torch.nn.Parameter(torch.zeros(2))], get_preset("fmnist-lt100").config)
    assert default.param_groups[0]["nesterov"] is True  # the project's default is unchanged
    steps = 100  # per epoch, 30 epochs: decays at steps 2400 and 2700
    assert lr_at(2399, steps, cfg) == pytest.approx(0.1)
    assert lr_at(2400, steps, cfg) == pytest.approx(0.1 * 0.01)
    assert lr_at(2700, steps, cfg) == pytest.approx(0.1 * 1e-4)
    assert lr_at(0, steps, cfg) == pytest.approx(0.1 / 75)  # warm-up over 0.75 epochs


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule": "step"}, "lr_steps"),
        ({"schedule": "step", "lr_steps": [[0.9, 0.1], [0.8, 0.1]]}, "lr_steps"),
        ({"schedule": "step", "lr_steps": [[1.0, 0.1]]}, "lr_steps"),
        ({"schedule": "step", "lr_steps": [[0.5, 0.0]]}, "lr_steps"),
        ({"lr_steps": [[0.5, 0.1]]}, "lr_steps"),
        ({"nesterov": "yes"}, "nesterov"),
    ],
)
def test_schedule_fields_are_checked(changes, field):
    with pytest.raises(ValueError, match=rf"^{field}="):
        TrainConfig(**changes)


def test_schedule_fields_parse_from_the_command_line():
    cfg = apply_overrides(
        TrainConfig(), {"schedule": "step", "lr_steps": "[[0.5, 0.1]]", "nesterov": "false"}
    )
    assert cfg.lr_steps == [[0.5, 0.1]] and cfg.nesterov is False
    assert math.isclose(lr_at(60, 10, cfg), cfg.lr * 0.1)


def test_gap_cnn_has_pooled_features_and_no_spatial_layer():
    model = build_model("small-cnn-gap", num_classes=10, in_channels=1, image_size=28, width=12)
    logits, feats = model(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, 10) and feats.shape == (3, 24) and model.feature_dim == 24
    assert not any(isinstance(m, torch.nn.Linear) for m in model.backbone.modules())
    cfg = get_preset("fmnist-lt100").config_for("ldam-drw-gap", 0)
    assert cfg.model == "small-cnn-gap" and cfg.head == "cosine"


def test_init_head_loads_the_trained_head_for_a_true_wise_ft_merge(tmp_path):
    from mr2.train.weights import load_backbone

    def fresh(seed):
        torch.manual_seed(seed)
        return build_model("small-cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8)

    trained = fresh(0)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    with_head, without = fresh(1), fresh(1)
    load_backbone(with_head, tmp_path / "model.pt", head=True)
    load_backbone(without, tmp_path / "model.pt")
    assert torch.equal(with_head.head.weight, trained.head.weight)
    assert not torch.equal(without.head.weight, trained.head.weight)
    cfg = get_preset("fmnist-finetune-b2").config_for("mr2-wise", 0)
    assert (
        cfg.init_head is True
        and cfg.merge_alpha == 0.6
        and cfg.init_checkpoint == "@fmnist-pretrain/ce/seed2"
    )
    with pytest.raises(ValueError, match=r"^init_head="):
        TrainConfig(init_head=True)
    other = build_model("small-cnn", num_classes=3, in_channels=1, image_size=8, width=4, hidden=8)
    with pytest.raises(ValueError, match=r"^init_checkpoint=.*head does not fit"):
        load_backbone(other, tmp_path / "model.pt", head=True)


@pytest.mark.parametrize("name", ["mr2-oracle-additive", "mr2-official-cifar", "ldam-drw-authors", "ce-gap"])
def test_new_methods_train_on_digits(name, tmp_path):
    from mr2.train import train_run

    torch.set_num_threads(1)
    cfg = get_preset("digits-smoke").config_for(name, 0, epochs=2, max_train_samples=300)
    metrics = train_run(cfg, tmp_path / name, progress=False)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and math.isfinite(metrics["accuracy"])
    assert metrics["loss"] == name and len(metrics["class_oracle_share"]) == 10
    if name == "mr2-oracle-additive":  # the oracle's margins moved away from uniform
        assert metrics["margin_max"] - metrics["margin_min"] > 1e-3
