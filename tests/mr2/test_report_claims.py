"""What a report may claim: intervals inside their metric's range, no equivalence bound from two seeds,
zero variance stated as such, identical tables shown once, headings that name the methods.

Hand-made studies whose numbers are known (``metrics.json`` per the contract).
"""

from __future__ import annotations

import numpy as np
import pytest

from mr2.report import build_report, summary, write_report
from mr2.report_markdown import render_markdown
from mr2.study import load_study
from mr2_core.contracts import SELECTION_KEYS, loss_label
from mr2_core.io import write_json

K = 10


def _metrics(loss, seed, acc, *, spread=None, selections=None):
    acc = np.asarray(acc, dtype=float)
    spread = np.linspace(1, 2, K) if spread is None else np.asarray(spread, dtype=float)
    out = {
        "accuracy": float(acc.mean()), "per_class_accuracy": acc.tolist(), "worst_class": int(acc.argmin()),
        "worst_class_accuracy": float(acc.min()), "bottom10_accuracy": float(np.sort(acc)[0]),
        "top10_accuracy": float(np.sort(acc)[-1]), "class_accuracy_std": float(acc.std()),
        "balanced_accuracy": float(acc.mean()), "class_spread": spread.tolist(),
        "class_within_spread": (spread / 2).tolist(), "class_mean_norm2": (spread / 2).tolist(),
        "dataset": "synthetic", "class_names": [f"c{i}" for i in range(K)], "loss": loss, "seed": seed,
        "select_metric": "accuracy",
    }  # fmt: skip
    if selections is not None:
        out["selections"] = selections
    return out


def _write(root, loss, seed, acc, **kw):
    write_json(root / loss / f"seed{seed}" / "metrics.json", _metrics(loss, seed, acc, **kw))


@pytest.fixture
def two_seeds(tmp_path):
    """Two seeds; a method near the top of the range and one whose rho swings from -1 to +1."""
    root = tmp_path / "two"
    base = np.linspace(0.5, 0.99, K)
    for seed, (jit, sign) in enumerate(((0.0, 1), (0.03, -1))):
        _write(root, "ce", seed, base - jit, spread=np.linspace(1, 2, K)[::sign])
        _write(root, "mr2-oracle-additive", seed, np.clip(base + 0.01 + jit, 0, 1))
    return root


def test_two_seeds_say_so_at_the_top_and_claim_no_equivalence(two_seeds, tmp_path):
    rep = build_report(two_seeds)
    text = render_markdown(rep)
    top = text.split("## ")[0]
    assert "**Too few seeds.**" in top and "fewest: 2" in top
    assert "effects larger than" not in text and "MDE at" not in text
    pairs = rep.table[rep.table["loss"] != "ce"]
    assert pairs["tost_bound"].isna().all() and pairs["mde"].isna().all()
    assert pairs["verdict"].str.contains("too few to bound the effect|improves|worsens|same difference").all()
    assert f"### {loss_label('mr2-oracle-additive')} vs CE" in text  # the heading names the methods
    assert "Does MR² help?" not in text


def test_two_seed_intervals_stay_in_range(two_seeds):
    rep = build_report(two_seeds)
    t = rep.table
    assert ((t["ci_low"] >= 0) & (t["ci_high"] <= 1)).all()
    assert ((t["diff_ci_low"].dropna() >= -1) & (t["diff_ci_high"].dropna() <= 1)).all()
    c = rep.corr.dropna(subset=["ci_low"])
    assert len(c) and ((c["ci_low"] >= -1) & (c["ci_high"] <= 1)).all()
    assert (c["ci_method"] == "t, fisher-z scale").all()
    acc = t[t["metric"] == "accuracy"]
    assert (acc["ci_method"] == "t, logit scale").all()
    assert (t.loc[t["metric"] == "class_accuracy_std", "ci_method"] == "t, log scale").all()


def test_zero_variance_is_stated_never_as_an_equivalence(tmp_path):
    """MR² = CE + 1 point on every class and seed: the differences have SD 0 (up to float rounding)."""
    root = tmp_path / "flat"
    gen = np.random.default_rng(0)
    for seed in range(4):
        ce = np.clip(np.linspace(0.6, 0.95, K) + gen.normal(0, 0.01, K), 0, 0.98)
        _write(root, "ce", seed, ce)
        _write(root, "mr2", seed, ce + 0.01)
    rep = build_report(root)
    row = rep.table.set_index(["loss", "metric"]).loc[("mr2", "accuracy")]
    assert np.isnan(row["p_value"]) and np.isnan(row["tost_bound"]) and np.isnan(row["mde"])
    assert row["verdict"].startswith("all 4 paired seeds give the same difference (+1.00 points)")
    text = render_markdown(rep)
    assert "effects larger than 0.00" not in text
    assert "| 1.00 (all seeds equal: no interval) |" in text


