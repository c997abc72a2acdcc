"""A training study on disk, read once and checked: ``RUNS/<study>/<loss>/seed<k>/metrics.json``.

One reader (:func:`load_study`) and its views, so that the report, the figures and the notebooks read
the same numbers the same way:

* :func:`load_study`: one row per run, every ``metrics.json`` key a column (per-class lists stay
  lists), plus ``path``; each file is checked against ``mr2_core.contracts`` and a file of the wrong
  shape is a ``ValueError`` naming the file and the key.
* :func:`selection_rules` and :func:`select`: the runs as selected by one model-selection rule
  (``SELECTION_RULES``: best validation accuracy, best worst-class validation accuracy, last epoch),
  from each run's ``selections`` when it has them, else from its top-level numbers when its
  ``select_metric`` is that rule.
* :func:`per_class_table`: the long table, one row per (loss, seed, class), that the per-class
  statistics and figures use.
* :func:`split_settings` (called by :func:`load_study`): runs are pooled over seeds only when they
  ran the same experiment. Each run's ``config.json`` (its config and its data record) minus the seed
  and the fields that do not change the numbers (``SETTING_FREE_FIELDS``) is its setting. Runs of one
  method with different settings are split: the setting with the most seeds keeps the method's name,
  the others are reported as ``<method>@<field>=<value>,...``, and the report says so at its top.
  Runs on other data (``DATA_FIELDS``, the data record) than the baseline's are refused: no test
  pairs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mr2_core.checks import bad
from mr2_core.contracts import (
    BASELINE_LOSS,
    CONFIG_FILE,
    LOSSES,
    METRICS_FILE,
    SELECTION_KEYS,
    SELECTION_RULES,
    SUMMARY_METRICS,
)
from mr2_core.io import read_json

__all__ = [
    "CONFIGURED",
    "SPREAD_KEYS",
    "SETTING_FREE_FIELDS",
    "METHOD_FIELDS",
    "DATA_FIELDS",
    "load_study",
    "split_settings",
    "selection_rules",
    "select",
    "per_class_table",
]

# rule label of top-level numbers whose run does not record its select_metric
CONFIGURED = "configured"
# per-class statistics of the features of the top-level (select_metric's) model
SPREAD_KEYS: tuple[str, ...] = (
    "class_spread", "class_mean_norm2", "class_within_spread", "class_centred_spread", "class_separation",
    "class_oracle_share",
)  # fmt: skip
_SCALARS: tuple[str, ...] = ("margin_min", "margin_max")
# config.json fields that do not change an experiment's numbers: the seed (what a study pools over),
# where a run reads and writes, on what device and how fast it runs, how it logs. The one list.
SETTING_FREE_FIELDS = frozenset(
    {"seed", "study", "data_dir", "device", "compile", "log_every", "eval_batch_size", "save_model"}
)
# fields that define a method: they differ between the methods of a study by design
METHOD_FIELDS = frozenset({"method", "loss", "loss_options"})
# fields that define the data (and the test split): runs on different data are never paired
DATA_FIELDS = frozenset(
    {"dataset", "val_fraction", "split_seed", "max_train_samples", "train_subset", "imbalance_ratio",
     "image_channels", "image_size", "input_size"}
)  # fmt: skip
_DATA_RECORD_FREE = frozenset({"source"})  # the data record's file path
# loss options that follow the run's seed by design (the placebo's permutation): not a setting when equal
SEED_OPTIONS = frozenset({"shuffle_seed"})


def _vector(path: Path, key: str, value: Any, k: int | None, *, unit: bool = False) -> list[float]:
    """``value`` as a list of ``k`` finite floats (in [0, 1] when ``unit``), or a ValueError naming
    the file and the key."""
    what = f"a list of {k if k is not None else 'K >= 2'} finite numbers" + (" in [0, 1]" if unit else "")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise bad(f"{path}: {key}", value, what) from None
    ok = arr.ndim == 1 and (arr.size == k if k is not None else arr.size >= 2) and np.all(np.isfinite(arr))
    if not ok or (unit and np.any((arr < 0) | (arr > 1))):
        raise bad(f"{path}: {key}", value, what + " (one per class, like the study's other runs)")
    return arr.tolist()


def _number(path: Path, key: str, value: Any, *, unit: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise bad(f"{path}: {key}", value, "a finite number")
    if unit and not 0 <= value <= 1:
        raise bad(f"{path}: {key}", value, "a fraction in [0, 1]")
    return float(value)


def _check_numbers(path: Path, where: str, entry: dict, k: int | None) -> int:
    """Check the per-class accuracies and their summaries in ``entry`` (a run's top level or one of
    its selections); return K."""
    acc = _vector(path, f"{where}per_class_accuracy", entry.get("per_class_accuracy"), k, unit=True)
    for key in SUMMARY_METRICS:
        if key not in entry:
            raise bad(f"{path}: {where}{key}", None, "a number (metrics.json from mr2 train hold it)")
        _number(path, f"{where}{key}", entry[key], unit=key != "class_accuracy_std")
    return len(acc)


def _check_run(path: Path, m: Any, k: int | None) -> int:
    """Check one metrics.json against the contract (mr2_core.contracts); return its K."""
    if not isinstance(m, dict):
        raise bad(str(path), type(m).__name__, "a JSON object of metrics (a dict), as mr2 train writes")
    k = _check_numbers(path, "", m, k)
    names = m.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != k):
        raise bad(f"{path}: class_names", names, f"a list of {k} class names")
    for key in SPREAD_KEYS:
        if key in m:
            _vector(path, key, m[key], k)
    for key in _SCALARS:
        if key in m:
            _number(path, key, m[key])
    if "selections" in m:
        sel = m["selections"]
        if not isinstance(sel, dict) or not set(sel) <= set(SELECTION_RULES):
            raise bad(
                f"{path}: selections", sel, f"a dict {{rule: {{...}}}} with rules among {SELECTION_RULES}"
            )
        for rule, entry in sel.items():
            if not isinstance(entry, dict):
                raise bad(f"{path}: selections.{rule}", entry, f"a dict with the keys {SELECTION_KEYS}")
            _check_numbers(path, f"selections.{rule}.", entry, k)
            epoch = entry.get("selected_epoch")
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise bad(f"{path}: selections.{rule}.selected_epoch", epoch, "an epoch index >= 0")
    return k


def load_study(
    study_dir: str | os.PathLike, losses: tuple[str, ...] | list[str] | None = None
) -> pd.DataFrame:
    """One row per finished run under ``study_dir/<loss>/seed<k>/metrics.json``, checked.

    Args:
        study_dir: the study folder ``RUNS/<study>``.
        losses: keep only these losses (folder names); all when None.

    Returns:
        pandas DataFrame with columns ``loss, seed, path`` and every ``metrics.json`` key (per-class
        lists stay lists), sorted by loss (``mr2_core.contracts.LOSSES`` order, others after) and seed.
        ``loss``/``seed`` come from the file, else from its folder names.

    Raises:
        ValueError: no such folder, no finished run, a file that is not JSON, or a file whose keys
            have the wrong type or length (the message names the file and the key), two files of
            one (loss, seed), runs with different numbers of classes, or runs on other data than the
            baseline's (:func:`split_settings`).

    The runs of one method with different settings (``config.json``) are split apart and named
    ``<method>@<field>=<value>``; ``frame.attrs["notes"]`` says so, for the report's top.
    """
    root = Path(study_dir)
    if not root.is_dir():
        raise bad("study_dir", str(root), "a folder of runs <loss>/seed<k>/metrics.json (from mr2 train)")
    files = sorted(root.glob(f"*/seed*/{METRICS_FILE}"))
    if losses is not None:
        files = [f for f in files if f.parent.parent.name in set(losses)]
    if not files:
        want = f" of the losses {list(losses)}" if losses is not None else ""
        raise bad(
            "study_dir", str(root), f"a folder holding finished runs{want} (<loss>/seed<k>/metrics.json)"
        )
    rows, k = [], None
    for f in files:
        try:
            m = read_json(f)  # names the file when the JSON is corrupt
        except UnicodeDecodeError as exc:
            raise ValueError(f"{f}: not a readable JSON file ({exc})") from None
        k = _check_run(f, m, k)
        seed = m.get("seed", f.parent.name.removeprefix("seed"))
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise bad(f"{f}: seed", seed, "an integer seed") from None
        rows.append({**m, "loss": str(m.get("loss", f.parent.parent.name)), "seed": seed, "path": str(f),
                     "_setting": _setting(f.parent / CONFIG_FILE)})  # fmt: skip
    frame = pd.DataFrame(rows)
    dup = frame.duplicated(["loss", "seed"], keep=False)
    if dup.any():
        raise bad(
            "study_dir", str(root), f"one run per (loss, seed); twice: {sorted(frame.loc[dup, 'path'])}"
        )
    frame, notes = split_settings(frame)
    order = {name: i for i, name in enumerate(LOSSES)}
    frame["_order"] = frame["loss"].map(lambda n: order.get(n.split("@")[0], len(order)))
    frame = frame.sort_values(["_order", "loss", "seed"]).drop(columns="_order").reset_index(drop=True)
    frame.attrs["notes"] = notes
    return frame


def _setting(path: Path) -> dict[str, Any] | None:
    """The run's setting from its ``config.json``: the config minus ``SETTING_FREE_FIELDS`` plus the
    data record (``data.<key>``); None when the run has no config.json."""
    if not path.is_file():
        return None
    rec = read_json(path)
    cfg = rec.get("config") if isinstance(rec, dict) else None
    if not isinstance(cfg, dict):
        raise bad(str(path), type(cfg).__name__, "a config.json with a 'config' object (as mr2 train writes)")
    out = {k: v for k, v in cfg.items() if k not in SETTING_FREE_FIELDS}
    if isinstance(out.get("loss_options"), dict):  # a seed-derived option varies with the seed only
        out["loss_options"] = {
            k: v for k, v in out["loss_options"].items() if not (k in SEED_OPTIONS and v == cfg.get("seed"))
        }
    if isinstance(out.get("init_checkpoint"), str):  # where RUNS/ lies is not part of the backbone
        out["init_checkpoint"] = "/".join(Path(out["init_checkpoint"]).parts[-4:])
    data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
    out.update({f"data.{k}": v for k, v in data.items() if k not in _DATA_RECORD_FREE})
    return out


def _differ(a: dict, b: dict, keys: Any = None) -> list[str]:
    """The fields both settings record and that differ (a run written before a field existed does not
    record it, and is not told apart by it)."""
    both = set(a) & set(b) if keys is None else set(a) & set(b) & set(keys)
    return sorted(k for k in both if a[k] != b[k])


def _is_data(key: str) -> bool:
    return key in DATA_FIELDS or key.startswith("data.")


def split_settings(runs: pd.DataFrame, baseline: str = BASELINE_LOSS) -> tuple[pd.DataFrame, list[str]]:
    """Split each method's runs by setting (module docstring); return the runs and the notes.

    Args:
        runs: one row per run with ``loss`` and ``_setting`` (:func:`_setting`; None: no config.json).
        baseline: the method whose data every other run must share.

    Returns:
        ``(runs, notes)``: ``runs`` with ``loss`` renamed ``<method>@<field>=<value>,...`` for every
        setting of a method but its largest (most seeds; the one with the lowest seed on a tie),
        ``_setting`` dropped; ``notes``: one sentence per split or unchecked run, for the report's top.

    Raises:
        ValueError: a run on other data than the baseline's (or than its method's first setting when
            the study has no baseline), naming the runs and the fields.
    """
    runs = runs.copy()
    notes: list[str] = []
    settings = runs.pop("_setting") if "_setting" in runs else pd.Series([None] * len(runs), index=runs.index)
    missing = settings.isna()
    if missing.all():
        return runs, ["no run has a config.json: the runs' settings could not be checked before pooling"]
    if missing.any():
        notes.append(f"{int(missing.sum())} runs have no config.json: their settings could not be checked "
                     f"before pooling ({', '.join(sorted(runs.loc[missing, 'path'])[:3])}...)")  # fmt: skip
    has = runs[~missing]
    ref_rows = has[has["loss"] == baseline] if (has["loss"] == baseline).any() else has
    ref = settings[ref_rows.sort_values("seed").index[0]]
    data_keys = [k for k in set(ref) if _is_data(k)]
    odd = [(i, _differ(settings[i], ref, data_keys)) for i in has.index]
    odd = [(i, d) for i, d in odd if d]
    if odd:
        shown = "; ".join(f"{runs.at[i, 'path']} ({', '.join(f'{k}={settings[i].get(k)!r}' for k in d[:3])})"
                          for i, d in odd[:3])  # fmt: skip
        fields = ", ".join(odd[0][1])
        raise bad(
            "study_dir", str(Path(runs["path"].iloc[0]).parents[2]),
            f"runs on the same data as the baseline's ({fields} differ): move the others to their own study "
            f"folder; {len(odd)} runs differ: {shown}",
        )  # fmt: skip
    for loss in list(dict.fromkeys(has["loss"])):
        idx = has.index[has["loss"] == loss]
        found: list[list[int]] = []  # runs whose settings agree with the group's first run
        for i in idx:
            grp = next((g for g in found if not _differ(settings[g[0]], settings[i])), None)
            if grp is None:
                found.append([i])
            else:
                grp.append(i)
        if len(found) == 1:
            continue
        groups = sorted(found, key=lambda g: (-len(g), min(runs.loc[g, "seed"])))
        main = settings[groups[0][0]]
        for grp in groups[1:]:
            diff = _differ(settings[grp[0]], main)
            name = f"{loss}@" + ",".join(f"{k}={settings[grp[0]].get(k)}" for k in diff)
            runs.loc[grp, "loss"] = name
            changes = ", ".join(f"{k}: {main.get(k)!r} -> {settings[grp[0]].get(k)!r}" for k in diff)
            notes.append(
                f"{len(grp)} run(s) of {loss} (seeds {sorted(runs.loc[grp, 'seed'])}) differ from its other "
                f"{len(groups[0])} in {changes}; they are not pooled with them and are reported apart as "
                f"`{name}`."
            )
    return runs, notes


def _top_rule(row: pd.Series) -> str:
    rule = row.get("select_metric")
    return rule if isinstance(rule, str) else CONFIGURED


def _selections(row: pd.Series) -> dict:
    sel = row.get("selections")
    return sel if isinstance(sel, dict) else {}


def selection_rules(runs: pd.DataFrame) -> tuple[str, ...]:
    """The rules the runs can be reported under: every rule some run records in ``selections``, and
    the ``select_metric`` of runs without them (``CONFIGURED`` when that is not recorded either), in
    ``SELECTION_RULES`` order."""
    found = set()
    for _, row in runs.iterrows():
        sel = _selections(row)
        found |= set(sel) if sel else {_top_rule(row)}
    return tuple(r for r in (*SELECTION_RULES, CONFIGURED) if r in found)


def select(runs: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The runs as chosen by the model-selection ``rule``.

    For each run: its ``selections[rule]`` numbers (``SELECTION_KEYS``) replace the top-level ones;
    a run without that entry keeps its top level if its ``select_metric`` is ``rule``, and is left
    out otherwise. Where the rule picked another model than the top level's, the feature statistics
    (``SPREAD_KEYS``, measured on the top-level model) are set to None, so they are never paired with
    another model's accuracies.

    Returns:
        a copy of ``runs`` (those that have ``rule``) with a ``selection`` column.

    Raises:
        ValueError: no run has ``rule``; the message lists the rules the runs have.
    """
    keep, rows = [], []
    for i, row in runs.iterrows():
        sel = _selections(row)
        if rule in sel:
            new = row.copy()
            for key in SELECTION_KEYS:
                if key in sel[rule]:
                    new[key] = sel[rule][key]
            if _top_rule(row) != rule:
                for key in SPREAD_KEYS:
                    if key in new.index:
                        new[key] = None
            rows.append(new)
            keep.append(i)
        elif _top_rule(row) == rule:
            rows.append(row)
            keep.append(i)
    if not rows:
        raise bad("selection", rule, f"a rule the runs record: one of {list(selection_rules(runs))}")
    out = pd.DataFrame(rows, index=keep)
    out["selection"] = rule
    return out.reset_index(drop=True)


