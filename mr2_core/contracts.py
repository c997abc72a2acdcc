"""The interfaces between the pillars, in one place: names, files and columns that one part of the
project writes and another reads.

Producers (``sims``, ``mr2.train``, the benchmarks), readers (``mr2.report``, ``paper_figs``, the
notebooks) and the tests import these instead of restating them, and ``tests/test_contracts.py``
checks that every producer's output carries the contract's columns. ``docs/CONTRACTS.md`` documents
the same names for people; this module is the copy the code uses.

Nothing here imports numpy, torch or pandas: the command line reads it to build ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "LOSSES",
    "MARGIN_FORMS",
    "Method",
    "METHODS",
    "METHOD_FAMILIES",
    "PALETTE_SIZE",
    "method",
    "method_overrides",
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
# MR2's two forms of the logit margin, the one home of this list (mr2.losses.MR2Loss reads it):
# "temperature" (the released code: logits / gamma_y) and "additive" (LDAM's form: z_y - gamma_y).
MARGIN_FORMS: tuple[str, ...] = ("temperature", "additive")


# ------------------------------------------------------------------------------------------ methods
# A method is what a study trains and a report compares: a name, the loss it trains with and the
# overrides it applies (config fields, or ``loss.<option>`` as in mr2.train.apply_overrides), a label,
# a colour and a family. Runs land in RUNS/<study>/<method>/seed<k>. Presets take their per-method
# overrides from here (mr2.train.presets), figures their colours and labels, mr2.losses.make_loss
# accepts every name (applying the ``loss.*`` options), and mr2.bench_train lists its methods from it.
METHOD_FAMILIES: tuple[str, ...] = ("baseline", "long-tail", "mr2", "mr2-variant", "released-code", "control")
# colours: an index into PALETTE_SIZE colours (paper_figs.style.method_palette: seaborn's colour-blind,
# dark, pastel, bright and muted palettes of 10, in that order), one per method
PALETTE_SIZE = 50


@dataclass(frozen=True)
class Method:
    """One registered method (see the section comment above)."""

    name: str
    loss: str  # one of LOSSES
    options: MappingProxyType  # overrides: config fields or "loss.<option>"
    label: str
    color: int  # index into the PALETTE_SIZE colours
    family: str  # one of METHOD_FAMILIES
    note: str = ""


_LDAM_COSINE = {"head": "cosine", "loss.s": 30.0}  # LDAM's head and scale, as its authors run it
_DRW_EPOCH = 24  # deferred re-weighting from epoch 24 of 30 (LDAM-DRW: 160 of 200)
_ORACLE = {"loss.statistic": "oracle", "loss.margin_form": "additive", "loss.exponent": 1.0}
# LDAM-DRW with its authors' optimisation (github.com/kaidic/LDAM-DRW, cifar_train.py): lr 0.1, weight
# decay 2e-4, plain momentum 0.9, warm-up over 5 of 200 epochs, lr x 0.01 after 160 and x 1e-4 after 180
# of 200 epochs (80% and 90%): here scaled to a 30-epoch run (warm-up 0.75 epochs, linear per step)
_LDAM_AUTHORS_OPT = {
    "lr": 0.1,
    "weight_decay": 2e-4,
    "nesterov": False,
    "schedule": "step",
    "lr_steps": [[0.8, 0.01], [0.9, 0.0001]],
    "warmup_epochs": 0.75,
}
# name: (loss, overrides, label, colour, family, note)
_METHOD_TABLE: dict[str, tuple[str, dict[str, Any], str, int, str, str]] = {
    # the losses themselves (a loss name is a method with no overrides)
    "ce": ("ce", {}, "CE", 0, "baseline", ""),
    "mr2": ("mr2", {}, "MR²", 1, "mr2", "the paper: a_k, temperature form, exponent 1/3"),
    "focal": ("focal", {}, "focal", 2, "baseline", ""),
    "ldam": ("ldam", {}, "LDAM", 3, "long-tail", ""),
    "cdb": ("cdb", {}, "CDB", 4, "baseline", ""),
    "mr2-logit": ("mr2-logit", {}, "MR² logit only", 5, "mr2", "ablation: no representation term"),
    "mr2-rep": ("mr2-rep", {}, "MR² rep. only", 6, "mr2", "ablation: no logit margins"),
    "mr2-official": (
        "mr2-official", {}, "MR² official code", 7, "released-code",
        "the released ImageNet script's configuration at K = 10: 1000 statistic slots, so the real "
        "classes' margins average 1000/K = 100, i.e. a temperature of ~100 on every logit",
    ),
    # baselines' variants
    "ce-normhead": ("ce", {"head": "normalized"}, "CE, normalised head", 8, "baseline", ""),
    "ce-drw": ("ce", {"loss.drw_epoch": _DRW_EPOCH}, "CE-DRW", 9, "long-tail", ""),
    "ldam-drw": (
        "ldam", {**_LDAM_COSINE, "loss.drw_epoch": _DRW_EPOCH}, "LDAM-DRW", 10, "long-tail",
        "cosine head, s = 30, DRW from epoch 24 of 30; the project's optimiser (Nesterov, cosine)",
    ),
    "ldam-drw-authors": (
        "ldam", {**_LDAM_COSINE, "loss.drw_epoch": _DRW_EPOCH, **_LDAM_AUTHORS_OPT},
        "LDAM-DRW, authors' optimiser", 11, "long-tail",
        "lr 0.1, wd 2e-4, plain momentum, step decay x0.01 at 80% and 90%, warm-up 5/200 of training",
    ),
    "ce-gap": ("ce", {"model": "small-cnn-gap"}, "CE, GAP CNN", 12, "baseline", "global-average-pooled CNN"),
    "ldam-drw-gap": (
        "ldam", {**_LDAM_COSINE, "loss.drw_epoch": _DRW_EPOCH, "model": "small-cnn-gap"},
        "LDAM-DRW, GAP CNN", 13, "long-tail", "global-average-pooled CNN",
    ),
    # MR2's margin rule with other statistics, forms and exponents (family "mr2-variant")
    "mr2-centred": ("mr2", {"loss.statistic": "centred"}, "MR² centred", 14, "mr2-variant", ""),
    "mr2-spread": ("mr2", {"loss.statistic": "spread"}, "MR² spread", 15, "mr2-variant", ""),
    "mr2-separation": (
        "mr2", {"loss.statistic": "separation"}, "MR² separation", 16, "mr2-variant",
        "a heuristic suggested by data, not a consequence of the bound",
    ),
    "mr2-e12": ("mr2", {"loss.exponent": 0.5}, "MR² exponent 1/2", 17, "mr2-variant", ""),
    "mr2-separation-e12": (
        "mr2", {"loss.statistic": "separation", "loss.exponent": 0.5}, "MR² separation, exp. 1/2", 18,
        "mr2-variant", "",
    ),
    "mr2-additive": ("mr2", {"loss.margin_form": "additive"}, "MR² additive", 19, "mr2-variant", ""),
    "mr2-separation-additive": (
        "mr2", {"loss.statistic": "separation", "loss.margin_form": "additive"},
        "MR² separation, additive", 20, "mr2-variant", "",
    ),
    "mr2-oracle-additive": (
        "mr2", _ORACLE, "MR² oracle share, additive", 21, "mr2-variant",
        "margins proportional to s_k / (s_k + s_j) against the nearest rival (two-Gaussian minimax)",
    ),
    "mr2-wise": (
        "mr2", {"merge_alpha": 0.6}, "MR² + WiSE-FT", 22, "mr2-variant", "merged with init_checkpoint",
    ),
    # the released code
    "mr2-official-cifar": (
        "mr2-official", {"loss.stat_slots": None, "loss.ema_decay": 0.9, "loss.rep_target": "zero"},
        "MR² official CIFAR script", 23, "released-code",
        "the released CIFAR script: K statistic slots, EMA 0.9, representation target 0, linear head",
    ),
    "mr2-official-wise": (
        "mr2-official", {"head": "normalized", "merge_alpha": 0.6},
        "MR² official, merged with random init (not WiSE-FT)", 25, "released-code",
        "kept to read old results: merges with randomly initialised weights, which is not WiSE-FT",
    ),
    # controls
    "mr2-shuffled": (
        "mr2", {"loss.statistic": "shuffled"}, "MR² shuffled (placebo)", 26, "control",
        "the derangement's seed is the run's seed: a mean over seeds averages over permutations",
    ),
}  # fmt: skip
# study-specific variants: training length (fmnist-length) and from-scratch runs (fmnist-finetune)
_LENGTH_BASES = {"ce": {}, "mr2": {}, "ldam": _LDAM_COSINE, "cdb": {}}
for _i, (_base, _e) in enumerate(
    [(b, e) for e in (10, 20) for b in _LENGTH_BASES] + [("ce", 40), ("mr2", 40)]
):
    _loss, _, _label, _, _family, _ = _METHOD_TABLE[_base]
    _METHOD_TABLE[f"{_base}-e{_e}"] = (
        _loss,
        {**_LENGTH_BASES[_base], "epochs": _e},
        f"{_label}, {_e} epochs",
        30 + _i,
        _family,
        "",
    )
for _i, _base in enumerate(("ce", "mr2")):
    _METHOD_TABLE[f"{_base}-scratch"] = (
        _base, {"init_checkpoint": None, "epochs": 30, "lr": 0.05, "warmup_epochs": 2.0},
        f"{_METHOD_TABLE[_base][2]} from scratch", 40 + _i, _METHOD_TABLE[_base][4], "no init_checkpoint",
    )  # fmt: skip
METHODS = MappingProxyType(
    {
        name: Method(name, loss, MappingProxyType(dict(opts)), label, color, family, note)
        for name, (loss, opts, label, color, family, note) in _METHOD_TABLE.items()
    }
)
LOSS_LABELS = MappingProxyType({name: METHODS[name].label for name in LOSSES})
# the colour index of every method (kept under its old name: it started as the losses' colours)
LOSS_COLOR_INDEX = MappingProxyType({name: m.color for name, m in METHODS.items()})


def method(name: str) -> Method:
    """The registered method ``name`` (ValueError naming the known ones otherwise)."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def method_overrides(name: str, *, probe: bool = False) -> dict[str, Any]:
    """The overrides a study applies for method ``name``: ``{"loss": ..., **options}``.

    ``probe``: for a linear probe on frozen features, where the representation term has no gradient,
    MR2 trains with its logit margins alone: loss ``"mr2"`` becomes ``"mr2-logit"``.
    """
    m = method(name)
    loss = "mr2-logit" if probe and m.loss == "mr2" else m.loss
    return {"loss": loss, **m.options}


def loss_label(name: str) -> str:
    """The display label of a method or loss (its name when it has none)."""
    return METHODS[name].label if name in METHODS else name


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
    # list of K: s_k / (s_k + s_j) against the nearest class mean j, SDs along the line joining the
    # means (the two-Gaussian worst-class share); written when K d^2 is small (mr2.train.evaluation)
    "class_oracle_share",
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
    "margin-vs-variance", "margin-vs-separation", "theory-vs-uniform", "bound-vs-gap", "temperature-regimes",
    "all",
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
        "temperature_regimes.csv": "temperature-regimes",
        "temperature_regimes_summary.csv": "temperature-regimes",
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
        "temperature_regimes.csv": (
            "separation", "ratio", "set", "boundary_shift", "share_below_crossover", "train_error",
            "recall_large", "recall_small",
        ),
        "temperature_regimes_summary.csv": (
            "separation", "ratio", "n_sets", "boundary_shift", "shift_ci_low", "shift_ci_high",
            "share_below_crossover", "train_error", "recall_large", "recall_small", "regime",
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
