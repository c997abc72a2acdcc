"""torchrun/DDP on CPU (gloo): two ranks train one run through the real command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_train_torchrun_two_ranks_on_cpu(tmp_path):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", "-m", "mr2", "train", "--preset", "digits-smoke", "--loss", "mr2",
        "--seeds", "0", "--out", str(tmp_path), "--epochs", "1", "--device", "cpu", "--no-progress",
        "--set", "max_train_samples=200", "--threads", "1",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run = tmp_path / "digits-smoke" / "mr2" / "seed0"
    record = json.loads((run / "config.json").read_text())
    assert record["environment"]["world_size"] == WORLD
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["per_class_accuracy"]) == 10 and 0.0 <= metrics["accuracy"] <= 1.0
