"""The command line a newcomer meets: ``mr2 --version``, one ``--quick`` spelling, one ``--jobs``
default, ``train --help`` naming the default folder and the losses, ``--list`` readable with long names."""

from __future__ import annotations

import argparse

import pytest

import mr2
from mr2_cli import cli
from mr2_cli.commands import train as train_cmd
from mr2_core.contracts import LOSSES


def _sub(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mr2 {cli.version()}"
    assert cli.version().split(".")[0] == mr2.__version__.split(".")[0]


def test_one_quick_spelling_and_one_jobs_default():
    parser = cli.build_parser()
    quick = [name for name in cli.COMMANDS if "--quick" in _sub(name).format_help()]
    assert set(quick) >= {"demo", "simulate", "train", "figures"}, quick
    assert "--tiny" not in _sub("demo").format_help()  # the old spelling works, hidden
    assert parser.parse_args(["demo", "--tiny"]).quick is True
    defaults = {name: parser.parse_args([name, *extra]).jobs for name, extra in
                (("train", []), ("simulate", ["--preset", "all"]))}  # fmt: skip
    assert set(defaults.values()) == {1}, defaults


def test_train_help_names_the_default_folder_and_the_losses():
    text = " ".join(_sub("train").format_help().split())
    assert f"default {train_cmd.DEFAULT_OUT}/" in text
    assert all(loss in text for loss in LOSSES)
    assert "--quick" in text and f"at most {train_cmd.QUICK_EPOCHS} epochs" in text


def test_quick_shrinks_the_preset_and_the_user_wins():
    from mr2.train import get_preset

    preset = get_preset("fmnist-protocol")
    args = _sub("train").parse_args(["--preset", preset.name, "--quick"])
    train_cmd._shrink(preset, args)
    assert args.seeds == [preset.seeds[0]] and args.study == f"{preset.name}-quick"
    assert args.epochs == train_cmd.QUICK_EPOCHS
    assert f"max_train_samples={train_cmd.QUICK_TRAIN_SAMPLES}" in args.set
    mine = [
        "--preset",
        preset.name,
        "--quick",
        "--epochs",
        "5",
        "--seeds",
        "3",
        "--set",
        "max_train_samples=90",
    ]
    args = _sub("train").parse_args(mine)
    train_cmd._shrink(preset, args)
    assert (args.epochs, args.seeds, args.set) == (5, [3], ["max_train_samples=90"])


def test_list_keeps_long_names_apart(capsys):
    from mr2.train import Preset, TrainConfig

    name = "a-preset-name-far-past-fourteen-characters"
    methods = ("ce", "mr2-separation-additive")
    long = Preset(
        name=name, description="word " * 40, config=TrainConfig(), losses=methods, seeds=(0, 1, 2, 7)
    )
    train_cmd._print_presets([long])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == long.name  # a name on its own line, never run into its description
    assert all(line.startswith("    ") for line in lines[1:])
    assert max(map(len, lines)) <= 110
    assert "seeds: 0-2, 7" in lines[-1]
