"""mr2_cli: the application layer on top of the pillars (docs/conventions.md, Layers).

The ``mr2`` command line (``mr2_cli.cli`` and one module per sub-command in ``mr2_cli.commands``) and the demo
(``mr2_cli.demo``). It calls library functions of ``theory``, ``sims``, ``mr2`` and ``paper_figs``;
nothing imports it (``python -m mr2`` reaches it through the entry point ``mr2/__main__.py``).
"""
