"""Every notebook is stored without outputs, equals what ``notebooks/build_notebooks.py`` builds from its
percent-format source in ``notebooks/src/``, and runs headless (nbclient) with the small parameters of
``MR2_NB_QUICK=1``; each one's wall time is printed (a cell stops after 300 s)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 300  # seconds per cell before nbclient gives up (generous: a loaded 2-core machine)


def _build_module():
    pytest.importorskip("jupytext")
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import build_notebooks
    finally:
        sys.path.pop(0)
    return build_notebooks


def _notebook_paths():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_at_least_four_notebooks():
    assert len(_notebook_paths()) >= 4, [p.name for p in _notebook_paths()]


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    sources = {p.stem for p in (NOTEBOOKS / "src").glob("*.py")}
    notebooks = {p.stem for p in _notebook_paths()}
    assert sources == notebooks, (
        f"only a source: {sorted(sources - notebooks)}; only a notebook: {sorted(notebooks - sources)}"
    )


@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_stored_without_outputs_and_matches_generator(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: stored with outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), (
        f"{path.name}: no parameters cell"
    )
    built = _build_module().build(tmp_path)
    fresh = {p.name: p.read_text() for p in built}
    assert fresh[path.name] == path.read_text(), (
        f"{path.name} differs from notebooks/src/{path.stem}.py: run python notebooks/build_notebooks.py"
    )


@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_headless(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MR2_NB_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel imports the packages of this checkout even when it runs from a scratch folder
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    # the wall time is reported, not asserted: on a loaded machine it measures the neighbours (the
    # per-cell timeout above still stops a notebook that hangs)
    print(f"{path.name}: {seconds:.0f} s")
