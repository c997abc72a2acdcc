"""Progress bars only on a terminal; a log written to a file reads line by line (docs/conventions.md, Logs).

Every bar of the project comes from :func:`progress_bar`, a ``tqdm`` that is switched off unless

* the caller asks for progress (``progress=True``),
* ``$MR2_NO_PROGRESS`` is unset (or ``0``): the ``--no-progress`` flag of the command line sets it for
  the command's duration (:func:`bars_hidden`), so it reaches every bar, the data-loading ones
  included, and the worker processes a command starts (they inherit the environment), and
* standard error is a terminal (or a Jupyter kernel's stream): a redirected log gets no bar, and so no
  carriage returns.

A disabled bar writes nothing; lines meant to stay in the log (one per epoch, say) go through
:func:`log_line`, which prints them above a live bar without tearing it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["NO_PROGRESS_ENV", "bars_wanted", "progress_bar", "log_line", "bars_hidden"]

NO_PROGRESS_ENV = "MR2_NO_PROGRESS"  # set (to anything but "" or "0") to hide every progress bar


def _interactive(stream: Any) -> bool:
    if type(stream).__module__.startswith("ipykernel"):  # a notebook shows tqdm.auto's widget
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def bars_wanted(progress: bool = True, stream: IO[str] | None = None) -> bool:
    """Whether a bar would be drawn: ``progress`` asked for, not hidden by ``$MR2_NO_PROGRESS``, and
    ``stream`` (default ``sys.stderr``, where tqdm draws) a terminal."""
    if not progress or os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return False
    return _interactive(sys.stderr if stream is None else stream)


def progress_bar(iterable: Iterable[Any] | None = None, *, progress: bool = True, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(iterable, **kwargs)``, disabled unless :func:`bars_wanted` (a disabled bar
    still iterates, and its ``set_postfix``/``update``/``close`` are no-ops)."""
    from tqdm.auto import tqdm

    if "disable" in kwargs:
        raise TypeError("progress_bar: pass progress=, not disable=")
    return tqdm(iterable, disable=not bars_wanted(progress, kwargs.get("file")), **kwargs)


def log_line(message: str, *, file: IO[str] | None = None) -> None:
    """Print one log line (to stdout by default) above any live bar, without tearing it."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=file)


@contextlib.contextmanager
def bars_hidden(hidden: bool = True) -> Iterator[None]:
    """Hide every bar while the block runs (``hidden=False``: change nothing); restores the previous
    ``$MR2_NO_PROGRESS`` afterwards."""
    if not hidden:
        yield
        return
    before = os.environ.get(NO_PROGRESS_ENV)
    os.environ[NO_PROGRESS_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NO_PROGRESS_ENV, None)
        else:
            os.environ[NO_PROGRESS_ENV] = before
