"""The demo's steps and its summary (``mr2 demo``). Each step is another pillar's command, run in-process.

Layout of ``OUT`` (the figures read it as their ``--results`` root, docs/CONTRACTS.md)::

    OUT/derive/THEOREM.md     mr2 derive
    OUT/sims/                 mr2 simulate --preset all --quick
    OUT/runs/<study>/         mr2 train (CE and MR2, quick plan; digits when Fashion-MNIST is absent)
    OUT/report/report.md      mr2 report
    OUT/bench/loss_bench.csv  mr2 bench loss (few repetitions)
    OUT/figures/INDEX.md      mr2 figures --quick
    OUT/SUMMARY.md            this module
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Step", "run_demo", "write_summary"]

SIMS_JOBS = 2  # the simulations' workers (mr2 simulate defaults to 1, like every --jobs)
KEY_FIGURES = (1, 2, 3, 4)  # shown in SUMMARY.md in numerical order; the rest are linked through the index


@dataclass
class Step:
    """One step of the demo: the ``mr2`` command it ran, its wall time and outcome."""

    name: str
    argv: list[str]
    outputs: list[str] = field(default_factory=list)  # main files, relative to OUT
    seconds: float = 0.0
    status: str = "not run"  # ok | failed (exit code) | error

    @property
    def command(self) -> str:
        return "mr2 " + shlex.join(self.argv)


def _run(step: Step) -> None:
    from mr2_cli import cli

    print(f"\n[demo] {step.name}: {step.command}", flush=True)
    t0 = time.perf_counter()
    try:
        rc = cli.main(step.argv)
        step.status = "ok" if rc == 0 else f"failed (exit code {rc})"
    except SystemExit as exc:  # argparse: a command missing from this checkout, or bad options
        step.status = f"failed (exit code {exc.code})"
    except Exception as exc:  # noqa: BLE001 - one failed step must not hide the others' results
        traceback.print_exc()
        step.status = f"error: {type(exc).__name__}: {exc}"
    step.seconds = time.perf_counter() - t0
    print(f"[demo] {step.name}: {step.status} in {step.seconds:.0f} s", flush=True)


def plan_steps(out: Path, *, tiny: bool) -> tuple[list[Step], str]:
    """The demo's steps for ``out``, and the training study's folder name."""
    from mr2_cli.commands.train import command_line as train_command
    from paper_figs.data import QUICK_BENCH_ARGS
    from paper_figs.plans import choose_plan

    plan = choose_plan("tiny" if tiny else "quick", notice=lambda m: print(f"[demo] {m}", flush=True))
    study = out / "runs" / plan.study
    steps = [
        Step("derive", ["derive", "--out", str(out / "derive")], ["derive/THEOREM.md"]),
        Step("simulate", ["simulate", "--preset", "all", "--quick", "--jobs", str(SIMS_JOBS), "--out",
                          str(out / "sims")],
             ["sims/summary.md", "sims/margin_vs_variance.csv", "sims/bound_vs_gap.csv"]),
        Step(f"train ({plan.dataset})", train_command(**plan.study_kwargs(out / "runs")),
             [f"runs/{plan.study}"]),
        Step("report", ["report", str(study), "--out", str(out / "report")], ["report/report.md"]),
        Step("bench loss", ["bench", "loss", *QUICK_BENCH_ARGS, "--out", str(out / "bench")],
             ["bench/loss_bench.csv"]),
        Step("figures", ["figures", "--quick", "--results", str(out), "--runs", str(study), "--out",
                         str(out / "figures")], ["figures/INDEX.md"]),
    ]  # fmt: skip
    return steps, plan.dataset


def run_demo(out: str | os.PathLike, *, tiny: bool = False) -> int:
    """Run every step into ``out``, write ``out/SUMMARY.md``; 0 if every step succeeded, else 1."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps, dataset = plan_steps(out, tiny=tiny)
    for step in steps:
        _run(step)
    total = time.perf_counter() - t0
    summary = write_summary(out, steps, dataset=dataset, total_seconds=total, tiny=tiny)
    failed = [s for s in steps if s.status != "ok"]
    print(f"\n[demo] finished in {total:.0f} s ({total / 60:.1f} min)")
    print(f"[demo] figures: {out / 'figures'}  (index: {out / 'figures' / 'INDEX.md'})")
    print(f"[demo] summary: {summary}")
    if failed:
        print("[demo] failed steps: " + ", ".join(f"{s.name} ({s.status})" for s in failed), file=sys.stderr)
    return 1 if failed else 0


