"""Run a preset end to end: sweep (resumable), tables, manifest and verdict, all written atomically.

Files in ``out``: the tables of ``mr2_core.contracts.SIMS_FILES`` that the preset writes, its
``SIMS_MANIFEST_FILE`` and ``SIMS_SUMMARY_FILE``, and the per-setting cache in ``out/cache/``
(docs/CONTRACTS.md).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from mr2_core.contracts import SIMS_FILES, SIMS_MANIFEST_FILE, SIMS_SUMMARY_FILE
from mr2_core.io import code_version, write_csv, write_json, write_text
from sims.bound_checks import bound_vs_gap, theory_vs_uniform
from sims.experiments import PRESETS, analyse_margins, check_preset, preset_settings
from sims.scores import geometry_scores, rule_scores
from sims.sweep import run_sweep
from sims.tables import N_BOOT
from sims.temperature import regimes_markdown, summarise_regimes, temperature_regimes
from sims.verdict import summary_markdown, verdict_table

__all__ = ["run_preset"]


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def run_preset(
    preset: str,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    n_jobs: int = 1,
    backend: str = "loky",
    progress: bool = True,
    echo: bool = True,
) -> dict[str, Any]:
    """Run ``preset`` (one of ``sims.experiments.PRESETS``) and write its files to ``out``.

    Returns the manifest (also written to ``out/manifest.json``).
    """
    check_preset(preset)
    out = Path(out)
    t0 = time.perf_counter()
    load_start = _load()
    want = PRESETS[:-1] if preset == "all" else (preset,)
    if want == ("temperature-regimes",):
        return _run_regimes(out, quick=quick, echo=echo, t0=t0, load_start=load_start)
    variance = preset_settings(quick=quick)
    # the separation family contains the variance family: one sweep computes each setting once
    family = "separation" if "margin-vs-separation" in want else "variance"
    settings = preset_settings(quick=quick, family=family)
    sweep = run_sweep(settings, out / "cache", n_jobs=n_jobs, backend=backend, progress=progress)
    t_sweep = time.perf_counter() - t0
    by_key = {r.setting.key: r for r in sweep.results}
    results = [by_key[s.key] for s in variance]
    tables: dict = {}
    mvv = exps = vt = tvu = bvg = scores = geo = None
    if "margin-vs-variance" in want:
        mvv, exps = analyse_margins(results)
        vt = verdict_table(exps, mvv)
        tables.update({"margin_vs_variance.csv": mvv, "exponents.csv": exps, "verdict.csv": vt})
    if "margin-vs-separation" in want:
        mvs, _ = analyse_margins(sweep.results)
        scores, geo = rule_scores(mvs), geometry_scores(mvs)
        tables.update({"margin_vs_separation.csv": mvs, "rule_scores.csv": scores})
    if "theory-vs-uniform" in want:
        tvu = theory_vs_uniform(results)
        tables["theory_vs_uniform.csv"] = tvu
    if "bound-vs-gap" in want:
        bvg = bound_vs_gap(results)
        tables["bound_vs_gap.csv"] = bvg
    regimes_text = ""
    if "temperature-regimes" in want:
        regimes, regimes_text = _regimes(quick)
        tables.update(regimes)
    _write_tables(out, tables)
    files = list(tables)
    diag = [r.diagnostics for r in sweep.results]  # every setting of the sweep, both families
    manifest = {
        **_run_record(preset, quick, load_start),
        "n_jobs": n_jobs,
        "backend": backend,
        "seconds_total": None,
        "seconds_sweep": round(t_sweep, 2),
        "settings_computed": len(sweep.computed),
        "settings_reused": len(sweep.reused),
        "models_trained": int(sum(d.get("models", 0) for d in diag)),
        "models_not_converged": int(sum(d.get("not_converged", 0) for d in diag)),
        "max_grad_norm": max((d.get("max_grad_norm", 0.0) for d in diag), default=0.0),
        "n_boot": N_BOOT,
        "seeds": [{"key": s.key, "base_seed": s.base_seed, "n_seeds": s.n_seeds} for s in settings],
        "settings": [s.to_dict() for s in settings],
        "setting_seconds": {
            r.setting.key: round(r.diagnostics.get("seconds", 0.0), 3) for r in sweep.results
        },
        "files": files + [SIMS_SUMMARY_FILE, SIMS_MANIFEST_FILE],
    }
    manifest["seconds_total"] = round(time.perf_counter() - t0, 2)
    version = manifest["code_version"]
    header = {
        "preset": f"{preset}{' (quick)' if quick else ''}",
        "settings": f"{len(settings)} ({len(sweep.computed)} computed now, {len(sweep.reused)} from cache)",
        "models trained": f"{manifest['models_trained']} (not converged: {manifest['models_not_converged']}, "
        f"max |grad| {manifest['max_grad_norm']:.1e})",
        "code": f"{version['git_commit'][:12]} (dirty: {version['git_dirty']})",
        "wall time": f"{manifest['seconds_total']:.0f} s with n_jobs={n_jobs} ({backend}); load average "
        f"{load_start} -> {manifest['load_average_end']}",
    }
    text = summary_markdown(vt if vt is not None else _empty(), tvu, bvg, header, scores=scores, geometry=geo)
    if regimes_text:
        text += "\n\n" + regimes_text
    return _finish(out, text, manifest, echo=echo)


def _run_record(preset: str, quick: bool, load_start: list[float]) -> dict[str, Any]:
    """What every manifest records of the run: preset, code version, machine and load."""
    return {
        "preset": preset,
        "quick": quick,
        "code_version": code_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": _load(),
    }


def _write_tables(out: Path, tables: dict[str, Any]) -> None:
    for name, table in tables.items():
        if name not in SIMS_FILES:
            raise RuntimeError(f"{name} is not in mr2_core.contracts.SIMS_FILES")
        write_csv(out / name, table)


def _finish(out: Path, text: str, manifest: dict[str, Any], *, echo: bool) -> dict[str, Any]:
    """Write the summary and the manifest (atomically), print the summary, return the manifest."""
    write_text(out / SIMS_SUMMARY_FILE, text + "\n")
    write_json(out / SIMS_MANIFEST_FILE, manifest)
    if echo:
        print(text)
    return manifest


def _regimes(quick: bool) -> tuple[dict[str, Any], str]:
    """The temperature-regimes tables (per training set, summary) and their Markdown."""
    table = temperature_regimes(n_per_class=200, n_sets=4) if quick else temperature_regimes()
    summary = summarise_regimes(table)
    return {"temperature_regimes.csv": table, "temperature_regimes_summary.csv": summary}, regimes_markdown(
        summary
    )


def _run_regimes(out: Path, *, quick: bool, echo: bool, t0: float, load_start: list[float]) -> dict[str, Any]:
    """``--preset temperature-regimes`` alone: seconds, no sweep and no cache."""
    tables, text = _regimes(quick)
    _write_tables(out, tables)
    manifest = {
        **_run_record("temperature-regimes", quick, load_start),
        "models_trained": int(tables["temperature_regimes.csv"].shape[0]),
        "seconds_total": round(time.perf_counter() - t0, 2),
        "files": [*tables, SIMS_SUMMARY_FILE, SIMS_MANIFEST_FILE],
    }
    return _finish(out, text, manifest, echo=echo)


def _empty():
    import pandas as pd

    return pd.DataFrame()