def per_class_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The long table of per-class numbers, one row per (loss, seed, class).

    Args:
        runs: :func:`load_study`'s table, or a :func:`select` view of it.

    Returns:
        pandas DataFrame with columns ``loss, seed, class_index, class_name, accuracy, error, spread,
        rel_spread, dataset``: ``error = 1 - accuracy``; ``spread`` is the run's a_k
        (``class_spread``; NaN when absent) and ``rel_spread`` a_k over the run's mean a_k, since
        feature scales differ between models.
    """
    frames = []
    for _, r in runs.iterrows():
        acc = np.asarray(r["per_class_accuracy"], dtype=np.float64)
        k = acc.size
        raw = r.get("class_spread")
        spread = (
            np.asarray(raw, dtype=np.float64) if isinstance(raw, (list, np.ndarray)) else np.full(k, np.nan)
        )
        names = r.get("class_names")
        names = names if isinstance(names, list) else [str(i) for i in range(k)]
        dataset = r.get("dataset")
        frames.append(
            pd.DataFrame(
                {
                    "loss": r["loss"],
                    "seed": int(r["seed"]),
                    "class_index": np.arange(k),
                    "class_name": [str(n) for n in names],
                    "accuracy": acc,
                    "error": 1.0 - acc,
                    "spread": spread,
                    "rel_spread": spread / np.mean(spread),
                    "dataset": dataset if isinstance(dataset, str) else "unknown",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