# sections of each pillar's Markdown that the summary shows (by heading, in this order); the rest is linked
SECTIONS = {
    "derive/THEOREM.md": ("Theorem", "The rules"),
    "sims/summary.md": ("¶Verdict per regime", "Tally of regimes"),
    "report/report.md": (
        "Verdicts",
        "Accuracy",
        "Paired difference",
        "The bound's spread on real features",
    ),
}


def _demote(markdown: str, levels: int = 2) -> str:
    """Shift Markdown headings down so an embedded file nests under the summary's own headings."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def sections(markdown: str, wanted: tuple[str, ...]) -> str:
    """The sections of ``markdown`` whose heading starts with one of ``wanted`` (each up to the next
    heading of the same or a higher level), in the order of ``wanted``; "" when none is found. An entry
    ``"¶text"`` takes the paragraph that starts with ``text`` instead."""
    lines = markdown.splitlines()
    heads = [
        (i, len(line) - len(line.lstrip("#")), line.lstrip("#").strip())
        for i, line in enumerate(lines)
        if line.startswith("#")
    ]
    out = []
    for want in wanted:
        if want.startswith("¶"):
            paragraphs = markdown.split("\n\n")
            out += [p.strip() for p in paragraphs if p.startswith(want[1:])][:1]
            continue
        for j, (i, level, title) in enumerate(heads):
            if title.startswith(want):
                end = next((k for k, lev, _ in heads[j + 1 :] if lev <= level), len(lines))
                out.append("\n".join(lines[i:end]).strip())
                break
    return "\n\n".join(out)


def write_summary(out: Path, steps: list[Step], *, dataset: str, total_seconds: float, tiny: bool) -> Path:
    """Write ``out/SUMMARY.md``: what ran, how long, the key figures, and the headline sections of each
    pillar's own report, linking the full files."""
    import json

    from mr2_core.io import code_version, write_text

    version = code_version()
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [
        "# MR² demo: summary",
        "",
        f"Made by `mr2 demo --out {out}{' --quick' if tiny else ''}` on {now} in {total_seconds:.0f} s "
        f"({os.cpu_count()} CPU cores), code version `{version['git_commit']}`"
        f"{' (uncommitted changes)' if version.get('git_dirty') else ''}. Training data: {dataset}.",
        "",
        "| step | command | time (s) | status | results |",
        "|---|---|---:|---|---|",
    ]
    for s in steps:
        links = ", ".join(f"[{o}]({o})" for o in s.outputs if (out / o).exists()) or "-"
        lines.append(f"| {s.name} | `{s.command}` | {s.seconds:.0f} | {s.status} | {links} |")
    lines.append("")
    if dataset != "fashion-mnist":
        lines += [f"**Notice:** Fashion-MNIST was not available, so the training step used {dataset}.", ""]

    lines += ["## Key figures", ""]
    index = out / "figures" / "index.json"
    if index.is_file():
        figs = {f["number"]: f for f in json.loads(index.read_text())["figures"]}
        lines += [
            "Every figure with its caption, command and data: [figures/INDEX.md](figures/INDEX.md).",
            "",
        ]
        for n in sorted(KEY_FIGURES):
            f = figs.get(n)
            png = (
                next((p for p in f["outputs"] if p.endswith(".png")), None) if f and not f["error"] else None
            )
            if png is not None:
                rel = os.path.relpath(png, out)
                lines += [f"### Figure {n}: {f['title']}", "", f"![Figure {n}]({rel})", "", f["caption"], ""]
        not_drawn = [n for n, f in figs.items() if f["error"]]
        if not_drawn:
            lines += [f"Not drawn: figures {not_drawn} (reasons in figures/INDEX.md).", ""]
    else:
        lines += ["(The figures step did not finish; see the step table.)", ""]

    titles = {
        "derive/THEOREM.md": "Theory",
        "sims/summary.md": "Simulations: the verdicts",
        "report/report.md": "Training: CE against MR²",
    }
    for rel, wanted in SECTIONS.items():
        path = out / rel
        lines += [f"## {titles[rel]}", ""]
        if not path.is_file():
            lines += [f"(`{rel}` was not written; see the step table.)", ""]
            continue
        text = path.read_text()
        body = sections(text, wanted) or "\n".join(text.splitlines()[:30])
        lines += [f"Excerpt of [{rel}]({rel}):", "", _demote(body, levels=1), ""]
    path = out / "SUMMARY.md"
    write_text(path, "\n".join(lines))
    return path
