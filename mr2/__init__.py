"""mr2: class-sensitive margins in torch (MR2, ICLR 2026), its baselines, training and reporting.

Heavy pieces (torch) load on first use, so that ``import mr2_core.io`` or ``mr2 derive`` stay fast:
``mr2.MR2Loss`` imports ``mr2.losses`` when first touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "MR2Loss": "mr2.losses",
    "make_loss": "mr2.losses",
    "LOSS_NAMES": "mr2.losses",
    "train_model": "mr2.train",
    "write_run_metrics": "mr2.train",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mr2' has no attribute {name!r}")
