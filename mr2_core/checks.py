"""Argument checks shared by the whole project.

Every bad input raises a ``ValueError`` whose message names the argument, the value it got and what
was expected (docs/conventions.md). Keep the wording in one place so that messages read alike: every
layer above (``theory``, ``sims``, ``mr2``, the figures and the command line) validates through these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "bad",
    "summarise",
    "as_float_array",
    "check_positive",
    "check_real",
    "check_in",
    "check_int",
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


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in [low, high] (open ends when asked), or a ValueError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or x != x or x in (float("inf"), float("-inf")):
        raise bad(name, value, "a finite real number")
    too_low = low is not None and (x <= low if low_open else x < low)
    too_high = high is not None and (x >= high if high_open else x > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = (
            f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        )
        raise bad(name, value, f"a number in {interval}")
    return x


def check_in(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, or a ValueError listing them."""
    if value not in choices:
        raise bad(name, value, f"one of {', '.join(repr(c) for c in choices)}")
    return value


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int >= ``low`` (bools refused), or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise bad(name, value, f"an integer >= {low}")
    return int(value)


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
