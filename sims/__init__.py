"""sims: Gaussian-mixture simulations that test whether the optimal margin grows with class variance."""
