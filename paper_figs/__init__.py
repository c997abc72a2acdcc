"""paper_figs: one script per figure, each with main(argv); `mr2 figures` runs them all."""
