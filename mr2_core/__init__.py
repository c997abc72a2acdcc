"""mr2_core: the bottom layer every other package builds on (docs/conventions.md, Layers).

* ``mr2_core.checks``: argument validation; every bad input becomes a ``ValueError`` that names the
  argument, the value and what was expected;
* ``mr2_core.io``: atomic writes of results and checkpoints, the code version (git hash);
* ``mr2_core.seeding``: one seeding helper for Python, NumPy and torch, and explicit Generators;
* ``mr2_core.stats``: confidence intervals and paired comparisons over seeds (the intervals, which
  respect each metric's range, live in ``mr2_core.intervals``);
* ``mr2_core.summaries``: per-class summaries (worst class, bottom/top tenth, spread);
* ``mr2_core.locks``: one writer per run folder or sims setting (``flock`` lock files);
* ``mr2_core.contracts``: the names, files and columns that cross pillars.

It imports nothing of the project and nothing heavy at import time.
"""
