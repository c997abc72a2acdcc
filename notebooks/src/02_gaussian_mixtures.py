# %% [markdown]
# # Gaussian mixtures: when does a larger variance call for a larger margin?
#
# The class-sensitive bound says: give class $k$ a margin $\gamma_k\propto a_k^{1/3}$, so the class with
# the larger spread gets the larger margin. On Gaussian mixtures the truth is known, so we can check:
# train linear classifiers with every margin allocation of a fixed budget, measure each class's
# *exact* test error, and find the allocation that is really best.
#
# "Best" depends on the criterion. The **balanced error** (mean over classes) and the **worst-class
# error** need not agree, and the learner's **margin form** matters: the *additive* form subtracts
# $\gamma_y$ from the target logit (LDAM), the *temperature* form divides the logits by $\gamma_y$ (MR²'s
# official code). Everything below is computed by `sims`; this notebook only sets it up and plots it.

# %% tags=["parameters"]
# Parameters: MR2_NB_QUICK=1 (set by the tests) makes every run small.
import os

QUICK = os.environ.get("MR2_NB_QUICK", "0") == "1"
SIGMA_RATIOS = [0.5, 1.0, 2.0] if QUICK else [0.25, 0.5, 1.0, 2.0, 4.0]  # sigma_varied / sigma_reference
N_PER_CLASS = 50 if QUICK else 100  # training points per class
D = 2  # input dimension
N_SEEDS = 4 if QUICK else 20  # training sets per setting (the unit of the bootstrap CIs)
GRID_SIZE = 21 if QUICK else 41  # log-ratios searched on [-3, 3] (odd: uniform margins are on it)
LOSSES = ["additive", "temperature"]  # margin forms of the learner
SIMS_DIR = "results/sims"  # cached `mr2 simulate` results, read if present

# %%
import matplotlib.pyplot as plt
import numpy as np

from paper_figs import notebook_style, style

notebook_style.set_theme()  # the paper's theme, fonts and sizes scaled up for a screen or projector
# %matplotlib inline

from pathlib import Path

import theory
from sims.config import LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.data import sample
from sims.evaluate import CRITERIA
from sims.search import run_setting

# %% [markdown]
# ## The data
#
# Two classes in $\mathbb R^d$ with means $\pm\mu e_1$ and covariances $\sigma_k^2 I$. The reference class
# has $\sigma = 1$; the other one is noisier (ratio > 1) or tighter (ratio < 1). Here is one draw of the
# noisiest setting, with the spreads $a_k = \|\mu_k\|^2 + \mathrm{tr}\,\Sigma_k$ the theory uses:

# %%
mix = MixtureConfig(sigmas=(1.0, max(SIGMA_RATIOS)), n_per_class=(N_PER_CLASS, N_PER_CLASS), d=D)
X, y = sample(mix, rng=0)
spread = mix.spread()
gamma = theory.optimal_margins(spread)
print("spreads a_k:", np.round(spread, 3), " theory's margins:", np.round(gamma, 3),
      " log ratio:", round(float(np.log(gamma[1] / gamma[0])), 3))
fig, ax = notebook_style.new_axes("single", aspect=0.8)
for k in range(2):
    ax.scatter(X[y == k, 0], X[y == k, 1 % D], s=6, alpha=0.6, label=f"class {k}, sigma = {mix.sigmas[k]:g}")
ax.set(xlabel="$x_1$", ylabel="$x_2$")
ax.legend();


# %% [markdown]
# ## One setting, every allocation
#
# `run_setting` trains one model per (training set, margin allocation) in a single batched program and
# measures the exact per-class errors. Below, the seed-mean criterion against
# $r = \log(\gamma_\text{varied}/\gamma_\text{ref})$; the dot marks the minimum, the dashed line the
# theory's $r$.

# %%
def setting(ratio, loss):
    return Setting(
        MixtureConfig(sigmas=(1.0, ratio), n_per_class=(N_PER_CLASS, N_PER_CLASS), d=D),
        LearnerConfig(loss=loss),
        SearchConfig(grid_size=GRID_SIZE),
        n_seeds=N_SEEDS,
        tag="k2",
    )

