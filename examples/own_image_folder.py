"""Example 2: your own image folder through the command line (`mr2 train --set dataset=folder`).

The folder holds one sub-folder per class under train/ and test/ (a validation split is held out of
train/, stratified, for model selection):

    DIR/train/<class>/<image>.png    DIR/test/<class>/<image>.png

Any Pillow-readable image works (png, jpg, ...); images are converted to grey (image_channels=1) or RGB
(3) and resized to image_size x image_size. The commands this script runs are, in a shell:

    mr2 train --preset digits-smoke --data-dir DIR --set dataset=folder --set image_channels=1 \\
        --set image_size=16 --study my-images --out runs --loss ce mr2 --seeds 0 1
    mr2 report runs/my-images

digits-smoke lends its small CNN and optimiser; --set changes any field (mr2 train --help, docs/training.md).
Without your own images, `--make-demo DIR` first writes scikit-learn's digits as PNG files into DIR:

    python examples/own_image_folder.py --make-demo data/digits-png --out results/example-folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mr2_cli.cli import main as mr2_cli

STUDY = "my-images"


def make_demo_folder(root: str | Path, per_class: int | None = None, seed: int = 0) -> Path:
    """Write scikit-learn's digits as 8-bit grey PNGs into root/{train,test}/<digit>/ (80/20, stratified);
    ``per_class`` keeps at most that many training images per class (test: a quarter of it)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    images = np.round(x.reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(images, y, test_size=0.2, stratify=y, random_state=seed)
    root = Path(root)
    for split, imgs, labels in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        limit = None if per_class is None else (per_class if split == "train" else max(1, per_class // 4))
        for k in range(10):
            folder = root / split / f"digit-{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(imgs[labels == k][:limit]):
                Image.fromarray(img, mode="L").save(folder / f"{i:04d}.png")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="your image folder (DIR/train/<class>/..., DIR/test/<class>/...)")
    parser.add_argument("--make-demo", metavar="DIR", help="write digits as PNGs into DIR and train on them")
    parser.add_argument("--per-class", type=int, help="with --make-demo: training images per class (all)")
    parser.add_argument("--out", default="results/example-folder", help="runs folder")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0 1", help="seeds, space-separated")
    parser.add_argument("--plots", action="store_true", help="let mr2 report draw its figures too")
    args = parser.parse_args(argv)
    if args.make_demo:
        args.data_dir = str(make_demo_folder(args.make_demo, args.per_class))
    if not args.data_dir:
        parser.error("pass --data-dir DIR (your images) or --make-demo DIR")
    train = [
        "train", "--preset", "digits-smoke", "--data-dir", args.data_dir, "--set", "dataset=folder",
        "--set", "image_channels=1", "--set", "image_size=16", "--study", STUDY, "--out", args.out,
        "--loss", "ce", "mr2", "--seeds", *args.seeds.split(), "--epochs", str(args.epochs),
    ]  # fmt: skip
    rc = mr2_cli(train)
    if rc != 0:
        return rc
    return mr2_cli(["report", f"{args.out}/{STUDY}"] + ([] if args.plots else ["--no-plots"]))


if __name__ == "__main__":
    sys.exit(main())
