"""Argument checks shared by the whole project.

Every bad input raises a ``ValueError`` whose message names the argument, the value it got and what
was expected (house style, rule 9). Keep the wording in one place so that messages read alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bad", "as_float_array", "check_positive", "summarise"]


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
