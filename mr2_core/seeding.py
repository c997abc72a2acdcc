"""One seeding helper for Python, NumPy and torch (docs/conventions.md, Randomness).

Library code never reseeds global state on its own: functions that draw take a ``seed`` or a
``np.random.Generator`` / ``torch.Generator``. ``seed_everything`` is for entry points (a training
run, a notebook) that also rely on global generators, such as torch's default one in ``nn.init``.
"""

from __future__ import annotations

import random

import numpy as np

__all__ = ["seed_everything", "as_generator"]


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed ``random``, NumPy's legacy global generator and torch (CPU and all GPUs).

    Args:
        seed: a non-negative integer.
        deterministic: also ask torch for deterministic kernels (slower on GPU).
    """
    import torch

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    random.seed(int(seed))
    # the legacy global generator on purpose: third-party code (and old notebooks) draw from it
    np.random.seed(int(seed) % 2**32)  # noqa: NPY002
    torch.manual_seed(int(seed))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``np.random.Generator`` from a seed, or the Generator itself. ``None`` is refused: draws
    must be reproducible, so the caller names its seed."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer or a numpy Generator")
    return np.random.default_rng(int(seed))
