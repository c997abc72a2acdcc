"""Write the teaching notebooks (``notebooks/*.ipynb``) from the cell sources below, without outputs.

Edit this file, not the ``.ipynb`` files, then run ``python notebooks/build_notebooks.py``. The
notebooks hold no core logic: every computation is a call into ``theory``, ``sims``, ``mr2`` or
``paper_figs``. Each has a ``parameters`` cell; ``MR2_NB_QUICK=1`` makes it small enough for the
tests (``tests/notebooks/test_notebooks_run.py`` runs each headless with nbclient).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}

PARAMS_HEADER = '''# Parameters: MR2_NB_QUICK=1 (set by the tests) makes every run small.
import os

QUICK = os.environ.get("MR2_NB_QUICK", "0") == "1"
'''

SETUP = '''import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from paper_figs import style

style.set_theme()
%matplotlib inline
'''


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, *, tags: tuple[str, ...] = ()):
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(text: str):
    return code(PARAMS_HEADER + text.strip("\n"), tags=("parameters",))


def notebook(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.from_dict(dict(c)) for c in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding an unchanged notebook changes no byte
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ------------------------------------------------------------------------------------------------
# 1. The margin bound, derived step by step
# ------------------------------------------------------------------------------------------------
NB1 = [
    md(r"""
# The class-sensitive margin bound, derived step by step

Why should a class whose features are spread out get a larger margin, and how much larger? This
notebook walks through the derivation that `theory.derivation` carries out in SymPy: every statement
below is a SymPy object the package built and checked, not typed-in LaTeX. Then it lets you change the
class spreads and watch the optimal margins move.

The route: a linear head on features $h$, class-dependent margins $\gamma_k$ and a ramp loss
(step 1); the identity $\frac1{n_k}\sum_i\|h_i\|^2=\|\mu_k\|^2+s_k^2$ (step 2); a Rademacher bound whose
margin term is $\sqrt{\sum_k w_k a_k/\gamma_k^2}$ (step 3); the margins that minimise it under a fixed
budget (step 4); MR² and LDAM as special cases (step 5); what the optimum gains over uniform margins
(step 6); and what happens when the features are not centred (step 7).
"""),
    params(r'''
SPREADS = [1.0, 2.0, 4.0, 8.0, 16.0]  # a_k = ||mu_k||^2 + s_k^2 per class: change them and re-run
MEAN_MARGIN = 1.0  # cbar: the margin budget is sum_k gamma_k = K cbar
POWERS = [1, 2, 3]  # exponents p of the objective sum_k w_k a_k / gamma_k^p (p = 2 is the bound)
'''),
    code(SETUP + r'''
from IPython.display import Markdown, display

import theory
from theory.derivation import derivation, numeric
'''),
    md(r"""
## The derivation object

`derivation()` builds the seven steps once per process and runs their checks (symbolic where
possible, numeric where said so). Each step prints as text, as LaTeX, and renders in Jupyter.
"""),
    code(r'''
d = derivation()
print(f"{len(d)} steps, {len(d.checks)} checks, all passed: {d.verified}")
display(Markdown("\n".join(f"- {a}" for a in d.assumptions)))
'''),
    md(r"""
## Step 1: the setting

A ramp loss with margin $\gamma_y$ is $1/\gamma_y$-Lipschitz: this is where the margins enter.
"""),
    code('d["setting"]'),
    md(r"""
## Step 2: second moment = squared mean norm + spread

Proved for general $n$ and $d$ by linearity of finite sums. This is why the bound sees $a_k$, the second moment about the origin, and not the variance alone.
"""),
    code('d["identity"]'),
    md(r"""
## Step 3: the bound

Maurer's vector contraction, then Cauchy-Schwarz over the Frobenius ball and Jensen, leave a margin term that weighs each class's spread by its inverse squared margin.
"""),
    code('d["bound"]'),
    md(r"""
## Step 4: the allocation

Minimise $\sum_k x_k/\gamma_k^p$ with $x_k = w_k a_k$ at a fixed mean margin. The Lagrangian is solved for one generic index $k$; the multiplier factors out and the constraint eliminates it. (Solving the system for an explicit $K$ does not finish even for $K = 4$.)
"""),
    code('d["allocation"]'),
    code(r'''
gamma_star = d.result("gamma_star")
display(gamma_star)
'''),
    md(r"""
## Step 5: MR² and LDAM are the same rule

