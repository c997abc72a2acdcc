# %% [markdown]
# # The class-sensitive margin bound, derived step by step
#
# Why should a class whose features are spread out get a larger margin, and how much larger? This
# notebook walks through the derivation that `theory.derivation` carries out in SymPy (the same one
# `mr2 derive` prints): every statement below is a SymPy object the package built and checked, not
# typed-in LaTeX. Then it lets you change the class spreads and watch the optimal margins move.
#
# The route: a linear head on features $h$, class-dependent margins $\gamma_k$ and a ramp loss
# (*setting*); the identity $\frac1{n_k}\sum_i\|h_i\|^2=\|\mu_k\|^2+s_k^2$ (*identity*); a Rademacher
# bound whose margin term is $\sqrt{\sum_k w_k a_k/\gamma_k^2}$ (*bound*); the margins that minimise it
# under a fixed budget (*allocation*); MR² and LDAM as special cases; what the optimum gains over uniform
# margins (*gain*); and what happens when the features are not centred. The steps after those question
# the rule: the empirical ramp risk it leaves out, the budget that fixes its exponent, a bound for the
# worst class, per-class bounds, and a bias in the head. The notebook shows every step the library
# returns, however many there are.

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

from paper_figs import notebook_style, style

notebook_style.set_theme()  # the paper's theme, fonts and sizes scaled up for a screen or projector
# %matplotlib inline

from IPython.display import Markdown, display

import theory
from theory.derivation import derivation, numeric

# %% [markdown]
# ## The derivation object
#
# `derivation()` builds every step once per process and runs its checks (symbolic where possible,
# numeric where said so). Each step prints as text, as LaTeX, and renders in Jupyter.

# %%
d = derivation()
print(f"{len(d)} steps, {len(d.checks)} checks, all passed: {d.verified}")
display(Markdown("\n".join(f"- {a}" for a in d.assumptions)))

# %% [markdown]
# ## Every step
#
# The cell below walks the steps in the order the library returns them. Above each step, a line on how
# to read it; a step without such a line is shown as the library renders it.

# %%
READING_GUIDE = {
    "setting": "A ramp loss with margin $\\gamma_y$ is $1/\\gamma_y$-Lipschitz: this is where the margins "
    "enter.",
    "identity": "Proved for general $n$ and $d$ by linearity of finite sums. This is why the bound sees "
    "$a_k$, the second moment about the origin, and not the variance alone.",
    "bound": "Maurer's vector contraction, then Cauchy-Schwarz over the Frobenius ball and Jensen, leave a "
    "margin term that weighs each class's spread by its inverse squared margin.",
    "allocation": "Minimise $J(\\gamma) = \\sum_k x_k/\\gamma_k^p$ with $x_k = w_k a_k$ at a fixed mean "
    "margin. The Lagrangian is solved for one generic index $k$; the multiplier factors out and the "
    "constraint eliminates it. (Solving the system for an explicit $K$ does not finish even for $K = 4$.)",
    "special_cases": "$p = 2$ with balanced classes gives MR²'s exponent $1/3$; $p = 1$ with "
    "$a_k\\propto n_k^{-1/2}$ gives LDAM's $n_k^{-1/4}$. Both are substitutions into the allocation "
    "step's closed form.",
    "gain": "The objective $J$ at the optimum over its value at uniform margins is a ratio of power means, "
    "never above 1. That ratio is the gain in $J$; the bound's margin term is $J^{1/2}$, so the margin "
    "term gains only its square root (`theory.gain_over_uniform` returns the margin term's ratio).",
    "non_centred": "The rule sees $\\|\\mu_k\\|^2 + s_k^2$, so a large common mean norm dilutes the "
    "effect of the spread.",
    "tradeoff": "The allocation keeps only the complexity term. Keeping the empirical ramp risk changes "
    "the answer: for small margins the optimum tends to $\\gamma_k \\propto (a_k/f_k(0))^{1/3}$, but that "
    "limit is reached extremely slowly in $n$ (notebook 05 measures how slowly).",
    "budget": "The exponent $1/3$ comes from fixing the *sum* of the margins; fixing their product gives "
    "$1/2$. The bound alone does not fix it.",
    "worst_class": "Theorem 1 bounds an average over classes; one bound per class and a union bound give "
    "a statement about every class, and the minimax allocation.",
    "per_class": "Averaging the per-class bounds gives a sum of per-class terms, and LDAM's $n^{-1/4}$ "
    "with the spread kept.",
    "bias": "With a bias in the head the bound holds for features shifted by any constant; the best "
    "constant is the weighted centroid of the class means.",
}
for i, step in enumerate(d, 1):
    guide = READING_GUIDE.get(step.key, "")
    head = f"---\n## Step {i} (`{step.key}`)\n\n"
    display(Markdown(head + (f"*How to read it.* {guide}" if guide else "")))
    display(step)

