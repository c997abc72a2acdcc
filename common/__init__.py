"""common: the bottom layer every other package builds on (docs/conventions.md, Layers).

* ``common.checks``: argument validation; every bad input becomes a ``ValueError`` that names the
  argument, the value and what was expected;
* ``common.io``: atomic writes of results and checkpoints, the code version (git hash);
* ``common.seeding``: one seeding helper for Python, NumPy and torch, and explicit Generators;
* ``common.stats``: confidence intervals and paired comparisons over seeds;
* ``common.summaries``: per-class summaries (worst class, bottom/top tenth, spread);
* ``common.locks``: one writer per run folder or sims setting (``flock`` lock files);
* ``common.contracts``: the names, files and columns that cross pillars.

It imports nothing of the project and nothing heavy at import time.
"""