$p = 2$ with balanced classes gives MR²'s exponent $1/3$; $p = 1$ with $a_k\propto n_k^{-1/2}$ gives LDAM's $n_k^{-1/4}$. Both are substitutions into step 4's closed form.
"""),
    code('d["special_cases"]'),
    md(r"""
## Step 6: what the optimum gains

The objective at the optimum over its value at uniform margins is a ratio of power means, never above 1.
"""),
    code('d["gain"]'),
    md(r"""
## Step 7: features that are not centred

The rule sees $\|\mu_k\|^2 + s_k^2$, so a large common mean norm dilutes the effect of the spread.
"""),
    code('d["non_centred"]'),
    md(r"""
## Move the spreads, watch the margins

`theory.optimal_margins` is the numeric rule that `mr2` and `sims` use. Below, it is set beside the
SymPy closed form of step 4, lambdified (`theory.derivation.numeric`): they must agree to rounding.
Change `SPREADS`, `MEAN_MARGIN` or `POWERS` in the parameters cell and re-run.
"""),
    code(r'''
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
'''),
    code(r'''
import seaborn as sns

from paper_figs import fig3_theory_margins as fig3

fig, axes = plt.subplots(1, 2, figsize=style.figsize("double", 0.4), layout="constrained")
sns.barplot(data=margins, x="class", y="margin", hue="p", palette=style.palette(len(POWERS)), ax=axes[0])
axes[0].axhline(MEAN_MARGIN, color="0.3", lw=0.8, ls=":")
axes[0].set_title("optimal margins per class", loc="left")
fig3.plot_margins_vs_spread(a, powers=tuple(POWERS), ax=axes[1]);
'''),
    md(r"""
How much does the bound gain? The margin term $\sqrt{\sum_k w_k a_k/\gamma_k^2}$ at the optimum
against uniform margins with the same budget:
"""),
    code(r'''
uniform = np.full(K, MEAN_MARGIN)
best = theory.optimal_margins(a, mean_margin=MEAN_MARGIN)
print(f"margin term, uniform margins: {float(theory.margin_term(a, uniform)):.4f}")
print(f"margin term, optimal margins: {float(theory.margin_term(a, best)):.4f}")
print(f"ratio (theory.gain_over_uniform): {float(theory.gain_over_uniform(a)):.4f}")
'''),
    md(r"""
### One class at a time

Hold every class at spread 1 and move one class's spread over four orders of magnitude. Its margin
grows as $a^{1/3}$ (for $p = 2$) until it takes most of the budget; the others give way, since the
mean margin is fixed.
"""),
    code(r'''
grid = np.geomspace(0.01, 100.0, 60 if not QUICK else 15)
moved = np.array([theory.optimal_margins(np.r_[s, np.ones(K - 1)], mean_margin=MEAN_MARGIN) for s in grid])
fig, ax = style.new_axes(None, width="single", aspect=0.7)
ax.plot(grid, moved[:, 0], label="the class that moves")
ax.plot(grid, moved[:, 1], label="each other class")
ax.set(xscale="log", xlabel="spread of the moving class", ylabel="margin")
ax.legend();
'''),
    md(r"""
### Interactive (optional)

With `ipywidgets` installed (the `notebooks` extra), drag the sliders. Without it, edit the
parameters cell instead.
"""),
    code(r'''
try:
    import ipywidgets as widgets
except ImportError:
    widgets = None
    print("ipywidgets is not installed: edit SPREADS in the parameters cell instead")

def show(spread_0=1.0, spread_1=4.0, spread_2=16.0, p=2):
    s = np.array([spread_0, spread_1, spread_2])
    g = theory.optimal_margins(s, mean_margin=MEAN_MARGIN, power=p)
    print("margins:", np.round(g, 3), " gain over uniform:", round(float(theory.gain_over_uniform(s, power=p)), 4))

if widgets is not None:
    slider = lambda v: widgets.FloatLogSlider(value=v, base=10, min=-2, max=2, step=0.05)
    widgets.interact(show, spread_0=slider(1.0), spread_1=slider(4.0), spread_2=slider(16.0),
                     p=widgets.IntSlider(value=2, min=1, max=4))
else:
    show()
'''),
]


# ------------------------------------------------------------------------------------------------
# 2. Gaussian mixtures
# ------------------------------------------------------------------------------------------------
NB2 = [
    md(r"""
# Gaussian mixtures: when does a larger variance call for a larger margin?

The class-sensitive bound says: give class $k$ a margin $\gamma_k\propto a_k^{1/3}$, so the class with
the larger spread gets the larger margin. On Gaussian mixtures the truth is known, so we can check:
train linear classifiers with every margin allocation of a fixed budget, measure each class's
*exact* test error, and find the allocation that is really best.

