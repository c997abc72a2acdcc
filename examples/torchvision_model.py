"""Example 3: a torchvision model by name (`--set model=torchvision:<arch>`), with MR2.

`mr2 train` builds `torchvision:<arch>` with `torchvision.models.get_model(arch)`, replaces its last
linear layer by the toolkit's head, so that MR2 sees the penultimate features, and repeats grey images
to 3 channels (mr2/models.py). In a shell:

    mr2 train --preset digits-smoke --quick --set model=torchvision:resnet18 --set input_size=32 \\
        --study tv-resnet18 --out runs
    mr2 report runs/tv-resnet18

(`--set pretrained=true` loads the library's weights where they are cached or downloadable;
`--set freeze_backbone=true` trains the head only; `timm:<arch>` works the same way with timm.)

torchvision is optional (the `vision` extra: pip install torchvision, built for your torch). Without a
torchvision that imports, this script says so and exits with status 2 before training.
"""

from __future__ import annotations

import argparse
import sys

from mr2_cli.cli import main as mr2_cli


def torchvision_problem() -> str | None:
    """Why torchvision cannot be used here, or None when it imports."""
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - not installed, or built for another torch: both unusable
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", help="a torchvision.models name (default resnet18)")
    parser.add_argument("--out", default="results/example-torchvision", help="runs folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--plots", action="store_true", help="let mr2 report draw its figures too")
    args = parser.parse_args(argv)
    problem = torchvision_problem()
    if problem is not None:
        print(
            f"torchvision is not usable here ({problem}); install it for your torch version "
            "(pip install torchvision, or the project's 'vision' extra) to build models by name",
            file=sys.stderr,
        )
        return 2
    study = f"tv-{args.arch}"
    train = [
        "train", "--preset", "digits-smoke", "--quick", "--set", f"model=torchvision:{args.arch}",
        "--set", "input_size=32", "--study", study, "--out", args.out, "--epochs", str(args.epochs),
    ]  # fmt: skip
    rc = mr2_cli(train)
    if rc != 0:
        return rc
    return mr2_cli(["report", f"{args.out}/{study}"] + ([] if args.plots else ["--no-plots"]))


if __name__ == "__main__":
    sys.exit(main())
