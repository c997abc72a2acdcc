"""Draw several figures and write their index (``INDEX.md`` and ``index.json``): ``mr2 figures``' core."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import traceback
from dataclasses import asdict
from pathlib import Path

from paper_figs.common import FigureContext, FigureRecord, render
from paper_figs.registry import figure_module

__all__ = ["build_figures", "write_index", "MAX_LISTED_FILES"]

MAX_LISTED_FILES = 6  # data files listed one by one in the index; beyond that, a pattern and a count


def build_figures(ctx: FigureContext, numbers: list[int], *, verbose: bool = True) -> list[FigureRecord]:
    """Draw each figure in ``numbers``; a figure that fails is recorded with its error, not raised.

    Bad arguments (ValueError from the figure's own checks on its data) are recorded the same way, so
    one missing piece of data never stops the other figures. Returns one record per figure.
    """
    records = []
    for n in numbers:
        mod = figure_module(n)
        if verbose:
            print(f"[figures] figure {n}: {mod.TITLE}", flush=True)
        try:
            rec = render(mod, ctx)
        except Exception as exc:  # noqa: BLE001 - reported in the index and the exit code
            if verbose:
                traceback.print_exc()
            rec = FigureRecord(
                number=n,
                name=mod.NAME,
                title=mod.TITLE,
                caption=mod.CAPTION.strip(),
                command="",
                data_files=[],
                outputs=[],
                error=f"{type(exc).__name__}: {exc}",
            )
        records.append(rec)
        if verbose:
            print(f"[figures]   -> {', '.join(rec.outputs) if rec.outputs else 'FAILED: ' + str(rec.error)}")
    return records


def _rel(path: str | Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


def _data_lines(files: list[str]) -> list[str]:
    if not files:
        return ["none (computed from `theory`)"]
    if len(files) <= MAX_LISTED_FILES:
        return [f"`{f}`" for f in files]
    common = os.path.commonpath(files)
    names = sorted({Path(f).name for f in files})
    return [f"{len(files)} files under `{common}/` ({', '.join(names)})"]


def _earlier_records(out: Path, drawn: set[int]) -> list[FigureRecord]:
    """The figures of ``out/index.json`` that this run did not draw and whose files are still in
    ``out``: redrawing some figures (``--only``) keeps the others in the index."""
    from mr2_core.io import read_json

    try:
        index = read_json(out / "index.json")
        entries = index["figures"]
        made = f"`{index['command']}` on {index['created']}"
    except (OSError, ValueError, KeyError, TypeError):
        return []  # no index yet, or one we cannot read: it is rewritten whole
    kept = []
    for entry in entries:
        try:
            rec = FigureRecord(**entry)
        except TypeError:
            continue
        if rec.number in drawn or rec.error or not rec.outputs:
            continue
        if all((out / Path(o).name).is_file() for o in rec.outputs):
            kept.append(dataclasses.replace(rec, kept_from=rec.kept_from or made))
    return kept


def write_index(records: list[FigureRecord], ctx: FigureContext, *, command: str) -> Path:
    """Write ``ctx.out/INDEX.md`` (caption, command and data per figure) and ``index.json``.

    Figures listed in an earlier ``index.json`` in the same folder that this run did not draw stay
    in the index, marked with the run that drew them, as long as their files are still there.
    """
    from mr2_core.io import code_version, write_json, write_text

    earlier = _earlier_records(ctx.out, {r.number for r in records})
    records = sorted([*records, *earlier], key=lambda r: r.number)
    version = code_version()
    dirty = " (uncommitted changes)" if version.get("git_dirty") else ""
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [
        "# Figures",
        "",
        f"Made by `{command}` on {now}, code version `{version['git_commit']}`{dirty}.",
        f"Cached results read from `{ctx.results}`; missing data made with the "
        f"{'quick' if ctx.quick else 'full'} presets.",
        "",
    ]
    if earlier:
        lines += [
            (
                f"Figure {earlier[0].number} was"
                if len(earlier) == 1
                else "Figures " + ", ".join(str(r.number) for r in earlier) + " were"
            )
            + " not redrawn by this run; each entry says which run drew it.",
            "",
        ]
    failed = [r for r in records if r.error]
    if failed:
        lines += [
            f"**{len(failed)} figure(s) could not be drawn:** "
            + ", ".join(f"figure {r.number}" for r in failed)
            + ".",
            "",
        ]
    for rec in records:
        lines.append(f"## Figure {rec.number}: {rec.title}")
        lines.append("")
        if rec.error:
            lines += [f"**Not drawn.** {rec.error}", "", rec.caption, ""]
            continue
        png = next((p for p in rec.outputs if p.endswith(".png")), None)
        if png:
            lines += [f"![Figure {rec.number}]({_rel(png, ctx.out)})", ""]
        lines += [rec.caption, ""]
        links = ", ".join(f"[{Path(p).suffix[1:].upper()}]({_rel(p, ctx.out)})" for p in rec.outputs)
        lines.append(f"- Files: {links}")
        lines.append(f"- Command: `{rec.command}`")
        data = _data_lines(rec.data_files)
        lines.append(f"- Data: {data[0]}" if len(data) == 1 else "- Data:")
        if len(data) > 1:
            lines += [f"  - {d}" for d in data]
        for cmd in rec.produced:
            lines.append(f"- Made now because it was missing: `{cmd}`")
        if rec.kept_from:
            lines.append(f"- Not redrawn by this run; drawn by {rec.kept_from}")
        lines.append("")
    path = ctx.out / "INDEX.md"
    write_text(path, "\n".join(lines))
    write_json(
        ctx.out / "index.json",
        {
            "command": command,
            "created": now,
            "code_version": version,
            "results": str(ctx.results),
            "quick": ctx.quick,
            "figures": [asdict(r) for r in records],
        },
    )
    return path
