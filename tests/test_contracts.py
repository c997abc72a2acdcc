"""Every producer's output carries the names of ``mr2_core.contracts``, the one home of the interfaces
between the pillars: the sims tables, a training run's files and metrics.json keys, the loss
benchmark's CSV, the report's summary, and the synthetic stand-ins the figure tests draw from."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import sims.experiments as ex
from mr2 import bench_loss
from mr2.losses import LOSS_NAMES, make_loss
from mr2.report import summary
from mr2.study import load_study
from mr2.train import get_preset, train_run
from mr2_core import contracts as C
from paper_figs import synthetic
from sims.simulate import run_preset

TINY_SIMS = ex.PresetSpec(
    sigma_ratios=(0.5, 2.0), n_per_class=(8,), dims=(1,), losses=("additive",), seeds_k2=2, grid_size=5,
    multi_sigmas=(0.5, 1.0, 2.0), multi_dims=(2,), multi_n=(8,), seeds_multi=2, beta_grid=3,
    refine_rounds=1,
)  # fmt: skip


def _prefix(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return list(frame.columns[: len(columns)])


def test_sims_writes_the_contract_files_and_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "QUICK", TINY_SIMS)
    monkeypatch.setattr(ex, "N_BOOT", 100)
    run_preset("all", tmp_path, quick=True, n_jobs=1, backend="sequential", progress=False, echo=False)
    assert set(C.SIMS_FILES) <= set(C.SIMS_COLUMNS)
    for name, columns in C.SIMS_COLUMNS.items():
        assert _prefix(pd.read_csv(tmp_path / name), columns) == list(columns), name
    assert tuple(ex.PRESETS) == C.SIMS_PRESETS


def test_a_training_run_writes_the_contract_files_and_keys(tmp_path):
    torch.set_num_threads(1)
    cfg = get_preset("digits-smoke").config_for("mr2", 0, epochs=1, max_train_samples=200)
    metrics = train_run(cfg, tmp_path / "run", progress=False)
    assert {p.name for p in (tmp_path / "run").iterdir()} >= set(C.RUN_FILES)
    on_disk = json.loads((tmp_path / "run" / C.METRICS_FILE).read_text())
    assert set(C.METRICS_KEYS) <= set(on_disk) and on_disk["accuracy"] == metrics["accuracy"]
    assert set(on_disk["selections"]) == set(C.SELECTION_RULES)
    for entry in on_disk["selections"].values():
        assert set(C.SELECTION_KEYS) <= set(entry)
    assert {"margin_min", "margin_max"} <= set(on_disk)  # optional keys an MR2 run writes


def test_every_contract_loss_can_be_built_and_labelled():
    assert tuple(LOSS_NAMES) == C.LOSSES
    for name in C.LOSSES:
        make_loss(name, 3)
        assert C.loss_label(name) and name in C.LOSS_COLOR_INDEX
    assert len(set(C.LOSS_COLOR_INDEX.values())) == len(C.LOSS_COLOR_INDEX)  # no two losses share a colour


def test_the_loss_benchmark_writes_the_contract_columns(tmp_path):
    bench_loss.run_benchmark(tmp_path, ks=[3], batch=8, dim=4, reps=1, warmup=0)
    frame = pd.read_csv(tmp_path / C.LOSS_BENCH_FILE)
    assert list(frame.columns) == list(C.LOSS_BENCH_COLUMNS)


def test_the_report_and_the_synthetic_stand_ins_carry_the_contract(tmp_path):
    study = synthetic.write_runs(tmp_path / "runs" / "s", losses=("ce", "mr2"), seeds=(0, 1, 2))
    runs = load_study(study)
    table = summary(runs)
    assert set(C.REPORT_SUMMARY_COLUMNS) - {"study"} <= set(table.columns)
    assert set(table["metric"]) == set(C.SUMMARY_METRICS)
    sims = synthetic.write_sims(tmp_path / "sims")
    for name in ("margin_vs_variance.csv", "bound_vs_gap.csv"):
        assert _prefix(pd.read_csv(sims / name), C.SIMS_COLUMNS[name]) == list(C.SIMS_COLUMNS[name])
    bench = pd.read_csv(synthetic.write_loss_bench(tmp_path / "bench"))
    assert set(C.LOSS_BENCH_COLUMNS) <= set(bench.columns)


@pytest.mark.parametrize("name", C.LOSSES)
def test_loss_labels_and_metric_labels_are_complete(name):
    assert name in C.LOSS_LABELS
    assert set(C.METRIC_LABELS) == set(C.SUMMARY_METRICS) == set(C.HIGHER_IS_BETTER)