"Best" depends on the criterion. The **balanced error** (mean over classes) and the **worst-class
error** need not agree, and the learner's **margin form** matters: the *additive* form subtracts
$\gamma_y$ from the target logit (LDAM), the *temperature* form divides the logits by $\gamma_y$ (MR²'s
official code). Everything below is computed by `sims`; this notebook only sets it up and plots it.
"""),
    params(r'''
SIGMA_RATIOS = [0.5, 1.0, 2.0] if QUICK else [0.25, 0.5, 1.0, 2.0, 4.0]  # sigma_varied / sigma_reference
N_PER_CLASS = 50 if QUICK else 100  # training points per class
D = 2  # input dimension
N_SEEDS = 4 if QUICK else 20  # training sets per setting (the unit of the bootstrap CIs)
GRID_SIZE = 21 if QUICK else 41  # log-ratios searched on [-3, 3] (odd: uniform margins are on it)
LOSSES = ["additive", "temperature"]  # margin forms of the learner
SIMS_DIR = "results/sims"  # cached `mr2 simulate` results, read if present
'''),
    code(SETUP + r'''
from pathlib import Path

import theory
from sims.config import LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.data import sample
from sims.evaluate import CRITERIA
from sims.search import run_setting
'''),
    md(r"""
## The data

Two classes in $\mathbb R^d$ with means $\pm\mu e_1$ and covariances $\sigma_k^2 I$. The reference class
has $\sigma = 1$; the other one is noisier (ratio > 1) or tighter (ratio < 1). Here is one draw of the
noisiest setting, with the spreads $a_k = \|\mu_k\|^2 + \mathrm{tr}\,\Sigma_k$ the theory uses:
"""),
    code(r'''
mix = MixtureConfig(sigmas=(1.0, max(SIGMA_RATIOS)), n_per_class=(N_PER_CLASS, N_PER_CLASS), d=D)
X, y = sample(mix, rng=0)
spread = mix.spread()
gamma = theory.optimal_margins(spread)
print("spreads a_k:", np.round(spread, 3), " theory's margins:", np.round(gamma, 3),
      " log ratio:", round(float(np.log(gamma[1] / gamma[0])), 3))
fig, ax = style.new_axes(None, width="single", aspect=0.8)
for k in range(2):
    ax.scatter(X[y == k, 0], X[y == k, 1 % D], s=6, alpha=0.6, label=f"class {k}, sigma = {mix.sigmas[k]:g}")
ax.set(xlabel="$x_1$", ylabel="$x_2$")
ax.legend();
'''),
    md(r"""
## One setting, every allocation

`run_setting` trains one model per (training set, margin allocation) in a single batched program and
measures the exact per-class errors. Below, the seed-mean criterion against
$r = \log(\gamma_\text{varied}/\gamma_\text{ref})$; the dot marks the minimum, the dashed line the
theory's $r$.
"""),
    code(r'''
def setting(ratio, loss):
    return Setting(
        MixtureConfig(sigmas=(1.0, ratio), n_per_class=(N_PER_CLASS, N_PER_CLASS), d=D),
        LearnerConfig(loss=loss),
        SearchConfig(grid_size=GRID_SIZE),
        n_seeds=N_SEEDS,
        tag="k2",
    )

ratio = max(SIGMA_RATIOS)
fig, axes = plt.subplots(1, len(LOSSES), figsize=style.figsize("double", 0.36), layout="constrained")
for ax, loss in zip(np.atleast_1d(axes), LOSSES):
    res = run_setting(setting(ratio, loss))
    grid = res.search_mask()
    r = res.log_ratio[grid]
    for crit, color in zip(CRITERIA, style.palette(2)):
        c = res.mean_criterion(crit)[grid]
        ax.plot(r, c, color=color, label=crit.replace("_", "-"))
        ax.plot(r[np.argmin(c)], c.min(), "o", color=color)
    ax.axvline(res.log_ratio[res.theory_index], color="0.2", ls="--", lw=0.9, label="theory")
    ax.axvline(0.0, color="0.6", lw=0.6)
    ax.set(title=f"{loss} form, variance ratio {ratio**2:g}", xlabel=r"$r = \log(\gamma_v/\gamma_{ref})$",
           ylabel="test error (seed mean)")
    ax.legend()
'''),
    md(r"""
## Across variance ratios

