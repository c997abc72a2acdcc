"""The interfaces between the pillars, in one place: names, files and columns that one part of the
project writes and another reads.

Producers (``sims``, ``mr2.train``, the benchmarks), readers (``mr2.report``, ``paper_figs``, the
notebooks) and the tests import these instead of restating them, and ``tests/test_contracts.py``
checks that every producer's output carries the contract's columns. ``docs/CONTRACTS.md`` documents
the same names for people; this module is the copy the code uses.

Nothing here imports numpy, torch or pandas: the command line reads it to build ``--help``.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "LOSSES",
    "LOSS_LABELS",
    "LOSS_COLOR_INDEX",
    "loss_label",
    "BASELINE_LOSS",
    "MR2_LOSSES",
    "RUN_FILES",
    "CONFIG_FILE",
    "LOG_FILE",
    "CHECKPOINT_FILE",
    "METRICS_FILE",
    "LOCK_FILE",
    "METRICS_KEYS",
    "METRICS_OPTIONAL_KEYS",
    "SELECTION_RULES",
    "SELECTION_LABELS",
    "SELECTION_KEYS",
    "CI_METHODS",
    "REPORT_SUMMARY_COLUMNS",
    "SUMMARY_METRICS",
    "METRIC_LABELS",
    "HIGHER_IS_BETTER",
    "TAIL_FRACTION",
    "SIMS_PRESETS",
    "SIMS_FILES",
    "SIMS_MANIFEST_FILE",
    "SIMS_SUMMARY_FILE",
    "SIMS_REGIME_COLUMNS",
    "SIMS_RULES",
    "SIMS_RULE_COLUMNS",
    "SIMS_SCORE_KEYS",
    "SIMS_COLUMNS",
    "LOSS_BENCH_COLUMNS",
    "LOSS_BENCH_FILE",
    "FASHION_MNIST_CLASSES",
]

# ------------------------------------------------------------------------------------------- losses
# Every loss `mr2.losses.make_loss` builds, in the order tables and figures show them.
LOSSES: tuple[str, ...] = ("ce", "focal", "ldam", "cdb", "mr2", "mr2-logit", "mr2-rep", "mr2-official")
BASELINE_LOSS = "ce"  # what the paired comparisons subtract
# MR2, its ablations and the released code's configuration
MR2_LOSSES: tuple[str, ...] = ("mr2", "mr2-logit", "mr2-rep", "mr2-official")
LOSS_LABELS = MappingProxyType(
    {
        "ce": "CE",
        "focal": "focal",
        "ldam": "LDAM",
        "cdb": "CDB",
        "mr2": "MR²",
        "mr2-logit": "MR² logit only",
        "mr2-rep": "MR² rep. only",
        "mr2-official": "MR² official code",
    }
)
# Fixed colour per loss: an index into seaborn's 10-colour colour-blind palette, so a loss keeps its
# colour from figure to figure (CE blue, MR2 orange). Names not listed take the remaining colours.
LOSS_COLOR_INDEX = MappingProxyType(
    {"ce": 0, "mr2": 1, "focal": 2, "ldam": 3, "cdb": 4, "mr2-logit": 5, "mr2-rep": 6, "mr2-official": 7}
)


def loss_label(name: str) -> str:
    """The display label of a loss (its name when it has none)."""
    return LOSS_LABELS.get(name, name)


# ------------------------------------------------------------------------------------ training runs
# RUNS/<study>/<loss>/seed<k>/ holds these files (mr2.train writes them, mr2.report and the figures
# read them).
CONFIG_FILE = "config.json"  # the config, the code version (git hash) and the environment
LOG_FILE = "log.csv"  # one row per epoch
CHECKPOINT_FILE = "checkpoint.pt"  # written atomically after every epoch
METRICS_FILE = "metrics.json"  # test numbers of the selected model
LOCK_FILE = ".lock"  # held while a process trains the run (mr2_core.locks); removed when it is done
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE, METRICS_FILE)

# Keys every metrics.json holds (it may hold more).
METRICS_KEYS: tuple[str, ...] = (
    "accuracy",  # fraction of test images right
    "per_class_accuracy",  # list of K fractions
    "worst_class",  # index of the worst class
    "worst_class_accuracy",
    "bottom10_accuracy",  # mean over the ceil(10% of K) worst classes
    "top10_accuracy",  # mean over the ceil(10% of K) best classes
    "class_accuracy_std",  # population std over classes
    "class_spread",  # list of K: a_k = ||mu_k||^2 + s_k^2 of the selected model's training features (L2)
    "class_mean_norm2",  # list of K: ||mu_k||^2
    "class_within_spread",  # list of K: s_k^2
    "dataset",
    "class_names",
    "loss",
    "seed",
)
# Keys a metrics.json may hold (readers use them when present and skip them silently otherwise).
METRICS_OPTIONAL_KEYS: tuple[str, ...] = (
    "select_metric",  # the rule (one of SELECTION_RULES) that chose the model of the top-level numbers
    "selected_epoch",  # its epoch (1-based: 1 is the model after the first epoch)
    # {rule: {...}} for every rule in SELECTION_RULES: the test numbers of the model each rule selects,
    # with the keys SELECTION_KEYS; the top-level numbers are those of the run's select_metric
    "selections",
    "class_centred_spread",  # list of K: ||mu_k - mu_bar||^2 + s_k^2 (the bound with a bias in the head)
    "class_separation",  # list of K: s_k^2 / min_j ||mu_k - mu_j||^2 (a data-suggested heuristic)
    "margin_min",  # MR² losses: smallest per-class margin gamma_k at the end of training
    "margin_max",  # MR² losses: largest per-class margin gamma_k at the end of training
)
# Model-selection rules on the validation split (never the test split): best overall accuracy, best
# worst-class accuracy, or the last epoch.
SELECTION_RULES: tuple[str, ...] = ("accuracy", "worst_class_accuracy", "last")
SELECTION_LABELS = MappingProxyType(
    {
        "accuracy": "best validation accuracy",
        "worst_class_accuracy": "best worst-class validation accuracy",
        "last": "last epoch",
    }
)
# Keys of each selections[rule] entry: the epoch and the test numbers of the model the rule selects
# (the keys of mr2_core.summaries.class_summary among them).
SELECTION_KEYS: tuple[str, ...] = (
    "selected_epoch",
    "accuracy",
    "per_class_accuracy",
    "worst_class",
    "worst_class_accuracy",
    "bottom10_accuracy",
    "top10_accuracy",
    "class_accuracy_std",
    "balanced_accuracy",
)
# The per-run summaries a report compares across losses, and how to read them.
SUMMARY_METRICS: tuple[str, ...] = (
    "accuracy",
    "bottom10_accuracy",
    "worst_class_accuracy",
    "top10_accuracy",
    "class_accuracy_std",
)
METRIC_LABELS = MappingProxyType(
    {
        "accuracy": "overall accuracy",
        "bottom10_accuracy": "bottom-10% classes",
        "worst_class_accuracy": "worst class",
        "top10_accuracy": "top-10% classes",
        "class_accuracy_std": "std over classes",
    }
)
HIGHER_IS_BETTER = MappingProxyType({m: m != "class_accuracy_std" for m in SUMMARY_METRICS})
# bottom/top tail: the ceil(TAIL_FRACTION * K) worst/best classes (1 class when K = 10)
TAIL_FRACTION = 0.10
# Confidence intervals over seeds (mr2_core.stats.interval_estimates): Student t (the default for
# means), BCa bootstrap, percentile bootstrap.
CI_METHODS: tuple[str, ...] = ("t", "bca", "percentile")
# summary.csv of `mr2 report`: one row per (selection rule, loss, metric). diff_* and the tests compare
# the loss with the baseline on the seeds both have; p_holm is Holm-adjusted over the report's family.
REPORT_SUMMARY_COLUMNS: tuple[str, ...] = (
    "study", "selection", "loss", "metric", "n_seeds", "point", "ci_low", "ci_high", "ci_method",
    "n_paired", "diff", "diff_ci_low", "diff_ci_high", "diff_sd", "p_value", "p_holm", "wilcoxon_p",
    "mde", "tost_bound", "verdict",
)  # fmt: skip

# ------------------------------------------------------------------------------------------- sims
# the presets of `mr2 simulate --preset` ("all" runs every other one)
SIMS_PRESETS: tuple[str, ...] = (
    "margin-vs-variance", "margin-vs-separation", "theory-vs-uniform", "bound-vs-gap", "all",
)  # fmt: skip
# every table `mr2 simulate` writes -> the preset that writes it
SIMS_FILES = MappingProxyType(
    {
        "margin_vs_variance.csv": "margin-vs-variance",
        "exponents.csv": "margin-vs-variance",
        "verdict.csv": "margin-vs-variance",
        "margin_vs_separation.csv": "margin-vs-separation",
        "rule_scores.csv": "margin-vs-separation",
        "theory_vs_uniform.csv": "theory-vs-uniform",
        "bound_vs_gap.csv": "bound-vs-gap",
    }
)
SIMS_MANIFEST_FILE = "manifest.json"  # every preset: config, code version, timings
SIMS_SUMMARY_FILE = "summary.md"  # every preset: the verdict and the tables in Markdown
# a regime of the sweep: classes, margin form, dimension, samples per class, mean norm
SIMS_REGIME_COLUMNS: tuple[str, ...] = ("K", "loss", "d", "n_per_class", "mu")
_REGIME = SIMS_REGIME_COLUMNS
# the margin rules scored against the empirical optima, and the column of margin_vs_*.csv holding each
# one's predicted log(gamma_k / gamma_ref) (sims.scores): the bound's a_k^(1/3), the Gaussian oracle's
# error-optimal boundary, LDAM's n_k^(-1/4), uniform margins
SIMS_RULES: tuple[str, ...] = ("bound", "oracle", "ldam", "uniform")
SIMS_RULE_COLUMNS = MappingProxyType(
    {
        "bound": "theory_log_margin_ratio",
        "oracle": "oracle_log_margin_ratio",
        "ldam": "ldam_log_margin_ratio",
        "uniform": "uniform_log_margin_ratio",
    }
)
SIMS_SCORE_KEYS: tuple[str, ...] = ("K", "loss", "criterion", "d", "n_per_class")  # a rule_scores.csv group
_MARGIN_ROWS = (
    *_REGIME, "sigma_ratio", "class", "reference", "criterion", "opt_log_margin_ratio", "ci_low",
    "ci_high", "theory_log_margin_ratio", "log_spread_ratio", "at_boundary", "opt_error",
    "uniform_error", "theory_error", "n_seeds", "mean_margin", "l2", "setting", "separation",
    "oracle_log_margin_ratio", "ldam_log_margin_ratio", "uniform_log_margin_ratio", "oracle_error",
    "opt_geo_log_ratio", "oracle_geo_log_ratio", "separation_kept", "geo_gain",
)  # fmt: skip
# the columns each sims table holds at least (in this order at the front of the file)
SIMS_COLUMNS = MappingProxyType(
    {
        "margin_vs_variance.csv": _MARGIN_ROWS,
        "margin_vs_separation.csv": _MARGIN_ROWS,
        "exponents.csv": (
            *_REGIME, "criterion", "exponent", "ci_low", "ci_high", "theory_exponent", "theory_in_ci",
            "exponent_verdict", "boundary_optima", "n_points",
        ),
        "verdict.csv": (
            *_REGIME, "criterion", "exponent", "ci_low", "ci_high", "theory_exponent", "verdict", "agree",
            "oppose", "settings", "boundary_optima",
        ),
        "rule_scores.csv": (
            *SIMS_SCORE_KEYS, "rule", "settings", "no_prediction", "mae", "bias", "in_ci", "censored", "rank",
        ),
        "theory_vs_uniform.csv": (
            *_REGIME, "sigmas", "sigma_ratio", "setting", "choice", "metric", "class", "class_sigma",
            "point", "ci_low", "ci_high", "diff_vs_uniform", "diff_ci_low", "diff_ci_high",
        ),
        "bound_vs_gap.csv": (
            *_REGIME, "sigma_ratio", "setting", "choice", "class", "class_sigma", "margin", "margin_term",
            "margin_term_ci_low", "margin_term_ci_high", "gen_gap", "gen_gap_ci_low", "gen_gap_ci_high",
            "ramp_gap", "ramp_gap_ci_low", "ramp_gap_ci_high", "test_error", "test_error_ci_low",
            "test_error_ci_high", "weight_norm",
        ),
    }
)  # fmt: skip

# -------------------------------------------------------------------------------------- benchmarks
LOSS_BENCH_FILE = "loss_bench.csv"
LOSS_BENCH_COLUMNS: tuple[str, ...] = (
    "K", "B", "d", "impl", "ms_mean", "ms_std", "speedup", "ratio_to_ce", "ms_median",
)  # fmt: skip

# ------------------------------------------------------------------------------------------- data
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