ratio = max(SIGMA_RATIOS)
fig, axes = plt.subplots(1, len(LOSSES), figsize=notebook_style.figsize("double", 0.36), layout="constrained")
for ax, loss in zip(np.atleast_1d(axes), LOSSES, strict=True):
    res = run_setting(setting(ratio, loss))
    grid = res.search_mask()
    r = res.log_ratio[grid]
    for crit, color in zip(CRITERIA, style.palette(2), strict=True):
        c = res.mean_criterion(crit)[grid]
        ax.plot(r, c, color=color, label=crit.replace("_", "-"))
        ax.plot(r[np.argmin(c)], c.min(), "o", color=color)
    ax.axvline(res.log_ratio[res.theory_index], color="0.2", ls="--", lw=0.9, label="theory")
    ax.axvline(0.0, color="0.6", lw=0.6)
    ax.set(title=f"{loss} form, variance ratio {ratio**2:g}", xlabel=r"$r = \log(\gamma_v/\gamma_{ref})$",
           ylabel="test error (seed mean)")
    ax.legend()

# %% [markdown]
# ## Across variance ratios
#
# Now every ratio in `SIGMA_RATIOS`, both margin forms. `sims.experiments.margin_vs_variance` turns the
# results into the rows of `margin_vs_variance.csv`: the optimal log-ratio per criterion with a bootstrap
# CI over training sets, beside the theory's. Figure 4 of the paper draws them (`paper_figs`).

# %%
from paper_figs import fig4_margin_vs_variance as fig4
from sims.experiments import margin_vs_variance

results = [run_setting(setting(s, loss)) for loss in LOSSES for s in SIGMA_RATIOS]
table = margin_vs_variance(results)
cols = ["loss", "sigma_ratio", "criterion", "opt_log_margin_ratio", "ci_low", "ci_high",
        "theory_log_margin_ratio", "at_boundary"]
table[cols].round(3)

# %%
fig, axes = plt.subplots(1, 2 * len(LOSSES), figsize=notebook_style.figsize("double", 0.32),
                         layout="constrained", sharey=True)
for i, (loss, crit) in enumerate([(l, c) for l in LOSSES for c in CRITERIA]):
    sub = table[(table["loss"] == loss) & (table["criterion"] == crit)]
    fig4.plot_margin_vs_variance(sub, ax=axes[i], legend=(i == 0))
    axes[i].set_title(f"{loss}, {crit.replace('_', '-')}", loc="left")
    if i:
        axes[i].set_ylabel("")  # the panels share y: one label is enough

# %% [markdown]
# **Reading it.** A point above 0 at a variance ratio above 1 means the noisier class should get the
# larger margin, as the theory says; the theory's *size* is the black line. The cell below counts, per
# margin form and criterion, the ratios whose CI lies strictly on the theory's side of 0, strictly on the
# other side, or covers 0.

# %%
signed = table[np.abs(table["theory_log_margin_ratio"]) > 0].copy()
side = np.sign(signed["theory_log_margin_ratio"])
signed["agrees"] = (signed["ci_low"] * side > 0) & (signed["ci_high"] * side > 0)
signed["opposes"] = (signed["ci_low"] * side < 0) & (signed["ci_high"] * side < 0)
signed.groupby(["loss", "criterion"])[["agrees", "opposes"]].sum()

# %% [markdown]
# ## The full study
#
# `mr2 simulate --preset all` runs the full grid (two dimensions, three sample sizes, K = 2 and K = 5, both
# margin forms) and writes a verdict per regime. If it has been run (`SIMS_DIR`), here is its summary;
# otherwise run it from a shell (about a minute with `--quick`, several minutes without).
#
# Why can the two forms disagree? In the additive form with two classes a margin allocation only shifts
# the bias, so the search is over the threshold. In the temperature form a larger $\gamma_y$ divides
# class $y$'s logits in its own loss, which near the boundary acts like a *smaller* weight on that class.
# `docs/sims.md` works both out.

# %%
from IPython.display import Markdown, display

summary = Path(SIMS_DIR) / "summary.md"
if summary.is_file():
    display(Markdown(summary.read_text()))
else:
    print(f"{summary} not found: run `mr2 simulate --preset all --quick --out {SIMS_DIR}`")