Now every ratio in `SIGMA_RATIOS`, both margin forms. `sims.experiments.margin_vs_variance` turns the
results into the rows of `margin_vs_variance.csv`: the optimal log-ratio per criterion with a bootstrap
CI over training sets, beside the theory's. Figure 4 of the paper draws them (`paper_figs`).
"""),
    code(r'''
from sims.experiments import margin_vs_variance
from paper_figs import fig4_margin_vs_variance as fig4

results = [run_setting(setting(s, loss)) for loss in LOSSES for s in SIGMA_RATIOS]
table = margin_vs_variance(results)
cols = ["loss", "sigma_ratio", "criterion", "opt_log_margin_ratio", "ci_low", "ci_high",
        "theory_log_margin_ratio", "at_boundary"]
table[cols].round(3)
'''),
    code(r'''
fig, axes = plt.subplots(1, 2 * len(LOSSES), figsize=style.figsize("double", 0.32), layout="constrained",
                         sharey=True)
for i, (loss, crit) in enumerate([(l, c) for l in LOSSES for c in CRITERIA]):
    sub = table[(table["loss"] == loss) & (table["criterion"] == crit)]
    fig4.plot_margin_vs_variance(sub, ax=axes[i], legend=(i == 0))
    axes[i].set_title(f"{loss}, {crit.replace('_', '-')}", loc="left", fontsize=7)
'''),
    md(r"""
**Reading it.** A point above 0 at a variance ratio above 1 means the noisier class should get the
larger margin, as the theory says; the theory's *size* is the black line. The cell below counts, per
margin form and criterion, the ratios whose CI lies strictly on the theory's side of 0, strictly on the
other side, or covers 0.
"""),
    code(r'''
signed = table[np.abs(table["theory_log_margin_ratio"]) > 0].copy()
side = np.sign(signed["theory_log_margin_ratio"])
signed["agrees"] = (signed["ci_low"] * side > 0) & (signed["ci_high"] * side > 0)
signed["opposes"] = (signed["ci_low"] * side < 0) & (signed["ci_high"] * side < 0)
signed.groupby(["loss", "criterion"])[["agrees", "opposes"]].sum()
'''),
    md(r"""
## The full study

`mr2 simulate --preset all` runs the full grid (two dimensions, three sample sizes, K = 2 and K = 5, both
margin forms) and writes a verdict per regime. If it has been run (`SIMS_DIR`), here is its summary;
otherwise run it from a shell (about a minute with `--quick`, several minutes without).

Why can the two forms disagree? In the additive form with two classes a margin allocation only shifts
the bias, so the search is over the threshold. In the temperature form a larger $\gamma_y$ divides
class $y$'s logits in its own loss, which near the boundary acts like a *smaller* weight on that class.
`docs/sims.md` works both out.
"""),
    code(r'''
from IPython.display import Markdown, display

summary = Path(SIMS_DIR) / "summary.md"
if summary.is_file():
    display(Markdown(summary.read_text()))
else:
    print(f"{summary} not found: run `mr2 simulate --preset all --quick --out {SIMS_DIR}`")
'''),
]


# ------------------------------------------------------------------------------------------------
# 3. Class-wise disparity on Fashion-MNIST
# ------------------------------------------------------------------------------------------------
NB3 = [
    md(r"""
# Class-wise disparity on Fashion-MNIST: per-class accuracy, spread against error, CE against MR²

A network trained on *balanced* data still treats its classes very unequally: on Fashion-MNIST the
*shirt* class is usually far behind *trouser* or *bag*. The class-sensitive margin bound says why a
class is hard: its features are spread out, $a_k = \|\mu_k\|^2 + s_k^2$ is large, and so it needs a
larger margin. MR² gives it one, $\gamma_k \propto a_k^{1/3}$.

This notebook trains (or reads) CE and MR² runs on the same seeds and asks three questions:

1. How unequal are the classes, and does MR² change that?
2. Does the spread $a_k$ of a trained network's features point at the hard classes?
3. What do overall, bottom-10% and worst-class accuracy say, with confidence intervals over seeds?

Everything is computed by the packages: `mr2.train` (through `paper_figs.plans`),
`mr2.report` for the statistics and `paper_figs` for the plots.
"""),
    params(r'''
from pathlib import Path

STUDY = None  # a finished study to read instead of training, e.g. "results/demo/runs/fmnist-quick"
RUNS = Path("results/notebook_runs")  # where new runs go
PLAN = "tiny" if QUICK else "quick"  # training plan of paper_figs.plans: tiny (digits), quick, full
SEED = 0  # seed of the bootstrap CIs
'''),
    code(SETUP),
    md(r"""
