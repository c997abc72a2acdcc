"""The ``mr2`` command line: one sub-command per module in ``app.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and imports nothing heavy at module level, so that ``mr2 --help`` and ``mr2 derive`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# order shown in --help: the demo's own order
COMMANDS = ("demo", "derive", "simulate", "train", "report", "figures", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mr2",
        description="Class-sensitive margin theory: derive, simulate, train, report, draw.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"app.commands.{name}":
                raise
            continue  # a command not built yet is simply not offered
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ValueError as exc:  # bad input: a clear message, not a traceback
        print(f"mr2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nmr2 {args.command}: interrupted; finished work is saved, run again to resume.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
