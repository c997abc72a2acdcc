"""Write the teaching notebooks (``notebooks/*.ipynb``) from their sources in ``notebooks/src/``.

The sources are jupytext percent-format Python files (``# %%`` code cells, ``# %% [markdown]`` text
cells, ``# %% tags=["parameters"]`` for the parameters cell); they are what ruff lints and what you edit.
The ``.ipynb`` files are built from them without outputs, with stable cell ids and a fixed kernel, so
rebuilding an unchanged source changes no byte. ``tests/notebooks/test_notebooks_run.py`` checks that
every stored notebook equals its build and runs each one headless with ``MR2_NB_QUICK=1``.

    python notebooks/build_notebooks.py                  # rebuild notebooks/*.ipynb
    python notebooks/build_notebooks.py OUT_DIR          # write them elsewhere (the test does)
    python notebooks/build_notebooks.py --student OUT    # student copies: no cell tagged "solution"

See ``notebooks/README.md`` for the workflow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
SOURCE_FORMAT = "py:percent"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
CELL_METADATA_KEPT = ("tags",)  # jupytext's own cell metadata (blank-line counts etc.) stays out
SOLUTION_TAG = "solution"  # cells with this tag are left out of the student copies


def sources(src_dir: Path = SOURCES) -> list[Path]:
    """The notebook sources, in name order (``NN_title.py``, one per notebook)."""
    return sorted(src_dir.glob("[0-9]*.py"))


def notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook built from one percent-format source: no outputs, ids ``cell-NN``, fixed metadata."""
    nb = jupytext.read(source, fmt=SOURCE_FORMAT)
    nb.metadata = nbformat.from_dict({"kernelspec": KERNEL, "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding an unchanged notebook changes no byte
        cell.metadata = nbformat.from_dict(
            {k: v for k, v in cell.metadata.items() if k in CELL_METADATA_KEPT}
        )
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """True for a cell tagged ``solution`` (``# %% tags=["solution"]`` in the source)."""
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def student_notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of ``source`` without its solution cells (questions, code and text stay)."""
    nb = notebook(source)
    nb.cells = [cell for cell in nb.cells if not is_solution(cell)]
    nbformat.validate(nb)
    return nb


def build(out_dir: Path = HERE, src_dir: Path = SOURCES, *, student: bool = False) -> list[Path]:
    """Write every notebook (no outputs) into ``out_dir``; return the paths.

    With ``student=True`` the solution cells are left out, and ``out_dir`` must not be the folder of
    the stored notebooks (a student copy must never replace a full one).
    """
    if student and Path(out_dir).resolve() == HERE:
        raise ValueError(f"out_dir={str(out_dir)!r}: expected a folder other than {HERE} for student copies")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    make = student_notebook if student else notebook
    paths = []
    for source in sources(src_dir):
        path = Path(out_dir) / f"{source.stem}.ipynb"
        text = nbformat.writes(make(source)) + "\n"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build notebooks/*.ipynb from notebooks/src/*.py.")
    parser.add_argument("out", nargs="?", type=Path, default=HERE, help=f"output folder (default {HERE})")
    parser.add_argument(
        "--student",
        metavar="OUT",
        type=Path,
        help="write student copies (no solution cells) into OUT",
    )
    args = parser.parse_args(argv)
    try:
        paths = build(args.student, student=True) if args.student else build(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
