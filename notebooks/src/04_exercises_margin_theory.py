# %% [markdown]
# # Exercises: class-sensitive margin theory
#
# Each exercise has a worked solution below it. Try it first; the solutions use the project's
# packages, so that you can check your own derivation against the one the code relies on. Every
# solution cell carries the tag `solution`: `python notebooks/build_notebooks.py --student OUT` writes
# a student copy of the notebooks without them.
#
# **Setting.** $K$ classes, features $h\in\mathbb R^d$, a linear head with $\|W\|_F\le B$ and a ramp loss
# with margin $\gamma_k$ for class $k$. The vector-contraction bound on the balanced error carries the
# margin term
#
# $$\sqrt{\textstyle\sum_k \pi_k\, a_k / \gamma_k^2},\qquad a_k = \|\mu_k\|^2 + s_k^2 ,$$
#
# and the allocation problem is: minimise $J(\gamma)=\sum_k w_k a_k/\gamma_k^p$ subject to
# $\frac1K\sum_k\gamma_k=\bar c$. Its solution (`theory.optimal_margins`) is
#
# $$\gamma_k = K\bar c\,\frac{(w_k a_k)^{1/(p+1)}}{\sum_j (w_j a_j)^{1/(p+1)}} .$$

# %% tags=["parameters"]
# Parameters: MR2_NB_QUICK=1 (set by the tests) makes every run small.
import os

QUICK = os.environ.get("MR2_NB_QUICK", "0") == "1"
SEED = 0  # seed of every random draw in the exercises
EX5_SEEDS = 4 if QUICK else 20  # Exercise 5: training sets per setting (the unit of the CIs)
EX5_N = 50 if QUICK else 100  # Exercise 5: training points per class
EX5_GRID = 21 if QUICK else 41  # Exercise 5: margin allocations searched (odd: uniform is on the grid)

# %%
import numpy as np
import pandas as pd

from paper_figs import notebook_style

notebook_style.set_theme()  # the paper's theme, fonts and sizes scaled up for a screen or projector
# %matplotlib inline

import sympy as sp
from IPython.display import display

import theory

# %% [markdown]
# ## Exercise 1: predict the margins
#
# Three balanced classes have spreads $a = (1, 8, 27)$ and the mean margin is $\bar c = 1$.
# (a) Predict MR²'s margins ($p = 2$) by hand. (b) Predict them for $p = 1$. (c) Which class gains most
# when $p$ goes from 2 to 1, and why?

# %% [markdown] tags=["solution"]
# ### Solution
#
# (a) $a^{1/3} = (1, 2, 3)$, whose sum is 6, so $\gamma = 3\cdot(1,2,3)/6 = (0.5, 1, 1.5)$.
# (b) $a^{1/2} = (1, 2\sqrt2, 3\sqrt3)$, so $\gamma = 3\,a^{1/2}/\sum_j a_j^{1/2}$.
# (c) A smaller $p$ means a larger exponent $1/(p+1)$, so the margins spread out more: the class with the
# largest spread gains, the smallest loses. The package agrees:

# %% tags=["solution"]
a = np.array([1.0, 8.0, 27.0])
by_hand = {2: np.array([0.5, 1.0, 1.5]), 1: 3 * np.sqrt(a) / np.sqrt(a).sum()}
for p, expected in by_hand.items():
    got = theory.optimal_margins(a, power=p)
    print(f"p = {p}: theory.optimal_margins -> {np.round(got, 4)}, by hand {np.round(expected, 4)}")
    np.testing.assert_allclose(got, expected, rtol=1e-12)

# %% [markdown]
# ## Exercise 2: derive LDAM's $n^{-1/4}$ from the same Lagrangian
#
# LDAM (Cao et al., 2019) bounds the error of class $k$ by a term proportional to
# $1/(\gamma_k\sqrt{n_k})$ and minimises the sum over classes at a fixed margin budget.
# (a) Write this as our allocation problem: which $p$, $w_k$ and $a_k$? (b) Write the Lagrangian for one
# generic class $k$, solve the stationarity condition and eliminate the multiplier with the
# constraint. (c) Conclude $\gamma_k\propto n_k^{-1/4}$.

# %% [markdown] tags=["solution"]
# ### Solution
#
# (a) $\sum_k 1/(\gamma_k\sqrt{n_k})$ is $J$ with $p = 1$, $w_k = 1$ and $a_k = n_k^{-1/2}$.
#
# (b) Work with one generic index instead of $K$ unknowns at once (solving the full system for an
# explicit $K$ is hopeless even at $K = 4$). The terms of the Lagrangian that involve $\gamma_k$ are
# $a_k\gamma_k^{-p} + \lambda\gamma_k$:

# %% tags=["solution"]
g, lam, a_k, p, n_k, cbar, K = sp.symbols("gamma_k lambda a_k p n_k cbar K", positive=True)
L_k = a_k * g**-p + lam * g  # the part of sum_j a_j g_j^-p + lam (sum_j g_j - K cbar) that holds g_k
stationary = sp.Eq(sp.diff(L_k, g), 0)
gamma_k = sp.solve(stationary, g)[0]
display(stationary, sp.Eq(g, gamma_k))