def test_rules_that_select_the_same_models_give_one_table_and_one_test(tmp_path):
    root = tmp_path / "same"
    gen = np.random.default_rng(1)
    for seed in range(3):
        for loss, gain in (("ce", 0.0), ("mr2", 0.01)):
            acc = np.clip(np.linspace(0.6, 0.95, K) + gain + gen.normal(0, 0.01, K), 0, 1)
            entry = _metrics(loss, seed, acc)
            sel = {k: entry[k] for k in SELECTION_KEYS if k != "selected_epoch"}
            other = {**sel, "accuracy": sel["accuracy"] - 0.01 * (seed + 1)}
            selections = {"accuracy": {**sel, "selected_epoch": 9}, "last": {**sel, "selected_epoch": 9},
                          "worst_class_accuracy": {**other, "selected_epoch": 3}}  # fmt: skip
            _write(root, loss, seed, acc, selections=selections)
    table = summary(load_study(root))
    assert table.attrs["rule_groups"] == [["accuracy", "last"], ["worst_class_accuracy"]]
    assert table.attrs["n_tests"] == 2 * 4  # two distinct rules x 4 endpoints, not 3 x 4
    paths = write_report(root, tmp_path / "out")
    text = paths["report"].read_text()
    assert text.count("(the same models: one table)") == 2  # the accuracy and the paired tables
    assert text.count("- **best validation accuracy and last epoch** (3 paired seeds)") == 1
    # K = 10: the bottom-10% is the worst class and is shown once, not as a second identical column
    assert "| bottom-10% classes |" not in text and "| worst class |" in text
    per_run = paths["per_run"].read_text().splitlines()
    assert per_run[0].startswith("selection,loss,seed,accuracy") and len(per_run) == 1 + 3 * 2 * 3


# ------------------------------------------------------------------ runs of different settings
def _config(root, loss, seed, **overrides):
    cfg = {"study": root.name, "method": None, "dataset": "fashion-mnist", "loss": loss,
           "loss_options": {}, "epochs": 1, "lr": 0.05, "seed": seed, "device": "cpu", "data_dir": None,
           "log_every": 20}  # fmt: skip
    cfg.update(overrides)
    data = {"source": f"/data/{cfg['dataset']}", "n_train": 100, "n_val": 10, "n_test": 50,
            "class_names": [f"c{i}" for i in range(K)], "class_counts": [10] * K}  # fmt: skip
    write_json(root / loss / f"seed{seed}" / "config.json", {"config": cfg, "data": data})


@pytest.fixture
def mixed(tmp_path):
    """CE at 3 seeds (epochs 1), 2 more CE seeds added with epochs 2 and lr 0.3, MR² at 3 seeds; the
    device differs between seeds, which changes nothing."""
    root = tmp_path / "mixed"
    gen = np.random.default_rng(3)
    for seed in range(5):
        late = seed >= 3
        acc = np.clip(np.linspace(0.6, 0.95, K) + gen.normal(0, 0.01, K), 0, 1)
        acc = np.clip(acc - (0.3 if late else 0.0), 0, 1)  # the longer runs are far worse: pooling would show
        _write(root, "ce", seed, acc)
        _config(
            root,
            "ce",
            seed,
            device="cuda" if seed % 2 else "cpu",
            **({"epochs": 2, "lr": 0.3} if late else {}),
        )
        if not late:
            _write(root, "mr2", seed, np.clip(acc + 0.01, 0, 1))
            # seed 2 was written before the field channels_last existed: it does not record it
            _config(root, "mr2", seed, **({"channels_last": True} if seed < 2 else {}))
    return root


def test_runs_of_other_settings_are_not_pooled(mixed):
    runs = load_study(mixed)
    assert sorted(set(runs["loss"])) == ["ce", "ce@epochs=2,lr=0.3", "mr2"]
    assert sorted(runs.loc[runs["loss"] == "ce", "seed"]) == [0, 1, 2]  # device cpu/cuda: one setting
    assert sorted(runs.loc[runs["loss"] == "mr2", "seed"]) == [0, 1, 2]  # a field not recorded: no split
    rep = build_report(mixed)
    ce = rep.table.set_index(["loss", "metric"]).loc[("ce", "accuracy")]
    assert ce["n_seeds"] == 3 and ce["point"] > 0.7  # the 0.3-worse runs are not averaged in
    top = render_markdown(rep).split("## ")[0]
    assert (
        "**Warning.** 2 run(s) of ce (seeds [3, 4]) differ from its other 3 in epochs: 1 -> 2, "
        "lr: 0.05 -> 0.3" in top
    )
    assert "reported apart as `ce@epochs=2,lr=0.3`" in top


def test_the_placebos_seed_derived_permutation_is_not_a_setting(tmp_path):
    """The placebo draws its permutation from the run's seed (shuffle_seed = seed): its seeds are one
    method, while a permutation fixed apart from the seed is still a setting of its own."""
    root = tmp_path / "placebo"
    for seed in range(3):
        acc = np.linspace(0.6, 0.95, K)
        _write(root, "ce", seed, acc)
        _config(root, "ce", seed)
        _write(root, "mr2-shuffled", seed, acc)
        options = {"statistic": "shuffled", "shuffle_seed": seed if seed < 2 else 99}
        _config(root, "mr2-shuffled", seed, method="mr2-shuffled", loss_options=options)
    runs = load_study(root)
    assert sorted(runs.loc[runs["loss"] == "mr2-shuffled", "seed"]) == [0, 1]
    assert any(name.startswith("mr2-shuffled@") for name in runs["loss"])  # seed 2's fixed permutation


def test_a_run_of_other_data_is_refused(mixed):
    _write(mixed, "mr2", 7, np.linspace(0.6, 0.95, K))
    _config(mixed, "mr2", 7, dataset="digits")
    with pytest.raises(ValueError, match=r"runs on the same data as the baseline's \(dataset differ\)"):
        load_study(mixed)


def test_runs_without_config_are_flagged(tmp_path):
    root = tmp_path / "bare"
    for seed in range(3):
        _write(root, "ce", seed, np.linspace(0.6, 0.95, K) - 0.01 * seed)
    assert "could not be checked" in load_study(root).attrs["notes"][0]