## 1. The runs

If `STUDY` is set we read it. Otherwise we run a training plan: `quick` trains CE and MR² on
Fashion-MNIST (a small CNN, 3 seeds, a few minutes on 2 cores); when Fashion-MNIST is not installed
the plan falls back to scikit-learn's digits and says so. Finished runs are never retrained.
"""),
    code(r'''
from paper_figs.plans import choose_plan

if STUDY is None:
    plan = choose_plan(PLAN)
    print("same as: mr2", " ".join(plan.argv(RUNS)))
    STUDY = plan.run(RUNS, progress=False)
STUDY = Path(STUDY)
print("study:", STUDY)
'''),
    code(r'''
from mr2 import report

runs = report.load_study(STUDY)
runs = runs[runs["loss"].isin(["ce", "mr2"])].reset_index(drop=True)
names = list(runs["class_names"].iloc[0])
print(f"{len(runs)} runs, dataset {runs['dataset'].iloc[0]}, {len(names)} classes")
runs[["loss", "seed", "accuracy", "worst_class_accuracy", "bottom10_accuracy", "top10_accuracy"]]
'''),
    md(r"""
## 2. Per-class accuracy

Classes sorted by CE's mean accuracy, worst first. Bars are 95% bootstrap intervals over seeds; the
right panel pairs MR² with CE on the same seeds, so seed-to-seed noise shared by both cancels.
"""),
    code(r'''
from paper_figs import data, fig1_class_accuracy as fig1

frame, files = data.load_study(STUDY, ("ce", "mr2"))
acc = fig1.class_accuracy_ci(frame, seed=SEED)
order = list(acc[acc["loss"] == "ce"].sort_values("mean")["class_index"])
diff = fig1.paired_difference_ci(frame, "mr2", "ce", seed=SEED)

fig, axes = plt.subplots(1, 2, figsize=style.figsize("double", 0.4), layout="constrained")
fig1.plot_class_accuracy(acc, order, ax=axes[0])
fig1.plot_paired_difference(diff, order, "mr2", ax=axes[1]);
'''),
    code(r'''
acc.pivot(index="class_name", columns="loss", values="mean").loc[[names[k] for k in order]].round(3)
'''),
    md(r"""
## 3. Does the spread identify the hard classes?

For each run, $a_k$ is measured on the *training* features of the selected model, and compared with
the class's *test* error by Spearman's $\rho$ (a rank correlation: the bound speaks about the order of
the classes, not the scale of the features).
"""),
    code(r'''
from paper_figs import fig2_spread_vs_error as fig2

fig, axes = plt.subplots(1, 2, figsize=style.figsize("double", 0.4), layout="constrained", sharey=True)
for ax, loss in zip(axes, ["ce", "mr2"]):
    fig2.plot_spread_vs_error(frame, loss, seed=SEED, ax=ax)
'''),
    code(r'''
corr = report.spread_error_correlation(runs, rng=SEED)
corr.round(3)
'''),
    md(r"""
The table splits $a_k$ into its two parts, the within-class spread $s_k^2$ and the squared norm of
the class mean $\|\mu_k\|^2$, and gives the scale-free ratio $s_k^2/\|\mu_k\|^2$. The bound's $a_k$ is
a second moment about the origin (notebook 1, step 7): with uncentred features (after a ReLU they are
all non-negative) the mean's norm can dominate it. Compare the rows to see which part tracks the error.
"""),
    md(r"""
## 4. CE against MR², with intervals

`mr2.report.summary` gives each metric's mean over seeds and the paired difference to CE with a 95%
bootstrap interval. A difference whose interval covers 0 is *no detectable change* at this number of
seeds; with the quick plan's 3 seeds the intervals are wide, and that is the honest answer.
"""),
    code(r'''
table = report.summary(runs, rng=SEED)
mr2_rows = table[table["loss"] == "mr2"].copy()
mr2_rows["reading"] = [report.verdict(m, lo, hi) for m, lo, hi in
                       zip(mr2_rows["metric"], mr2_rows["diff_ci_low"], mr2_rows["diff_ci_high"])]
mr2_rows[["metric", "point", "diff", "diff_ci_low", "diff_ci_high", "reading"]].round(4)
'''),
    md(r"""
### Things to try

* Point `STUDY` at the verification study (`mr2 train --preset fmnist-verify`, 5 seeds, all losses)
  and compare the intervals with the quick plan's.
* Does the class with the largest $a_k$ coincide with the worst class? (`hardest_match` above.)
* MR²'s ablations `mr2-logit` (margins only) and `mr2-rep` (representation term only) are in the
  verification study: which part moves the worst class?
