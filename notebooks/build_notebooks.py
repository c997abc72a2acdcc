"""Write the teaching notebooks (``notebooks/*.ipynb``) from their sources in ``notebooks/src/``.

The sources are jupytext percent-format Python files (``# %%`` code cells, ``# %% [markdown]`` text
cells, ``# %% tags=["parameters"]`` for the parameters cell); they are what ruff lints and what you edit.
The ``.ipynb`` files are built from them without outputs, with stable cell ids and a fixed kernel, so
rebuilding an unchanged source changes no byte. ``tests/notebooks/test_notebooks_run.py`` checks that
every stored notebook equals its build and runs each one headless with ``MR2_NB_QUICK=1``.

    python notebooks/build_notebooks.py            # rebuild notebooks/*.ipynb
    python notebooks/build_notebooks.py OUT_DIR    # write them elsewhere (the test does)

See ``notebooks/README.md`` for the workflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
SOURCE_FORMAT = "py:percent"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
CELL_METADATA_KEPT = ("tags",)  # jupytext's own cell metadata (blank-line counts etc.) stays out


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


def build(out_dir: Path = HERE, src_dir: Path = SOURCES) -> list[Path]:
    """Write every notebook (no outputs) into ``out_dir``; return the paths."""
    paths = []
    for source in sources(src_dir):
        path = out_dir / f"{source.stem}.ipynb"
        text = nbformat.writes(notebook(source)) + "\n"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