# %% [markdown] tags=["solution"]
# So $\gamma_k = (p\,a_k/\lambda)^{1/(p+1)}$: the multiplier is a common factor of every class. The
# constraint $\sum_j\gamma_j = K\bar c$ fixes it, giving $\gamma_k = K\bar c\,a_k^{1/(p+1)}/\sum_j
# a_j^{1/(p+1)}$. The second derivative $p(p+1)a_k\gamma_k^{-p-2} > 0$, so it is a minimum.
#
# (c) With $p = 1$ and $a_k = n_k^{-1/2}$, $\gamma_k\propto (n_k^{-1/2})^{1/2} = n_k^{-1/4}$:

# %% tags=["solution"]
second = sp.diff(L_k, g, 2)
print("second derivative:", sp.simplify(second), "> 0")
ldam = sp.simplify(gamma_k.subs({p: 1, a_k: n_k**sp.Rational(-1, 2)}))
display(sp.Eq(g, ldam))
print("exponent of n_k:", sp.simplify(sp.diff(sp.log(ldam), n_k) * n_k))

counts = np.array([5000, 2000, 500, 100, 50])
ours = theory.optimal_margins(counts ** -0.5, power=1)
np.testing.assert_allclose(ours / ours.max() * 0.5, theory.ldam_margins(counts, max_margin=0.5), rtol=1e-12)
print("theory.ldam_margins equals the p = 1 rule with a_k = n_k^-1/2, rescaled to max 0.5")

# %% [markdown] tags=["solution"]
# The package's own derivation (`theory.derivation`, the `special_cases` step) reaches the same
# exponent by substituting into its closed form:

# %% tags=["solution"]
from theory.derivation import derivation

step = derivation()["special_cases"]
display(step.results["ldam"])
print("exponents:", step.results["exponents"])

# %% [markdown]
# ## Exercise 3: how much do optimal margins buy?
#
# Two groups of classes, spreads $1$ and $r$. (a) Show that the optimum's objective over the uniform
# one is a ratio of power means, $J(\gamma^\star)/J(\bar c) = M_{1/(p+1)}(a)/M_1(a)$. (b) Why is it at
# most 1? (c) Evaluate it for $r = 8$ and $p = 2$.

# %% [markdown] tags=["solution"]
# ### Solution
#
# (a) Put $\gamma^\star$ into $J$: with $t_k = a_k^{1/(p+1)}$ and $S=\sum_j t_j$,
# $J(\gamma^\star) = \sum_k a_k (S/K\bar c)^p t_k^{-p}/K = (S/K)^{p+1}/\bar c^p$, while
# $J(\bar c) = \frac1K\sum_k a_k/\bar c^p$. Their ratio is $\big(\frac1K\sum_k a_k^{1/(p+1)}\big)^{p+1}
# / \big(\frac1K\sum_k a_k\big) = M_{1/(p+1)}(a)/M_1(a)$.
# (b) The power mean grows with its order (Jensen), and $1/(p+1) < 1$.
# (c) With $a=(1,8)$ and $p=2$: $M_{1/3} = ((1+2)/2)^3 = 3.375$, $M_1 = 4.5$, ratio $0.75$; the margin term
# (its square root) falls by the factor $\sqrt{0.75}\approx 0.866$.

# %% tags=["solution"]
a = np.array([1.0, 8.0])
ratio = theory.power_mean(a, 1 / 3) / theory.power_mean(a, 1.0)
print(f"M_1/3 / M_1 = {ratio:.4f}; margin-term gain sqrt = {np.sqrt(ratio):.4f}")
print(f"theory.gain_over_uniform = {float(theory.gain_over_uniform(a, power=2)):.4f}")
np.testing.assert_allclose(theory.gain_over_uniform(a, power=2), np.sqrt(0.75), rtol=1e-12)

# %% [markdown]
# ## Exercise 4: features that are not centred
#
# $a_k = \|\mu_k\|^2 + s_k^2$ contains the class mean's norm, so the margins depend on where the origin
# of the feature space is. Shift every feature by the same vector $c$. (a) What happens to the margins
# as $\|c\|\to\infty$? (b) Does that make sense for a linear head with a bias?

# %% [markdown] tags=["solution"]
# ### Solution
#
# (a) $a_k(c) = \|\mu_k + c\|^2 + s_k^2 = \|c\|^2 + O(\|c\|)$ for every class, so all $a_k$ become
# alike and the margins tend to uniform: the class-sensitivity is washed out by the offset. (b) A bias
# makes the classifier itself invariant to the shift, but the bound (and MR²'s rule) is not: it measures
# norms from the origin. Centring the features (subtracting the global mean) before computing $a_k$
# removes the dependence. Numerically:

# %% tags=["solution"]
rng = np.random.default_rng(SEED)
K, d = 5, 16
mu = rng.normal(size=(K, d))
s2 = np.array([0.5, 1.0, 2.0, 4.0, 8.0])  # within-class spreads s_k^2
direction = rng.normal(size=d)
direction /= np.linalg.norm(direction)
rows = []
for shift in [0.0, 1.0, 3.0, 10.0, 30.0, 100.0]:
    a = ((mu + shift * direction) ** 2).sum(1) + s2
    gamma = theory.optimal_margins(a)
    rows.append({"||c||": shift, "min margin": gamma.min(), "max margin": gamma.max()})
