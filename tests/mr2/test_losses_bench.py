"""``mr2 bench loss`` on a tiny configuration: the table, the CSV columns, the CUDA refusal."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mr2 import bench_loss
from mr2_cli.cli import main as cli_main
from mr2_core.contracts import LOSS_BENCH_COLUMNS


def test_bench_writes_the_contract_csv(tmp_path, capsys):
    argv = [
        "--out",
        str(tmp_path),
        "--ks",
        "3",
        "20",
        "--batch",
        "16",
        "--dim",
        "8",
        "--reps",
        "2",
        "--warmup",
        "1",
    ]
    assert bench_loss.main(argv) == 0
    table = pd.read_csv(tmp_path / "loss_bench.csv")
    assert list(table.columns) == list(LOSS_BENCH_COLUMNS)
    assert set(table["impl"]) == {"vectorised", "loop", "ce", "vectorised+head", "ce+head"}
    assert sorted(set(table["K"])) == [3, 20] and (table["B"] == 16).all() and (table["d"] == 8).all()
    assert (table["ms_mean"] > 0).all()
    loop = table[table.impl == "loop"]
    assert (loop["speedup"] == 1.0).all()
    assert (tmp_path / "loss_bench.json").exists()
    out = capsys.readouterr().out
    assert "vectorised" in out and "speedup" in out


def test_bench_through_the_cli(tmp_path):
    argv = ["bench", "loss", "--out", str(tmp_path), "--ks", "4", "--batch", "8", "--dim", "4", "--reps", "1"]
    assert cli_main(argv) == 0
    assert (tmp_path / "loss_bench.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_fails_clearly(capsys):
    assert cli_main(["bench", "loss", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "CUDA" in err


def test_train_step_benchmark_runs_on_cpu():
    """The ResNet-18 step code path, tiny and on CPU (the GPU run uses the same function)."""
    args = bench_loss.build_parser().parse_args(
        ["--batch", "4", "--image-size", "32", "--num-classes", "5", "--reps", "1", "--warmup", "0"]
    )
    rows = bench_loss.bench_train_step(args, "cpu")
    assert [r["impl"] for r in rows] == ["resnet18-mr2", "resnet18-ce"]
    assert all(r["ms_mean"] > 0 for r in rows)


def test_bad_arguments():
    with pytest.raises(ValueError, match="^--batch="):
        bench_loss.main(["--batch", "0"])
    with pytest.raises(ValueError, match="^--ks="):
        bench_loss.main(["--ks", "1"])
