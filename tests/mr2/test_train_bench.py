"""``mr2 bench train`` on a tiny configuration: the tables, the files, the breakdown's accounting and
the CUDA refusal. (A benchmark: these tests check that it runs and reports, not the figures.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from mr2 import bench_train
from mr2_cli.cli import main as cli_main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_bench_train_writes_its_tables(tmp_path, capsys):
    table = bench_train.run_benchmark(
        tmp_path, models=["small-cnn"], methods=["mr2", "ldam"], reps=2, warmup=0, dataset="digits",
        train_samples=96, batch=32,
    )  # fmt: skip
    assert list(table.columns) == bench_train.CSV_COLUMNS
    assert table["method"].tolist() == ["ce", "mr2", "ldam"]  # CE first: the ratios' denominator
    assert (table["ms_median"] > 0).all() and (table["batch"] == 32).all()
    assert table.loc[table.method == "ce", "ratio_to_ce"].item() == 1.0
    # on a CPU every loss checks its values each step (one read-back); MR2 takes no other
    assert table["syncs_per_step"].tolist() == [1, 1, 1]
    parts = pd.read_csv(tmp_path / bench_train.BREAKDOWN_FILE)
    mr2 = parts[parts.method == "mr2"].set_index("phase")["ms_median"]
    assert set(bench_train.PHASES) <= set(mr2.index)
    assert (mr2[list(bench_train.PHASES)] > 0).all()  # every MR2 phase ran and took time
    assert mr2["syncs per step (GPU config)"] == 0
    ce = parts[parts.method == "ce"].set_index("phase")["ms_median"]
    assert ce["statistics"] == 0 and ce["rep term"] == 0
    tput = pd.read_csv(tmp_path / bench_train.THROUGHPUT_FILE)
    assert tput["method"].tolist() == ["ce", "mr2"] and tput["images"].between(90, 100).all()  # stratified
    assert (tput["images_per_s_epoch"] > 0).all() and (tput["images_per_s_pure"] > 0).all()
    manifest = json.loads((tmp_path / "train_bench.json").read_text())
    assert manifest["threads"] == 1 and manifest["device"] == "cpu"
    assert "git_commit" in manifest["code_version"]
    assert any("MR2 step / CE step" in v for v in manifest["verdicts"])
    out = capsys.readouterr().out
    assert "ratio_to_ce" in out and "target" in out


def test_bench_train_through_the_cli(tmp_path):
    argv = ["bench", "train", "--out", str(tmp_path), "--models", "small-cnn", "--methods", "ce"]
    argv += ["--reps", "1", "--warmup", "0", "--batch", "16", "--no-breakdown", "--throughput", "off"]
    assert cli_main(argv) == 0
    assert pd.read_csv(tmp_path / bench_train.CSV_FILE)["method"].tolist() == ["ce"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_bench_train_cuda_without_a_gpu_fails_clearly(capsys):
    assert cli_main(["bench", "train", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "CUDA" in err


def test_bench_train_bad_arguments():
    with pytest.raises(ValueError, match="^--reps=0"):
        bench_train.main(["--reps", "0"])
    with pytest.raises(ValueError, match="^options="):
        bench_train.run_benchmark("x", nope=1)


def test_train_config_follows_the_presets():
    cfg = bench_train.train_config("resnet18", "mr2-separation", "cuda")
    assert cfg.model == "resnet18" and cfg.batch_size == 512
    assert cfg.loss == "mr2" and cfg.loss_options == {"statistic": "separation"}
    cfg = bench_train.train_config("small-cnn", "ldam", "cpu")
    assert cfg.head == "cosine" and cfg.width == 12 and cfg.batch_size == bench_train.CPU_BATCH
    cfg = bench_train.train_config("small-cnn", "mr2-separation", "cpu")
    assert cfg.loss == "mr2" and cfg.loss_options == {"statistic": "separation"}
