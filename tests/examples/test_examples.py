"""Every script in examples/ runs, with small settings, and leaves what ``mr2 report`` reads.

Each example exposes ``main(argv) -> int``; it is loaded from its file and run in this process (torch
is imported once), on one torch thread, with a few epochs and seeds: seconds each on an idle machine.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mr2.study import load_study
from mr2_core.contracts import METRICS_KEYS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(root: Path, n_runs: int) -> None:
    """``root`` holds ``n_runs`` runs with the contract's keys, readable by the report, and a report."""
    runs = load_study(root)
    assert len(runs) == n_runs
    for path in runs["path"]:
        assert set(METRICS_KEYS) <= set(json.loads(Path(path).read_text()))
    assert (root / "report" / "report.md").is_file()


def test_every_example_is_tested_and_documented():
    scripts = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    tested = {
        "own_loop_mr2",
        "own_image_folder",
        "torchvision_model",
        "metrics_for_report",
        "train_your_model",
    }
    assert set(scripts) == tested, (
        f"examples without a test, or tests of missing examples: {set(scripts) ^ tested}"
    )
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"{name}.py" in readme for name in scripts)


@pytest.mark.slow
def test_own_loop_mr2(tmp_path, one_torch_thread):
    assert _load("own_loop_mr2").main(["--out", str(tmp_path), "--epochs", "2", "--seeds", "0"]) == 0
    _study(tmp_path / "own-loop", 2)


@pytest.mark.slow
def test_own_image_folder(tmp_path, one_torch_thread):
    pytest.importorskip("PIL")
    example = _load("own_image_folder")
    argv = ["--make-demo", str(tmp_path / "png"), "--per-class", "12", "--out", str(tmp_path / "runs"),
            "--epochs", "1", "--seeds", "0"]  # fmt: skip
    assert example.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "png" / "train").iterdir()) == [f"digit-{k}" for k in range(10)]
    _study(tmp_path / "runs" / "my-images", 2)
    config = json.loads((tmp_path / "runs" / "my-images" / "mr2" / "seed0" / "config.json").read_text())
    assert config["config"]["dataset"] == "folder" and config["data"]["source"] == str(tmp_path / "png")


def test_torchvision_model_without_torchvision_says_so(tmp_path, capsys):
    example = _load("torchvision_model")
    if example.torchvision_problem() is None:
        pytest.skip("torchvision imports here: the training test below covers the example")
    assert example.main(["--out", str(tmp_path)]) == 2
    assert "pip install torchvision" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing trained


@pytest.mark.slow
def test_torchvision_model(tmp_path, one_torch_thread):
    example = _load("torchvision_model")
    problem = example.torchvision_problem()
    if problem is not None:
        pytest.skip(f"torchvision is not usable here ({problem})")
    assert example.main(["--out", str(tmp_path), "--epochs", "1"]) == 0
    _study(tmp_path / "tv-resnet18", 2)


def test_metrics_for_report(tmp_path):
    assert _load("metrics_for_report").main(["--out", str(tmp_path), "--seeds", "3"]) == 0
    _study(tmp_path / "sklearn-digits", 6)
    summary = (tmp_path / "sklearn-digits" / "report" / "report.md").read_text()
    assert "balanced" in summary and "plain" in summary


@pytest.mark.slow
def test_train_your_model(tmp_path, one_torch_thread):
    argv = ["--out", str(tmp_path), "--epochs", "1", "--seeds", "0"]
    assert _load("train_your_model").main(argv) == 0
    _study(tmp_path / "own-model", 2)
    log = (tmp_path / "own-model" / "mr2" / "seed0" / "log.csv").read_text().splitlines()
    assert len(log) == 2  # a header and one epoch
