"""Argument checks shared by the whole project.

Every bad input raises a ``ValueError`` whose message names the argument, the value it got and what
was expected (docs/conventions.md). Keep the wording in one place so that messages read alike: every
layer above (``theory``, ``sims``, ``mr2``, the figures and the command line) validates through these.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np

__all__ = [
    "bad",
    "summarise",
    "as_float_array",
    "check_positive",
    "check_scalar",
    "check_real",
    "check_in",
    "check_int",
    "check_workers",
    "MAX_JOBS",
    "MAX_THREADS",
    "positive_floats",
    "one_line",
]


def summarise(value: Any, max_items: int = 6) -> str:
    """A short, readable rendering of ``value`` for an error message."""
    if hasattr(value, "detach"):  # torch tensor: show shape, dtype and a few entries
        arr = value.detach().cpu().numpy()
        return f"tensor(shape={tuple(arr.shape)}, dtype={value.dtype}, values={summarise(arr)})"
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        body = np.array2string(flat[:max_items], precision=4, separator=", ")
        more = f" ... ({flat.size} entries)" if flat.size > max_items else ""
        return f"{body}{more}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def bad(name: str, value: Any, expected: str) -> ValueError:
    """Build the project's standard ``ValueError``: ``name=value: expected ...``."""
    return ValueError(f"{name}={summarise(value)}: expected {expected}")


def as_float_array(name: str, value: Any, *, ndim: int = 1, nonnegative: bool = False) -> np.ndarray:
    """Convert ``value`` to a finite float64 array of ``ndim`` dimensions, or raise ``bad``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise bad(name, value, f"a {ndim}-D array of real numbers ({exc})") from None
    if arr.ndim != ndim:
        raise bad(name, value, f"a {ndim}-D array, got {arr.ndim}-D with shape {arr.shape}")
    if arr.size == 0:
        raise bad(name, value, "a non-empty array")
    if not np.all(np.isfinite(arr)):
        where = np.flatnonzero(~np.isfinite(arr.ravel()))[:5].tolist()
        raise bad(name, value, f"finite numbers (NaN or inf at flat positions {where})")
    if nonnegative and np.any(arr < 0):
        where = np.flatnonzero(arr.ravel() < 0)[:5].tolist()
        raise bad(name, value, f"non-negative numbers (negative at flat positions {where})")
    return arr


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ``bad``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise bad(name, value, "a real number > 0") from None
    if not np.isfinite(x) or x <= 0:
        raise bad(name, value, "a finite real number > 0")
    return x


_KINDS = {"int": "an integer", "real": "a finite real number", "bool": "true or false"}


def check_scalar(
    value: Any,
    name: str,
    kind: Literal["int", "real", "bool"],
    *,
    low: float | None = None,
    high: float | None = None,
    closed: Literal["both", "left", "right", "neither"] = "both",
) -> Any:
    """``value`` checked once for type and range, in the manner of scikit-learn's ``check_scalar``.

    Args:
        value: the value to check.
        name: the argument's name, as the user wrote it (``"lr"``, ``"--threads"``).
        kind: ``"int"`` (Python or NumPy integers), ``"real"`` (finite integers or floats) or
            ``"bool"``. A bool is never an int or a real here: ``True`` is not 1 thread.
        low, high: the bounds (None: unbounded on that side).
        closed: which bounds belong to the interval (``"left"``: [low, high)).

    Returns:
        ``value`` as an ``int``, ``float`` or ``bool``.

    Raises:
        ValueError: ``name=value: expected an integer in [1, 1024]`` (the type, and the interval
            when the value is of the right type but out of range).
    """
    if kind not in _KINDS:
        raise bad("kind", kind, f"one of {', '.join(map(repr, _KINDS))}")
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise bad(name, value, _KINDS[kind])
        return bool(value)
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    is_real = is_int or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)))
    if not (is_int if kind == "int" else is_real) or (kind == "real" and not np.isfinite(float(value))):
        raise bad(name, value, _KINDS[kind])
    x = int(value) if kind == "int" else float(value)
    low_open, high_open = closed in ("right", "neither"), closed in ("left", "neither")
    too_low = low is not None and (x <= low if low_open else x < low)
    too_high = high is not None and (x >= high if high_open else x > high)
    if too_low or too_high:
        if kind == "int" and high is None and not low_open:
            raise bad(name, value, f"an integer >= {low}")
        what = "an integer" if kind == "int" else "a number"
        raise bad(name, value, f"{what} in {_interval(low, high, low_open, high_open)}")
    return x


def _bound(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else _bound(low)
    hi = "inf" if high is None else _bound(high)
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in [low, high] (open ends when asked), or a ValueError
    (``check_scalar`` with ``kind="real"``)."""
    closed = {(False, False): "both", (False, True): "left", (True, False): "right", (True, True): "neither"}
    return check_scalar(value, name, "real", low=low, high=high, closed=closed[low_open, high_open])


def check_in(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, or a ValueError listing them."""
    if value not in choices:
        raise bad(name, value, f"one of {', '.join(repr(c) for c in choices)}")
    return value


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (bools refused), or a ValueError (``check_scalar``)."""
    return check_scalar(value, name, "int", low=low, high=high)


MAX_JOBS = 256  # processes at once (a study's --jobs)
MAX_THREADS = 1024  # torch threads per process (--threads 100000 crashed torch's thread pool)


def check_workers(jobs: Any, threads: Any, prefix: str = "") -> None:
    """``jobs`` (processes) in [1, MAX_JOBS] and ``threads`` (per process; None: the default) in
    [1, MAX_THREADS]; ``prefix`` is how the caller spells them (``"--"`` on the command line)."""
    check_scalar(jobs, f"{prefix}jobs", "int", low=1, high=MAX_JOBS)
    if threads is not None:
        check_scalar(threads, f"{prefix}threads", "int", low=1, high=MAX_THREADS)


def positive_floats(name: str, values: Any) -> tuple[float, ...]:
    """A non-empty sequence of finite reals > 0 as a tuple of floats, or a ValueError."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise bad(name, values, "a sequence of real numbers > 0") from None
    if not out:
        raise bad(name, values, "a non-empty sequence")
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise bad(name, values, "finite real numbers > 0")
    return out


def one_line(exc: BaseException) -> str:
    """An exception as one short line (its first sentence), for a message that names a file and a fix
    (e.g. a file that torch cannot read, whose own message runs over several lines)."""
    text = " ".join(str(exc).split()).split(". ")[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
