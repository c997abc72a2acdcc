# %% [markdown]
# # Class-wise disparity on Fashion-MNIST: per-class accuracy, spread against error, CE against MR²
#
# A network trained on *balanced* data still treats its classes very unequally: on Fashion-MNIST the
# *shirt* class is usually far behind *trouser* or *bag*. The class-sensitive margin bound says why a
# class is hard: its features are spread out, $a_k = \|\mu_k\|^2 + s_k^2$ is large, and so it needs a
# larger margin. MR² gives it one, $\gamma_k \propto a_k^{1/3}$.
#
# This notebook trains (or reads) CE and MR² runs on the same seeds and asks three questions:
#
# 1. How unequal are the classes, and does MR² change that?
# 2. Does the spread $a_k$ of a trained network's features point at the hard classes?
# 3. What do overall, bottom-10% and worst-class accuracy say, with confidence intervals over seeds?
#
# Everything is computed by the packages: `mr2.train` (through `paper_figs.plans`),
# `mr2.report` for the statistics and `paper_figs` for the plots.

# %% tags=["parameters"]
# Parameters: MR2_NB_QUICK=1 (set by the tests) makes every run small.
import os

QUICK = os.environ.get("MR2_NB_QUICK", "0") == "1"
from pathlib import Path

STUDY = None  # a finished study to read instead of training, e.g. "results/demo/runs/fmnist-quick"
RUNS = Path("results/notebook_runs")  # where new runs go (git ignores notebooks/results/)
PLAN = "tiny" if QUICK else "quick"  # training plan of paper_figs.plans: tiny (digits), quick, full
CI = "t"  # interval method over seeds: "t" (Student t; the default), "bca" or "percentile"

# %%
import matplotlib.pyplot as plt

from paper_figs import notebook_style

notebook_style.set_theme()  # the paper's theme, fonts and sizes scaled up for a screen or projector
# %matplotlib inline

# %% [markdown]
# ## 1. The runs
#
# If `STUDY` is set we read it. Otherwise we run a training plan: `quick` trains CE and MR² on
# Fashion-MNIST (a small CNN, 5 seeds, a few minutes on 2 cores). The `tiny` plan of quick mode
# (`MR2_NB_QUICK=1`: the tests, the docs build) trains on scikit-learn's 8x8 digits instead, in seconds,
# and so does any plan when Fashion-MNIST is not installed. The next cell says so in bold when the runs
# are not on Fashion-MNIST. Finished runs are never retrained.

# %%
from paper_figs.plans import choose_plan

why = "the study in STUDY was trained on it"
if STUDY is None:
    plan = choose_plan(PLAN)
    print("runs:", plan.describe(RUNS))  # the library call it makes
    why = "quick mode, MR2_NB_QUICK=1" if PLAN == "tiny" else "Fashion-MNIST is not installed"
    STUDY = plan.run(RUNS, progress=False)
STUDY = Path(STUDY)
print("study:", STUDY)

# %%
from mr2 import report

runs = report.load_study(STUDY)
runs = runs[runs["loss"].isin(["ce", "mr2"])].reset_index(drop=True)
names = list(runs["class_names"].iloc[0])
dataset = runs["dataset"].iloc[0]
if dataset != "fashion-mnist":
    from IPython.display import Markdown, display

    display(Markdown(f"**These runs trained on {dataset}, not Fashion-MNIST** ({why}): every number and "
                     "plot below is about that data set, whatever the headings say."))
print(f"{len(runs)} runs, dataset {runs['dataset'].iloc[0]}, {len(names)} classes")
runs[["loss", "seed", "accuracy", "worst_class_accuracy", "bottom10_accuracy", "top10_accuracy"]]

# %% [markdown]
# ## 2. Per-class accuracy
#
# Classes sorted by CE's mean accuracy, worst first. Bars are 95% t intervals over seeds (with 3-5
# seeds a percentile bootstrap would be too narrow); the right panel pairs MR² with CE on the same
# seeds, so seed-to-seed noise shared by both cancels.

# %%
from paper_figs import study_plots

frame = report.per_class_table(runs)
acc = report.class_intervals(frame, ci=CI)
order = list(acc[acc["loss"] == "ce"].sort_values("mean")["class_index"])
diff = report.paired_class_differences(frame, "mr2", "ce", ci=CI)

fig, axes = plt.subplots(1, 2, figsize=notebook_style.figsize("double", 0.4), layout="constrained")
study_plots.plot_class_accuracy(acc, order, ax=axes[0])
study_plots.plot_paired_class_difference(diff, order, "mr2", ax=axes[1]);

# %%
acc.pivot(index="class_name", columns="loss", values="mean").loc[[names[k] for k in order]].round(3)

# %% [markdown]
# ## 3. Does the spread identify the hard classes?
#
# For each run, $a_k$ is measured on the *training* features of the selected model, and compared with
# the class's *test* error by Spearman's $\rho$ (a rank correlation: the bound speaks about the order of
# the classes, not the scale of the features).

# %%
size = notebook_style.figsize("double", 0.4)
fig, axes = plt.subplots(1, 2, figsize=size, layout="constrained", sharey=True)
for ax, loss in zip(axes, ["ce", "mr2"], strict=True):
    study_plots.plot_spread_vs_error(frame, loss, ci=CI, ax=ax)

# %%
corr = report.spread_error_correlation(runs, ci=CI)
corr.round(3)

# %% [markdown]
# The table splits $a_k$ into its two parts, the within-class spread $s_k^2$ and the squared norm of
# the class mean $\|\mu_k\|^2$, and gives the scale-free ratio $s_k^2/\|\mu_k\|^2$. The bound's $a_k$ is
# a second moment about the origin (notebook 1, the `non_centred` step): with uncentred features (after
# a ReLU they are all non-negative) the mean's norm can dominate it. Compare the rows to see which part
# tracks the error.

# %% [markdown]
# ## 4. CE against MR², with intervals
#
# `mr2.report.summary` gives each metric's mean over seeds and the paired difference to CE with a 95%
# t interval, the paired t-test's p-value adjusted for multiple comparisons (Holm), the smallest effect
# these seeds could detect (MDE at 80% power) and, when nothing is detected, the equivalence bound: the
# effects larger than it are excluded (TOST). With few seeds the intervals are wide and the MDE large:
# that is the honest answer.

# %%
table = report.summary(runs, ci=CI)
mr2_rows = table[table["loss"] == "mr2"]
columns = ["selection", "metric", "point", "diff", "diff_ci_low", "diff_ci_high", "p_holm", "mde", "verdict"]
mr2_rows[columns].round(4)

# %% [markdown]
# ### Things to try
#
# * Point `STUDY` at the verification study (`mr2 train --preset fmnist-protocol`, 12 seeds of CE and MR²)
#   and compare the intervals with the quick plan's.
# * Does the class with the largest $a_k$ coincide with the worst class? (`hardest_match` above.)
# * MR²'s ablations `mr2-logit` (margins only) and `mr2-rep` (representation term only) are in the
#   verification study: which part moves the worst class?