# %% [markdown]
# The allocation step's closed form, the one `theory.optimal_margins` implements:

# %%
gamma_star = d.result("gamma_star")
display(gamma_star)

# %% [markdown]
# ## Move the spreads, watch the margins
#
# `theory.optimal_margins` is the numeric rule that `mr2` and `sims` use. Below, it is set beside the
# SymPy closed form of the allocation step, lambdified (`theory.derivation.numeric`): they must agree
# to rounding.
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

fig, axes = plt.subplots(1, 2, figsize=notebook_style.figsize("double", 0.4), layout="constrained")
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
ratio = float(theory.gain_over_uniform(a))
print(f"margin-term ratio, optimal / uniform (theory.gain_over_uniform): {ratio:.4f}")
print(f"objective J = margin term squared: ratio {ratio**2:.4f} (the power-mean ratio of the gain step)")

# %% [markdown]
# ### One class at a time
#
# Hold every class at spread 1 and move one class's spread over four orders of magnitude. Its margin
# grows as $a^{1/3}$ (for $p = 2$) until it takes most of the budget; the others give way, since the
# mean margin is fixed.

# %%
grid = np.geomspace(0.01, 100.0, 60 if not QUICK else 15)
moved = np.array([theory.optimal_margins(np.r_[s, np.ones(K - 1)], mean_margin=MEAN_MARGIN) for s in grid])
fig, ax = notebook_style.new_axes("single", aspect=0.7)
ax.plot(grid, moved[:, 0], label="the class that moves")
ax.plot(grid, moved[:, 1], label="each other class")
ax.set(xscale="log", xlabel="spread of the moving class", ylabel="margin")
ax.legend();

# %% [markdown]
# ### Interactive: drag the sliders
#
# With `ipywidgets` installed (the `notebooks` extra), each slider redraws the figure: the margins of
# three classes and, beside them, the margin term against uniform margins. Without `ipywidgets`, or
# when the notebook runs headless (`MR2_NB_QUICK=1`: the tests and the docs build), the cell draws the
# figure once for the parameters' values; edit them and re-run.

# %%
def draw(spread_0=1.0, spread_1=4.0, spread_2=16.0, p=2):
    s = np.array([spread_0, spread_1, spread_2])
    g = theory.optimal_margins(s, mean_margin=MEAN_MARGIN, power=p)
    uniform = np.full(len(s), MEAN_MARGIN)
    terms = [float(theory.margin_term(s, uniform)), float(theory.margin_term(s, g))]
    fig, axes = plt.subplots(1, 2, figsize=notebook_style.figsize("double", 0.35), layout="constrained")
    axes[0].bar([f"class {k}\na = {v:.3g}" for k, v in enumerate(s)], g, color=style.palette(3))
    axes[0].axhline(MEAN_MARGIN, color="0.3", lw=1.0, ls=":", label="uniform")
    axes[0].set(ylabel="optimal margin", ylim=(0, len(s) * MEAN_MARGIN), title=f"p = {p}")
    axes[0].legend(loc="upper left")
    axes[1].bar(["uniform", "optimal"], terms, color=["0.6", style.palette(1)[0]])
    axes[1].set(ylabel="margin term", title=f"ratio {terms[1] / terms[0]:.3f}")
    plt.show()


try:
    import ipywidgets as widgets
except ImportError:
    widgets = None

if widgets is not None and not QUICK:

    def slider(v):
        return widgets.FloatLogSlider(value=v, base=10, min=-2, max=2, step=0.05)

    widgets.interact(draw, spread_0=slider(SPREADS[0]), spread_1=slider(SPREADS[1]),
                     spread_2=slider(SPREADS[2]), p=widgets.IntSlider(value=2, min=1, max=4))
else:
    if widgets is None:
        print("ipywidgets is not installed: edit SPREADS in the parameters cell and re-run")
    draw(*SPREADS[:3])