"""),
]


# ------------------------------------------------------------------------------------------------
# 4. Exercises for a course on margin theory
# ------------------------------------------------------------------------------------------------
NB4 = [
    md(r"""
# Exercises: class-sensitive margin theory

Each exercise has a worked solution below it. Try it first; the solutions use the project's
packages, so that you can check your own derivation against the one the code relies on.

**Setting.** $K$ classes, features $h\in\mathbb R^d$, a linear head with $\|W\|_F\le B$ and a ramp loss
with margin $\gamma_k$ for class $k$. The vector-contraction bound on the balanced error carries the
margin term

$$\sqrt{\textstyle\sum_k \pi_k\, a_k / \gamma_k^2},\qquad a_k = \|\mu_k\|^2 + s_k^2 ,$$

and the allocation problem is: minimise $J(\gamma)=\sum_k w_k a_k/\gamma_k^p$ subject to
$\frac1K\sum_k\gamma_k=\bar c$. Its solution (`theory.optimal_margins`) is

$$\gamma_k = K\bar c\,\frac{(w_k a_k)^{1/(p+1)}}{\sum_j (w_j a_j)^{1/(p+1)}} .$$
"""),
    params(r'''
SEED = 0  # seed of every random draw in the exercises
EX5_SEEDS = 4 if QUICK else 20  # Exercise 5: training sets per setting (the unit of the CIs)
EX5_N = 50 if QUICK else 100  # Exercise 5: training points per class
EX5_GRID = 21 if QUICK else 41  # Exercise 5: margin allocations searched (odd: uniform is on the grid)
'''),
    code(SETUP + r'''
import sympy as sp

import theory
'''),
    md(r"""
## Exercise 1: predict the margins

Three balanced classes have spreads $a = (1, 8, 27)$ and the mean margin is $\bar c = 1$.
(a) Predict MR²'s margins ($p = 2$) by hand. (b) Predict them for $p = 1$. (c) Which class gains most
when $p$ goes from 2 to 1, and why?
"""),
    md(r"""
### Solution

(a) $a^{1/3} = (1, 2, 3)$, whose sum is 6, so $\gamma = 3\cdot(1,2,3)/6 = (0.5, 1, 1.5)$.
(b) $a^{1/2} = (1, 2\sqrt2, 3\sqrt3)$, so $\gamma = 3\,a^{1/2}/\sum_j a_j^{1/2}$.
(c) A smaller $p$ means a larger exponent $1/(p+1)$, so the margins spread out more: the class with the
largest spread gains, the smallest loses. The package agrees:
"""),
    code(r'''
a = np.array([1.0, 8.0, 27.0])
by_hand = {2: np.array([0.5, 1.0, 1.5]), 1: 3 * np.sqrt(a) / np.sqrt(a).sum()}
for p, expected in by_hand.items():
    got = theory.optimal_margins(a, power=p)
    print(f"p = {p}: theory.optimal_margins -> {np.round(got, 4)}, by hand {np.round(expected, 4)}")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
'''),
    md(r"""
## Exercise 2: derive LDAM's $n^{-1/4}$ from the same Lagrangian

LDAM (Cao et al., 2019) bounds the error of class $k$ by a term proportional to
$1/(\gamma_k\sqrt{n_k})$ and minimises the sum over classes at a fixed margin budget.
(a) Write this as our allocation problem: which $p$, $w_k$ and $a_k$? (b) Write the Lagrangian for one
generic class $k$, solve the stationarity condition and eliminate the multiplier with the
constraint. (c) Conclude $\gamma_k\propto n_k^{-1/4}$.
"""),
    md(r"""
### Solution

(a) $\sum_k 1/(\gamma_k\sqrt{n_k})$ is $J$ with $p = 1$, $w_k = 1$ and $a_k = n_k^{-1/2}$.

(b) Work with one generic index instead of $K$ unknowns at once (solving the full system for an
explicit $K$ is hopeless even at $K = 4$). The terms of the Lagrangian that involve $\gamma_k$ are
$a_k\gamma_k^{-p} + \lambda\gamma_k$:
"""),
    code(r'''
g, lam, a_k, p, n_k, cbar, K = sp.symbols("gamma_k lambda a_k p n_k cbar K", positive=True)
L_k = a_k * g**-p + lam * g  # the part of sum_j a_j g_j^-p + lam (sum_j g_j - K cbar) that holds g_k
stationary = sp.Eq(sp.diff(L_k, g), 0)
gamma_k = sp.solve(stationary, g)[0]
display(stationary, sp.Eq(g, gamma_k))
'''),
    md(r"""
