"""scripts/device-check.sh: its dry run (every step at tiny size on the CPU) passes and writes the
summary and the archive; bad arguments and a failing step give a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device-check.sh"
STEPS = ("environment", "cuda-tests", "bench-loss", "bench-train", "study", "report")


def _run(*args: str, python: str = sys.executable, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python}
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def test_dry_run_passes_every_step(tmp_path):
    out = tmp_path / "check"
    proc = _run("--dry-run", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    for name in STEPS:
        assert f"step {name}" in summary and f"step {name:12s} ok" in summary, summary
    assert "DRY RUN" in summary and "target" in summary and "report: written" in summary
    assert "host syncs per steady-state step" in summary
    assert (out / "study_epochs.txt").read_text().strip() == "1"
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    assert "bench/train_bench.csv" in names and "report/report.md" in names
    assert any(n.endswith("seed0/metrics.json") for n in names)
    assert not any(n.endswith(("checkpoint.pt", "model.pt")) for n in names)  # ~90 MB each on a GPU run
    assert (out / "device-check.log").stat().st_size > 0


def test_bad_arguments_and_a_failing_step_exit_non_zero(tmp_path):
    proc = _run("--epochs", "0", str(tmp_path / "a"))
    assert proc.returncode == 2 and "--epochs=0" in proc.stderr
    proc = _run("--nope", str(tmp_path / "b"))
    assert proc.returncode == 2 and "unknown option --nope" in proc.stderr
    # an interpreter that fails: the first step fails and nothing else runs
    proc = _run("--dry-run", str(tmp_path / "c"), python="false")
    assert proc.returncode == 1
    assert "environment step failed" in proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_help_names_the_data_copy():
    proc = _run("--help")
    assert proc.returncode == 0
    assert "cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/" in proc.stdout
