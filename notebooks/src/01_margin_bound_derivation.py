# %% [markdown]
# # The class-sensitive margin bound, derived step by step
#
# Why should a class whose features are spread out get a larger margin, and how much larger? This
# notebook walks through the derivation that `theory.derivation` carries out in SymPy: every statement
# below is a SymPy object the package built and checked, not typed-in LaTeX. Then it lets you change the
# class spreads and watch the optimal margins move.
#
# The route: a linear head on features $h$, class-dependent margins $\gamma_k$ and a ramp loss
# (step 1); the identity $\frac1{n_k}\sum_i\|h_i\|^2=\|\mu_k\|^2+s_k^2$ (step 2); a Rademacher bound whose
# margin term is $\sqrt{\sum_k w_k a_k/\gamma_k^2}$ (step 3); the margins that minimise it under a fixed
# budget (step 4); MR² and LDAM as special cases (step 5); what the optimum gains over uniform margins
# (step 6); and what happens when the features are not centred (step 7).

# %% tags=["parameters"]
# Parameters: MR2_NB_QUICK=1 (set by the tests) makes every run small.
import os

QUICK = os.environ.get("MR2_NB_QUICK", "0") == "1"
SPREADS = [1.0, 2.0, 4.0, 8.0, 16.0]  # a_k = ||mu_k||^2 + s_k^2 per class: change them and re-run
MEAN_MARGIN = 1.0  # cbar: the margin budget is sum_k gamma_k = K cbar
POWERS = [1, 2, 3]  # exponents p of the objective sum_k w_k a_k / gamma_k^p (p = 2 is the bound)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from paper_figs import style

style.set_theme()
# %matplotlib inline

from IPython.display import Markdown, display

import theory
from theory.derivation import derivation, numeric

# %% [markdown]
# ## The derivation object
#
# `derivation()` builds the seven steps once per process and runs their checks (symbolic where
# possible, numeric where said so). Each step prints as text, as LaTeX, and renders in Jupyter.

# %%
d = derivation()
print(f"{len(d)} steps, {len(d.checks)} checks, all passed: {d.verified}")
display(Markdown("\n".join(f"- {a}" for a in d.assumptions)))

# %% [markdown]
# ## Step 1: the setting
#
# A ramp loss with margin $\gamma_y$ is $1/\gamma_y$-Lipschitz: this is where the margins enter.

# %%
d["setting"]

# %% [markdown]
# ## Step 2: second moment = squared mean norm + spread
#
# Proved for general $n$ and $d$ by linearity of finite sums. This is why the bound sees $a_k$, the second
# moment about the origin, and not the variance alone.

# %%
d["identity"]

# %% [markdown]
# ## Step 3: the bound
#
# Maurer's vector contraction, then Cauchy-Schwarz over the Frobenius ball and Jensen, leave a margin term
# that weighs each class's spread by its inverse squared margin.

# %%
d["bound"]

# %% [markdown]
# ## Step 4: the allocation
#
# Minimise $\sum_k x_k/\gamma_k^p$ with $x_k = w_k a_k$ at a fixed mean margin. The Lagrangian is solved for
# one generic index $k$; the multiplier factors out and the constraint eliminates it. (Solving the system for
# an explicit $K$ does not finish even for $K = 4$.)

# %%
d["allocation"]

# %%
gamma_star = d.result("gamma_star")
display(gamma_star)

# %% [markdown]
# ## Step 5: MR² and LDAM are the same rule
#
# $p = 2$ with balanced classes gives MR²'s exponent $1/3$; $p = 1$ with $a_k\propto n_k^{-1/2}$ gives LDAM's
# $n_k^{-1/4}$. Both are substitutions into step 4's closed form.

# %%
d["special_cases"]

# %% [markdown]
# ## Step 6: what the optimum gains
#
# The objective at the optimum over its value at uniform margins is a ratio of power means, never above 1.

# %%
d["gain"]

# %% [markdown]
# ## Step 7: features that are not centred
#
# The rule sees $\|\mu_k\|^2 + s_k^2$, so a large common mean norm dilutes the effect of the spread.

# %%
d["non_centred"]