So $\gamma_k = (p\,a_k/\lambda)^{1/(p+1)}$: the multiplier is a common factor of every class. The
constraint $\sum_j\gamma_j = K\bar c$ fixes it, giving $\gamma_k = K\bar c\,a_k^{1/(p+1)}/\sum_j
a_j^{1/(p+1)}$. The second derivative $p(p+1)a_k\gamma_k^{-p-2} > 0$, so it is a minimum.

(c) With $p = 1$ and $a_k = n_k^{-1/2}$, $\gamma_k\propto (n_k^{-1/2})^{1/2} = n_k^{-1/4}$:
"""),
    code(r'''
second = sp.diff(L_k, g, 2)
print("second derivative:", sp.simplify(second), "> 0")
ldam = sp.simplify(gamma_k.subs({p: 1, a_k: n_k**sp.Rational(-1, 2)}))
display(sp.Eq(g, ldam))
print("exponent of n_k:", sp.simplify(sp.diff(sp.log(ldam), n_k) * n_k))

counts = np.array([5000, 2000, 500, 100, 50])
ours = theory.optimal_margins(counts ** -0.5, power=1)
np.testing.assert_allclose(ours / ours.max() * 0.5, theory.ldam_margins(counts, max_margin=0.5), rtol=1e-12)
print("theory.ldam_margins equals the p = 1 rule with a_k = n_k^-1/2, rescaled to max 0.5")
'''),
    md(r"""
The package's own derivation (`theory.derivation`, step 5) reaches the same exponent by substituting
into its closed form:
"""),
    code(r'''
from theory.derivation import derivation

step = derivation()["special_cases"]
display(step.results["ldam"])
print("exponents:", step.results["exponents"])
'''),
    md(r"""
## Exercise 3: how much do optimal margins buy?

Two groups of classes, spreads $1$ and $r$. (a) Show that the optimum's objective over the uniform
one is a ratio of power means, $J(\gamma^\star)/J(\bar c) = M_{1/(p+1)}(a)/M_1(a)$. (b) Why is it at
most 1? (c) Evaluate it for $r = 8$ and $p = 2$.
"""),
    md(r"""
### Solution

(a) Put $\gamma^\star$ into $J$: with $t_k = a_k^{1/(p+1)}$ and $S=\sum_j t_j$,
$J(\gamma^\star) = \sum_k a_k (S/K\bar c)^p t_k^{-p}/K = (S/K)^{p+1}/\bar c^p$, while
$J(\bar c) = \frac1K\sum_k a_k/\bar c^p$. Their ratio is $\big(\frac1K\sum_k a_k^{1/(p+1)}\big)^{p+1}
/ \big(\frac1K\sum_k a_k\big) = M_{1/(p+1)}(a)/M_1(a)$.
(b) The power mean grows with its order (Jensen), and $1/(p+1) < 1$.
(c) With $a=(1,8)$ and $p=2$: $M_{1/3} = ((1+2)/2)^3 = 3.375$, $M_1 = 4.5$, ratio $0.75$; the margin term
(its square root) falls by the factor $\sqrt{0.75}\approx 0.866$.
"""),
    code(r'''
a = np.array([1.0, 8.0])
ratio = theory.power_mean(a, 1 / 3) / theory.power_mean(a, 1.0)
print(f"M_1/3 / M_1 = {ratio:.4f}; margin-term gain sqrt = {np.sqrt(ratio):.4f}")
print(f"theory.gain_over_uniform = {float(theory.gain_over_uniform(a, power=2)):.4f}")
np.testing.assert_allclose(theory.gain_over_uniform(a, power=2), np.sqrt(0.75), rtol=1e-12)
'''),
    md(r"""
## Exercise 4: features that are not centred

$a_k = \|\mu_k\|^2 + s_k^2$ contains the class mean's norm, so the margins depend on where the origin
of the feature space is. Shift every feature by the same vector $c$. (a) What happens to the margins
as $\|c\|\to\infty$? (b) Does that make sense for a linear head with a bias?
"""),
    md(r"""
### Solution

