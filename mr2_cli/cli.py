"""The ``mr2`` command line: one sub-command per module in ``mr2_cli.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and imports nothing heavy at module level, so that ``mr2 --help`` and ``mr2 derive`` start fast. A
module may set ``INTERRUPTED``, the line shown after Ctrl-C (how to resume).

Errors the user can fix (a ``ValueError``, a file system ``OSError``, a run another process holds)
end in one line ``mr2 COMMAND: error: ...`` and exit status 2 (1 for a busy run), never a traceback.
SIGTERM and SIGHUP are turned into ``KeyboardInterrupt``, so that a killed command runs its clean-up
(worker pools stopped, locks released) as Ctrl-C does; it exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys

from mr2_core.locks import Busy

# order shown in --help: the demo's own order
COMMANDS = ("demo", "derive", "simulate", "train", "report", "figures", "bench")
INTERRUPTED = "interrupted; finished work is saved, run the same command again to resume."


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _catch_termination() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave the default
            signal.signal(sig, _raise_interrupted)


def version() -> str:
    """The installed distribution's version (``mr2-margins``), else the package's ``__version__`` (a
    source checkout on ``PYTHONPATH`` that was never installed)."""
    from importlib import metadata

    try:
        return metadata.version("mr2-margins")
    except metadata.PackageNotFoundError:
        import mr2

        return mr2.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mr2",
        description="Class-sensitive margin theory: derive, simulate, train, report, draw.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"mr2_cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mr2_cli.commands.{name}":
                raise
            continue  # a command not built yet is simply not offered
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _interrupted=getattr(mod, "INTERRUPTED", INTERRUPTED))
    return parser


def _run_command(args: argparse.Namespace) -> int:
    """Run the chosen command; its ``--no-progress`` hides every progress bar it draws, the data-loading
    ones and its worker processes' included (``mr2_core.progress``)."""
    from mr2_core.progress import bars_hidden

    with bars_hidden(bool(getattr(args, "no_progress", False))):
        return int(args._run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _catch_termination()
    try:
        return _run_command(args)
    except ValueError as exc:  # bad input: a clear message, not a traceback
        print(f"mr2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Busy as exc:  # another process is doing this work
        print(f"mr2 {args.command}: error: {exc}; run again once it has finished", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a path that vanished: name it, no traceback
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in str(exc) else ""
        print(f"mr2 {args.command}: error: {exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\nmr2 {args.command}: {args._interrupted}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Interrupted) else 130


if __name__ == "__main__":
    sys.exit(main())
