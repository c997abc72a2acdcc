"""app: the application layer on top of the pillars (docs/conventions.md, Layers).

The ``mr2`` command line (``app.cli`` and one module per sub-command in ``app.commands``) and the demo
(``app.demo``). It calls library functions of ``theory``, ``sims``, ``mr2`` and ``paper_figs``;
nothing imports it (``python -m mr2`` reaches it through the entry point ``mr2/__main__.py``).
"""