(a) $a_k(c) = \|\mu_k + c\|^2 + s_k^2 = \|c\|^2 + O(\|c\|)$ for every class, so all $a_k$ become
alike and the margins tend to uniform: the class-sensitivity is washed out by the offset. (b) A bias
makes the classifier itself invariant to the shift, but the bound (and MR²'s rule) is not: it measures
norms from the origin. Centring the features (subtracting the global mean) before computing $a_k$
removes the dependence. Numerically:
"""),
    code(r'''
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
'''),
    md(r"""
## Exercise 5: break the theory by changing the criterion

The bound controls the **balanced error**, a weighted sum of the per-class errors, and its optimal
margins do not depend on which error you actually care about. Take two Gaussian classes in
$\mathbb R^2$ with means $\pm\mu e_1$, $\sigma_\text{ref} = 1$ and $\sigma_\text{noisy} = 2$ (variance
ratio 4), balanced.

(a) Which log-margin ratio $r = \log(\gamma_\text{noisy}/\gamma_\text{ref})$ does the theory predict?
Use $a_k = \|\mu_k\|^2 + d\,\sigma_k^2$.
(b) Before running anything: should the allocation that minimises the balanced error also minimise the
worst-class error?
(c) Train linear classifiers with every allocation of the margin budget, for both margin forms
(additive: $z_y - \gamma_y$; temperature: $z/\gamma_y$), and find the best $r$ under each criterion, with a
CI over training sets. Which pairings of margin form and criterion agree with the theory's direction,
and which break it?
"""),
    md(r"""
### Solution

(a) The spreads are $a = \|\mu\|^2 + 2\sigma^2$ per class, and the rule gives $r = \tfrac13\log(a_\text{noisy}/
a_\text{ref})$:
"""),
    code(r'''
from sims.config import LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.experiments import margin_vs_variance
from sims.search import run_setting

mix = MixtureConfig(sigmas=(1.0, 2.0), n_per_class=(EX5_N, EX5_N), d=2)
a = mix.spread()
gamma = theory.optimal_margins(a)
print(f"spreads a = {np.round(a, 3)}; theory's margins {np.round(gamma, 3)}; "
      f"r = log(gamma_noisy / gamma_ref) = {np.log(gamma[1] / gamma[0]):.3f} = log(a ratio) / 3 "
      f"= {np.log(a[1] / a[0]) / 3:.3f}")
'''),
    md(r"""
(b) Not necessarily. The worst-class error is a maximum, not a sum, and nothing in the bound's
derivation looks at it. The noisy class is usually the worse one, and pushing the decision boundary
away from it lowers its error at the expense of the other class, which the balanced error may or may
not reward.

(c) `sims.search.run_setting` trains one model per (training set, allocation) in one batched program
and measures exact per-class errors; `margin_vs_variance` turns that into the optimal $r$ per
criterion with a bootstrap CI:
"""),
    code(r'''
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
'''),
    md(r"""
Read the verdict column. With the full parameters (20 training sets of 100 points per class, seed 0)
we measured, against the theory's $r = 0.293$: additive form, balanced error $-0.58$ [$-0.78$, $-0.38$];
additive, worst-class $+0.84$ [$0.40$, $1.10$]; temperature, balanced $+0.61$ [$0.46$, $0.79$];
temperature, worst-class $-0.26$ [$-0.42$, $-0.05$]. The optimal direction flips with the criterion:
with additive margins the worst-class error wants the noisier class to get the larger margin while the
balanced error wants the smaller one, and with temperature margins it is the other way round. (The
quick parameters of the tests give noisier numbers; the CIs say how far to trust them.) So "larger variance, larger margin" is
not a property of the data alone: it depends on the error you minimise and on how the margin enters
the loss, and the theory's single rule cannot be right for all four pairings. Even where the direction
agrees, compare the size of the optimum with `theory_log_margin_ratio`: the bound fixes a rate ($1/3$)
that the simulations rarely reproduce (`mr2 simulate --preset all` tests this across regimes).

Why the additive form behaves as it does with two classes: subtracting $\gamma_y$ from the target logit
of a two-class linear model is, at the optimum, the same as shifting its bias. The allocation therefore
moves the decision threshold along $e_1$, and the balanced and worst-class errors prefer different
thresholds whenever the classes have different variances.
"""),
]


NOTEBOOKS = {
    "01_margin_bound_derivation.ipynb": NB1,
    "02_gaussian_mixtures.ipynb": NB2,
    "03_fashion_mnist_disparity.ipynb": NB3,
    "04_exercises_margin_theory.ipynb": NB4,
}


def build(out_dir: Path = HERE) -> list[Path]:
    """Write every notebook (no outputs) into ``out_dir``; return the paths."""
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = notebook(cells)
        nbformat.validate(nb)
        path = out_dir / name
        text = nbformat.writes(nb) + "\n"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
