"""The ``mr2`` command line: one sub-command per module in ``mr2_cli.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and imports nothing heavy at module level, so that ``mr2 --help`` and ``mr2 derive`` start fast. A
module may set ``INTERRUPTED``, the line shown after Ctrl-C (how to resume).

Errors the user can fix (a ``ValueError``, a file system ``OSError``, a run another process holds)
end in one line ``mr2 COMMAND: error: ...`` and exit status 2 (1 for a busy run), never a traceback.
SIGTERM and SIGHUP are turned into ``KeyboardInterrupt``, so that a killed command runs its clean-up
(worker pools stopped, locks released) as Ctrl-C does; it exits with 128 + the signal number. The
handler also records the signal: Python swallows an exception raised inside a weakref callback or a
``__del__`` (it prints "Exception ignored" and goes on), so a swallowed one is raised again at once
(``sys.unraisablehook``), and a command that still returns normally exits with the signal's status.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import errno
import importlib
import signal
import sys
import threading
import time

from mr2_core.locks import Busy

# order shown in --help: the demo's own order
COMMANDS = ("demo", "derive", "simulate", "train", "report", "figures", "bench")
INTERRUPTED = "interrupted; finished work is saved, run the same command again to resume."


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_RECEIVED: list[int] = []  # the termination signals this process received (main() reads it)
RERAISE_DELAY_S = 0.005  # a swallowed signal is raised again this long after (enough to leave the hook)


def _raise_interrupted(signum: int, frame: object) -> None:
    _RECEIVED.append(signum)
    raise Interrupted(signum)


def _unraisable(hook):  # noqa: ANN001, ANN202
    """``sys.unraisablehook`` that raises a swallowed ``Interrupted`` again, outside the callback that
    swallowed it, instead of printing "Exception ignored"; anything else goes to ``hook``.

    The signal is simulated again from a helper thread a moment later (``_thread.interrupt_main``):
    raised from the hook itself, it would land in the hook and be swallowed there. It only trips the
    handler while ``main`` still runs (``_RECEIVED``); a handler reset to the default ignores it."""

    def handle(unraisable) -> None:  # noqa: ANN001
        if not isinstance(unraisable.exc_value, Interrupted):
            hook(unraisable)
            return
        signum = unraisable.exc_value.signum

        def again() -> None:
            time.sleep(RERAISE_DELAY_S)
            if _RECEIVED:
                _thread.interrupt_main(signum)

        threading.Thread(target=again, daemon=True).start()

    return handle


def _catch_termination() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave the default
            signal.signal(sig, _raise_interrupted)
    if not getattr(sys.unraisablehook, "_mr2", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)
        sys.unraisablehook._mr2 = True


def _os_error(exc: OSError) -> str:
    """An OSError as one line: the path, what went wrong, and what to do."""
    what = exc.strerror or str(exc)
    fix = {
        errno.ENOSPC: "free space on that disk, or pass an --out on another one",
        errno.EDQUOT: "free space within your quota, or pass an --out on another disk",
        errno.EROFS: "the file system is read-only: pass an --out on another one",
        errno.EACCES: "pass an --out this user can write into (or fix the permissions)",
        errno.EPERM: "pass an --out this user can write into (or fix the permissions)",
    }.get(exc.errno, "check that the path exists and can be written, or pass another --out")
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{what}; {fix}"


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
    _RECEIVED.clear()
    try:
        return _finish(_run_command(args))
    except ValueError as exc:  # bad input: a clear message, not a traceback
        print(f"mr2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Busy as exc:  # another process is doing this work
        print(f"mr2 {args.command}: error: {exc}; run again once it has finished", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a path that vanished: name it, no traceback
        print(f"mr2 {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\nmr2 {args.command}: {args._interrupted}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Interrupted) else 130
    finally:
        _RECEIVED.clear()  # no re-raise once main has returned


def _finish(rc: int) -> int:
    """``rc``, unless a termination signal came whose exception was swallowed on the way (and the
    re-raise came too late): then stop with its status all the same."""
    if _RECEIVED:
        raise Interrupted(_RECEIVED[0])
    return rc


if __name__ == "__main__":
    sys.exit(main())
