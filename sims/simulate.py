"""Run a preset end to end: sweep (resumable), tables, manifest and verdict, all written atomically.

Files in ``out`` (docs/CONTRACTS.md): ``margin_vs_variance.csv``, ``theory_vs_uniform.csv``,
``bound_vs_gap.csv``, ``exponents.csv``, ``verdict.csv``, ``manifest.json``, ``summary.md``, and the
per-setting cache in ``out/cache/``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from mr2_core.io import code_version, write_csv, write_json, write_text
from sims.experiments import (
    N_BOOT,
    PRESETS,
    analyse_margins,
    bound_vs_gap,
    check_preset,
    preset_settings,
    theory_vs_uniform,
)
from sims.sweep import run_sweep
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
    settings = preset_settings(quick=quick)
    sweep = run_sweep(settings, out / "cache", n_jobs=n_jobs, backend=backend, progress=progress)
    t_sweep = time.perf_counter() - t0
    results = sweep.results
    want = PRESETS[:-1] if preset == "all" else (preset,)
    files = []
    mvv = exps = vt = tvu = bvg = None
    if "margin-vs-variance" in want:
        mvv, exps = analyse_margins(results)
        vt = verdict_table(exps, mvv)
        write_csv(out / "margin_vs_variance.csv", mvv)
        write_csv(out / "exponents.csv", exps)
        write_csv(out / "verdict.csv", vt)
        files += ["margin_vs_variance.csv", "exponents.csv", "verdict.csv"]
    if "theory-vs-uniform" in want:
        tvu = theory_vs_uniform(results)
        write_csv(out / "theory_vs_uniform.csv", tvu)
        files.append("theory_vs_uniform.csv")
    if "bound-vs-gap" in want:
        bvg = bound_vs_gap(results)
        write_csv(out / "bound_vs_gap.csv", bvg)
        files.append("bound_vs_gap.csv")
    diag = [r.diagnostics for r in results]
    manifest = {
        "preset": preset,
        "quick": quick,
        "code_version": code_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "n_jobs": n_jobs,
        "backend": backend,
        "cpu_count": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": _load(),
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
        "setting_seconds": {r.setting.key: round(r.diagnostics.get("seconds", 0.0), 3) for r in results},
        "files": files + ["summary.md", "manifest.json"],
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
    text = summary_markdown(vt if vt is not None else _empty(), tvu, bvg, header)
    write_text(out / "summary.md", text + "\n")
    write_json(out / "manifest.json", manifest)
    if echo:
        print(text)
    return manifest


def _empty():
    import pandas as pd

    return pd.DataFrame()