pd.DataFrame(rows).round(4)

# %% [markdown]
# ## Exercise 5: break the theory by changing the criterion
#
# The bound controls the **balanced error**, a weighted sum of the per-class errors, and its optimal
# margins do not depend on which error you actually care about. Take two Gaussian classes in
# $\mathbb R^2$ with means $\pm\mu e_1$, $\sigma_\text{ref} = 1$ and $\sigma_\text{noisy} = 2$ (variance
# ratio 4), balanced.
#
# (a) Which log-margin ratio $r = \log(\gamma_\text{noisy}/\gamma_\text{ref})$ does the theory predict?
# Use $a_k = \|\mu_k\|^2 + d\,\sigma_k^2$.
# (b) Before running anything: should the allocation that minimises the balanced error also minimise the
# worst-class error?
# (c) Train linear classifiers with every allocation of the margin budget, for both margin forms
# (additive: $z_y - \gamma_y$; temperature: $z/\gamma_y$), and find the best $r$ under each criterion, with a
# CI over training sets. Which pairings of margin form and criterion agree with the theory's direction,
# and which break it?

# %% [markdown] tags=["solution"]
# ### Solution
#
# (a) The spreads are $a = \|\mu\|^2 + 2\sigma^2$ per class, and the rule gives
# $r = \tfrac13\log(a_\text{noisy}/a_\text{ref})$:

# %% tags=["solution"]
from sims.config import LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.experiments import margin_vs_variance
from sims.search import run_setting

mix = MixtureConfig(sigmas=(1.0, 2.0), n_per_class=(EX5_N, EX5_N), d=2)
a = mix.spread()
gamma = theory.optimal_margins(a)
print(f"spreads a = {np.round(a, 3)}; theory's margins {np.round(gamma, 3)}; "
      f"r = log(gamma_noisy / gamma_ref) = {np.log(gamma[1] / gamma[0]):.3f} = log(a ratio) / 3 "
      f"= {np.log(a[1] / a[0]) / 3:.3f}")

# %% [markdown] tags=["solution"]
# (b) Not necessarily. The worst-class error is a maximum, not a sum, and nothing in the bound's
# derivation looks at it. The noisy class is usually the worse one, and pushing the decision boundary
# away from it lowers its error at the expense of the other class, which the balanced error may or may
# not reward.
#
# (c) `sims.search.run_setting` trains one model per (training set, allocation) in one batched program
# and measures exact per-class errors; `margin_vs_variance` turns that into the optimal $r$ per
# criterion with a bootstrap CI:

# %% tags=["solution"]
results = [
    run_setting(Setting(mix, LearnerConfig(loss=loss), SearchConfig(grid_size=EX5_GRID),
                        n_seeds=EX5_SEEDS, base_seed=SEED, tag="exercise5"))
    for loss in ["additive", "temperature"]
]
table = margin_vs_variance(results)
theory_r = table["theory_log_margin_ratio"].iloc[0]


def direction(row):
    if row.ci_low > 0:
        return "agrees: noisier class gets the larger margin"
    if row.ci_high < 0:
        return "BREAKS it: noisier class gets the smaller margin"
    return "undecided: the CI covers 0"


table["verdict"] = table.apply(direction, axis=1)
table[["loss", "criterion", "opt_log_margin_ratio", "ci_low", "ci_high",
       "theory_log_margin_ratio", "verdict"]].round(3)

# %% [markdown] tags=["solution"]
# Read the verdict column. With the full parameters (20 training sets of 100 points per class, seed 0)
# we measured, against the theory's $r = 0.293$: additive form, balanced error $-0.58$ [$-0.78$, $-0.38$];
# additive, worst-class $+0.84$ [$0.40$, $1.10$]; temperature, balanced $+0.61$ [$0.46$, $0.79$];
# temperature, worst-class $-0.26$ [$-0.42$, $-0.05$]. The optimal direction flips with the criterion:
# with additive margins the worst-class error wants the noisier class to get the larger margin while the
# balanced error wants the smaller one, and with temperature margins it is the other way round. (The
# quick parameters of the tests give noisier numbers; the CIs say how far to trust them.)
# So "larger variance, larger margin" is
# not a property of the data alone: it depends on the error you minimise and on how the margin enters
# the loss, and the theory's single rule cannot be right for all four pairings. Even where the direction
# agrees, compare the size of the optimum with `theory_log_margin_ratio`: the bound fixes a rate ($1/3$)
# that the simulations rarely reproduce (`mr2 simulate --preset all` tests this across regimes).
#
# Why the additive form behaves as it does with two classes: subtracting $\gamma_y$ from the target logit
# of a two-class linear model is, at the optimum, the same as shifting its bias. The allocation therefore
# moves the decision threshold along $e_1$, and the balanced and worst-class errors prefer different
# thresholds whenever the classes have different variances.
