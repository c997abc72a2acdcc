"""Tiny synthetic results in the formats of docs/CONTRACTS.md, for the smoke tests and layout previews.

Nothing here is a result: the numbers are invented (from a seeded Generator) only to have every column
and file the figures read. Never point a paper figure at them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mr2_core.contracts import (
    FASHION_MNIST_CLASSES,
    LOSS_BENCH_FILE,
    METRICS_FILE,
    MR2_LOSSES,
    SELECTION_RULES,
    SIMS_COLUMNS,
)
from mr2_core.io import write_csv, write_json
from mr2_core.seeding import as_generator
from mr2_core.summaries import class_summary

__all__ = [
    "write_all",
    "write_runs",
    "write_sims",
    "write_rule_scores",
    "write_loss_bench",
    "FASHION_CLASSES",
]

FASHION_CLASSES = FASHION_MNIST_CLASSES
_BASE_ACC = np.array([0.86, 0.97, 0.83, 0.90, 0.84, 0.96, 0.66, 0.95, 0.97, 0.96])


def write_runs(
    study: str | Path,
    *,
    losses=("ce", "mr2"),
    seeds=(0, 1, 2),
    rng: int | np.random.Generator = 0,
    effects: Mapping[str, float] | None = None,
    seed_sd: float = 0.0,
    noise_sd: float = 0.01,
    selections: bool = True,
) -> Path:
    """Write ``study/<loss>/seed<k>/metrics.json`` with the contract's keys; return the study folder.

    Per-class accuracy of a run = base accuracy + the loss's effect + a per-seed deviation shared by
    every loss on that seed (``seed_sd``: what pairing by seed cancels) + the run's own noise
    (``noise_sd``), clipped to [0, 1]. Each run also holds ``selections`` (``SELECTION_RULES``: the
    ``accuracy`` rule's numbers are the top level, the others are the top level plus their own noise)
    and, for MR² losses, ``margin_min``/``margin_max`` of ``theory.optimal_margins`` on its spread.

    Args:
        effects: {loss: shift of every class's accuracy (fraction)}; a loss not listed gets the
            default gain 0.03 x (its position in ``losses``) x (1 - base accuracy).
        seed_sd, noise_sd: standard deviations (fractions) of the shared per-seed and the per-run
            per-class deviations.
        selections: write ``selections`` (False: the older format without them).
    """
    from theory import optimal_margins

    gen = as_generator(rng)
    study = Path(study)
    k = len(FASHION_CLASSES)
    shared = {seed: gen.normal(0, seed_sd, k) if seed_sd > 0 else np.zeros(k) for seed in seeds}
    for li, loss in enumerate(losses):
        shift = effects[loss] if effects is not None and loss in effects else 0.01 * li * (1 - _BASE_ACC) * 3
        for epoch, seed in enumerate(seeds):
            acc = np.clip(_BASE_ACC + shift + shared[seed] + gen.normal(0, noise_sd, k), 0, 1)
            spread = 20.0 * (1.2 - acc) * np.exp(gen.normal(0, 0.1, k))
            within = spread * gen.uniform(0.2, 0.6, k)  # s_k^2; the rest is ||mu_k||^2
            metrics = {
                "accuracy": float(acc.mean()),
                "per_class_accuracy": acc,
                **class_summary(acc),
                "class_spread": spread,
                "class_within_spread": within,
                "class_mean_norm2": spread - within,
                # the centred statistic keeps the spread's ranking; the separation ratio adds noise
                "class_centred_spread": within + 0.5 * (spread - within),
                "class_separation": within / (1.0 + gen.uniform(0.5, 1.5, k)),
                "dataset": "synthetic",
                "class_names": list(FASHION_CLASSES),
                "loss": loss,
                "seed": seed,
                "select_metric": "accuracy",
                "selected_epoch": 5 + epoch % 3,
            }
            if selections:
                metrics["selections"] = {}
                for i, rule in enumerate(SELECTION_RULES):
                    top = rule == "accuracy"  # the top level is this rule's model (select_metric)
                    other = acc if top else np.clip(acc + gen.normal(0, noise_sd, k), 0, 1)
                    epoch = metrics["selected_epoch"] if top else 9 - i
                    metrics["selections"][rule] = _selected(other, epoch=epoch)
            if loss in MR2_LOSSES or loss.startswith("mr2-"):
                # the margins of a statistic that tracks the error (a shuffled one does not)
                stat = np.roll(spread, 3) if "shuffled" in loss else spread
                gamma = optimal_margins(stat)
                metrics.update(margins=gamma, margin_min=float(gamma.min()), margin_max=float(gamma.max()))
            write_json(study / loss / f"seed{seed}" / METRICS_FILE, metrics)
    return study


def _selected(acc: np.ndarray, *, epoch: int) -> dict:
    """One ``selections[rule]`` entry (``SELECTION_KEYS``) for per-class accuracies ``acc``."""
    return {
        "selected_epoch": epoch,
        "accuracy": float(acc.mean()),
        "per_class_accuracy": acc,
        **class_summary(acc),
    }


def _contract_frame(name: str, rows: list[dict]) -> Any:
    """``rows`` as a table with every column of ``SIMS_COLUMNS[name]`` in order (NaN where the
    synthetic data has no value), so the figures read it as they read ``mr2 simulate``'s files."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in SIMS_COLUMNS[name]]
    return frame.reindex(columns=[*SIMS_COLUMNS[name], *extra])


def write_sims(folder: str | Path, *, rng: int | np.random.Generator = 0) -> Path:
    """Write ``margin_vs_variance.csv``, ``bound_vs_gap.csv`` and ``manifest.json`` in ``folder``, with
    every column ``mr2 simulate`` writes (``mr2_core.contracts.SIMS_COLUMNS``; those the figures do not
    read are NaN)."""

    gen = as_generator(rng)
    folder = Path(folder)
    rows = []
    for K, d in ((2, 2), (5, 8)):
        for loss in ("additive", "temperature"):
            for n in (10, 100, 1000):
                for ratio in (0.5, 0.71, 1.0, 1.41, 2.0):
                    a_ref, a_var = 1.0 + d, 1.0 + d * ratio**2  # ||mu||^2 + d sigma^2
                    theory = np.log(a_var / a_ref) / 3.0
                    for crit in ("balanced", "worst_class"):
                        point = theory * (1.5 if crit == "worst_class" else 0.8) + gen.normal(
                            0, 0.3 / np.sqrt(n)
                        )
                        half = 1.0 / np.sqrt(n)
                        rows.append(
                            dict(
                                K=K,
                                loss=loss,
                                d=d,
                                n_per_class=n,
                                sigma_ratio=ratio,
                                criterion=crit,
                                opt_log_margin_ratio=point,
                                ci_low=point - half,
                                ci_high=point + half,
                                theory_log_margin_ratio=theory,
                                at_boundary=bool(n == 10 and ratio == 2.0),
                            )
                        )
    write_csv(folder / "margin_vs_variance.csv", _contract_frame("margin_vs_variance.csv", rows))
    rows = []
    for n in (10, 100, 1000):
        for ratio in (0.5, 2.0):
            for choice in ("uniform", "theory"):
                for k in range(2):
                    term = (1 + k * ratio) / np.sqrt(n)
                    gap = 0.3 * term + gen.normal(0, 0.01)
                    rows.append(
                        dict(
                            K=2,
                            loss="additive",
                            d=2,
                            n_per_class=n,
                            sigma_ratio=ratio,
                            setting=f"s{n}-{ratio}",
                            choice=choice,
                            **{"class": k},
                            margin_term=term,
                            gen_gap=gap,
                            gen_gap_ci_low=gap - 0.02,
                            gen_gap_ci_high=gap + 0.02,
                        )
                    )
    write_csv(folder / "bound_vs_gap.csv", _contract_frame("bound_vs_gap.csv", rows))
    write_json(folder / "manifest.json", {"synthetic": True})
    return folder


def write_rule_scores(folder: str | Path, *, rng: int | np.random.Generator = 0) -> Path:
    """Write ``margin_vs_separation.csv`` and ``rule_scores.csv`` (``sims.scores.rule_scores`` of those
    rows) in ``folder``: two separations, K = 2 and 5, invented optima near the bound's prediction."""
    from sims.scores import rule_scores

    gen = as_generator(rng)
    folder = Path(folder)
    rows = []
    for K, d in ((2, 2), (5, 8)):
        for mu in (0.75, 1.5):
            for loss in ("additive", "temperature"):
                for n in (10, 100):
                    for ratio in (0.5, 1.0, 2.0):
                        bound = np.log((mu**2 + d * ratio**2) / (mu**2 + d)) / 3.0
                        for crit in ("balanced", "worst_class"):
                            point = bound + gen.normal(0, 0.3)
                            rows.append(
                                dict(K=K, loss=loss, d=d, n_per_class=n, mu=mu, sigma_ratio=ratio,
                                     criterion=crit, opt_log_margin_ratio=point, ci_low=point - 0.2,
                                     ci_high=point + 0.2, theory_log_margin_ratio=bound, at_boundary=False,
                                     separation=2 * mu, oracle_log_margin_ratio=np.log(ratio),
                                     ldam_log_margin_ratio=0.0, uniform_log_margin_ratio=0.0)
                            )  # fmt: skip
    frame = _contract_frame("margin_vs_separation.csv", rows)
    write_csv(folder / "margin_vs_separation.csv", frame)
    path = folder / "rule_scores.csv"
    write_csv(path, _contract_frame("rule_scores.csv", rule_scores(frame).to_dict("records")))
    return path


def write_loss_bench(folder: str | Path, *, rng: int | np.random.Generator = 0) -> Path:
    """Write ``loss_bench.csv`` as ``mr2 bench loss`` does (its columns and impl names) in ``folder``."""
    import pandas as pd

    gen = as_generator(rng)
    rows = []
    for K in (10, 100, 1000):
        head = 0.01 * K  # ms of a d -> K linear head, forward and backward
        times = {"vectorised": 2.0 + 0.002 * K, "loop": 20 + 0.18 * K, "ce": 1.0 + 0.001 * K}
        times |= {"vectorised+head": times["vectorised"] + head, "ce+head": times["ce"] + head}
        for impl, ms in times.items():
            ms = ms * np.exp(gen.normal(0, 0.05))
            rows.append(dict(K=K, B=256, d=512, impl=impl, ms_mean=ms, ms_std=0.05 * ms, ms_median=ms))
    frame = pd.DataFrame(rows)
    ms = frame.set_index(["K", "impl"])["ms_mean"]
    loop = ms.xs("loop", level="impl").loc[frame["K"]].to_numpy()
    frame["speedup"] = np.where(frame["impl"].str.endswith("+head"), np.nan, loop / frame["ms_mean"])
    ce = np.where(
        frame["impl"].str.endswith("+head"),
        ms.xs("ce+head", level="impl").loc[frame["K"]],
        ms.xs("ce", level="impl").loc[frame["K"]],
    )
    frame["ratio_to_ce"] = frame["ms_mean"] / ce
    path = Path(folder) / LOSS_BENCH_FILE
    write_csv(path, frame)
    return path


PROBE_LOSSES = ("ce", "mr2", "mr2-centred", "mr2-separation", "mr2-shuffled", "mr2-e12")


def write_all(results: str | Path, *, rng: int = 0) -> Path:
    """Write every input the figures read under ``results`` (sims/, runs/synthetic/, a probe study
    runs/fmnist-probe/, bench/)."""
    results = Path(results)
    write_runs(results / "runs" / "synthetic", rng=rng)
    effects = {"ce": 0.0, "mr2": 0.004, "mr2-centred": 0.002, "mr2-separation": 0.01,
               "mr2-shuffled": -0.004, "mr2-e12": 0.005}  # fmt: skip
    write_runs(results / "runs" / "fmnist-probe", losses=PROBE_LOSSES, seeds=tuple(range(6)), rng=rng + 1,
               effects=effects, seed_sd=0.01)  # fmt: skip
    write_sims(results / "sims", rng=rng)
    write_rule_scores(results / "sims", rng=rng)
    write_loss_bench(results / "bench", rng=rng)
    return results
