"""sims: Gaussian-mixture simulations that test whether the optimal margin grows with class variance.

One concept per module:

* ``sims.config``: typed, validated configs (mixture, learner, search, evaluation, setting);
* ``sims.data``: the seeded Gaussian-mixture generator;
* ``sims.learner``: batched Newton training of linear margin classifiers (additive or temperature form);
* ``sims.evaluate``: exact (K = 2) or Monte Carlo per-class test error, balanced and worst-class criteria;
* ``sims.search``: the margin search of one setting;
* ``sims.sweep``: the resumable, parallel (joblib: loky or dask) sweep with a per-setting cache;
* ``sims.experiments``: the presets and the tidy tables of the three experiments
  (``sims.bound_checks``: experiments 2 and 3; ``sims.tables``: what the tables share);
* ``sims.verdict``: the verdict and the Markdown summary;
* ``sims.simulate``: ``mr2 simulate`` end to end; ``sims.bench``: ``mr2 bench sims``.

See docs/sims.md.
"""
