"""Checks that keep a newcomer's own data and losses from being silently ignored: ``--data-dir`` with a
dataset that reads no folder is refused, and LDAM without class counts warns (its margins are then
equal) and reports its margins in ``loss.last``."""

from __future__ import annotations

import warnings

import pytest
import torch

from mr2 import data as mdata
from mr2.losses import LDAMLoss, make_loss
from mr2_cli.cli import main as cli_main


def test_data_dir_with_digits_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^data_dir=.*dataset='digits'.*dataset=folder"):
        mdata.load_dataset("digits", data_dir=tmp_path)
    argv = ["train", "--preset", "digits-smoke", "--data-dir", str(tmp_path), "--out", str(tmp_path / "runs")]
    assert cli_main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mr2 train: error: data_dir=") and "--set dataset=folder" in err
    assert len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").rglob("metrics.json"))  # nothing was trained


def test_ldam_without_counts_warns_and_with_counts_does_not():
    with pytest.warns(UserWarning, match="class_counts=None gives all 4 classes the same margin"):
        loss = make_loss("ldam", 4)
    torch.testing.assert_close(loss.margins, torch.full((4,), 0.5, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LDAMLoss(4, class_counts=[40, 20, 10, 5])


def test_ldam_last_holds_its_margins():
    counts = [40, 20, 10, 5]
    loss = LDAMLoss(4, class_counts=counts, max_m=0.5)
    gen = torch.Generator().manual_seed(0)
    logits, feats = torch.randn(8, 4, generator=gen), torch.randn(8, 3, generator=gen)
    loss(logits, feats, torch.arange(8) % 4)
    want = 0.5 * torch.tensor(counts, dtype=torch.float64) ** -0.25 / 5.0**-0.25  # n_k^(-1/4), max 0.5
    torch.testing.assert_close(loss.last["margins"], want)
    assert float(loss.last["margin_max"]) == pytest.approx(0.5)
    assert float(loss.last["margin_min"]) == pytest.approx(float(want.min()))