# %% [markdown]
# ## Move the spreads, watch the margins
#
# `theory.optimal_margins` is the numeric rule that `mr2` and `sims` use. Below, it is set beside the
# SymPy closed form of step 4, lambdified (`theory.derivation.numeric`): they must agree to rounding.
# Change `SPREADS`, `MEAN_MARGIN` or `POWERS` in the parameters cell and re-run.

# %%
a = np.asarray(SPREADS, dtype=float)
K = len(a)
rules = numeric()
rows = []
for p in POWERS:
    g = theory.optimal_margins(a, mean_margin=MEAN_MARGIN, power=p)
    g_sympy = rules.margins(a / K, MEAN_MARGIN, p)  # x_k = w_k a_k with uniform weights 1/K
    np.testing.assert_allclose(g, g_sympy, rtol=1e-10)
    for k in range(K):
        rows.append({"p": p, "class": k, "spread a_k": a[k], "margin": g[k]})
margins = pd.DataFrame(rows)
margins.pivot(index="spread a_k", columns="p", values="margin").round(4)

# %%
import seaborn as sns

from paper_figs import fig3_theory_margins as fig3

fig, axes = plt.subplots(1, 2, figsize=style.figsize("double", 0.4), layout="constrained")
sns.barplot(data=margins, x="class", y="margin", hue="p", palette=style.palette(len(POWERS)), ax=axes[0])
axes[0].axhline(MEAN_MARGIN, color="0.3", lw=0.8, ls=":")
axes[0].set_title("optimal margins per class", loc="left")
fig3.plot_margins_vs_spread(a, powers=tuple(POWERS), ax=axes[1]);

# %% [markdown]
# How much does the bound gain? The margin term $\sqrt{\sum_k w_k a_k/\gamma_k^2}$ at the optimum
# against uniform margins with the same budget:

# %%
uniform = np.full(K, MEAN_MARGIN)
best = theory.optimal_margins(a, mean_margin=MEAN_MARGIN)
print(f"margin term, uniform margins: {float(theory.margin_term(a, uniform)):.4f}")
print(f"margin term, optimal margins: {float(theory.margin_term(a, best)):.4f}")
print(f"ratio (theory.gain_over_uniform): {float(theory.gain_over_uniform(a)):.4f}")

# %% [markdown]
# ### One class at a time
#
# Hold every class at spread 1 and move one class's spread over four orders of magnitude. Its margin
# grows as $a^{1/3}$ (for $p = 2$) until it takes most of the budget; the others give way, since the
# mean margin is fixed.

# %%
grid = np.geomspace(0.01, 100.0, 60 if not QUICK else 15)
moved = np.array([theory.optimal_margins(np.r_[s, np.ones(K - 1)], mean_margin=MEAN_MARGIN) for s in grid])
fig, ax = style.new_axes(None, width="single", aspect=0.7)
ax.plot(grid, moved[:, 0], label="the class that moves")
ax.plot(grid, moved[:, 1], label="each other class")
ax.set(xscale="log", xlabel="spread of the moving class", ylabel="margin")
ax.legend();

# %% [markdown]
# ### Interactive (optional)
#
# With `ipywidgets` installed (the `notebooks` extra), drag the sliders. Without it, edit the
# parameters cell instead.

# %%
try:
    import ipywidgets as widgets
except ImportError:
    widgets = None
    print("ipywidgets is not installed: edit SPREADS in the parameters cell instead")

def show(spread_0=1.0, spread_1=4.0, spread_2=16.0, p=2):
    s = np.array([spread_0, spread_1, spread_2])
    g = theory.optimal_margins(s, mean_margin=MEAN_MARGIN, power=p)
    gain = float(theory.gain_over_uniform(s, power=p))
    print("margins:", np.round(g, 3), " gain over uniform:", round(gain, 4))

if widgets is not None:

    def slider(v):
        return widgets.FloatLogSlider(value=v, base=10, min=-2, max=2, step=0.05)

    widgets.interact(show, spread_0=slider(1.0), spread_1=slider(4.0), spread_2=slider(16.0),
                     p=widgets.IntSlider(value=2, min=1, max=4))
else:
    show()
