"""Shared pytest set-up: headless plotting and a bounded thread count on the 2-core CI machine."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
