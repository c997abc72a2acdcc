"""``python notebooks/build_notebooks.py --student OUT`` writes student copies: every cell tagged
``solution`` is gone, every other cell (every question) is there, unchanged and in order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
EXERCISE_NOTEBOOKS = ("04_exercises_margin_theory", "05_when_does_the_margin_rule_help")  # have solutions


def _build_module():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import build_notebooks
    finally:
        sys.path.pop(0)
    return build_notebooks


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    build = _build_module()
    out = tmp_path_factory.mktemp("student")
    student = {p.stem: nbformat.read(p, as_version=4) for p in build.build(out, student=True)}
    full = {p.stem: nbformat.read(p, as_version=4) for p in sorted(NOTEBOOKS.glob("*.ipynb"))}
    return full, student


def test_every_notebook_has_a_student_copy(copies):
    full, student = copies
    assert set(student) == set(full)


@pytest.mark.parametrize("name", EXERCISE_NOTEBOOKS)
def test_exercise_notebooks_tag_their_solutions(copies, name):
    full, _ = copies
    tagged = [c for c in full[name].cells if "solution" in _tags(c)]
    assert tagged, f"{name}: no cell tagged 'solution'"
    assert any(c.cell_type == "code" for c in tagged), f"{name}: no solution code cell is tagged"


def test_student_copies_have_no_solution_and_every_question(copies):
    full, student = copies
    for name, nb in full.items():
        copy = student[name]
        assert not [c.id for c in copy.cells if "solution" in _tags(c)], f"{name}: a solution cell is left"
        kept = [c for c in nb.cells if "solution" not in _tags(c)]
        assert [(c.id, c.cell_type, c.source) for c in copy.cells] == [
            (c.id, c.cell_type, c.source) for c in kept
        ], f"{name}: the student copy lost or changed a cell that is not a solution"
        questions = [
            c.source
            for c in nb.cells
            if c.cell_type == "markdown" and "Exercise" in c.source and "solution" not in _tags(c)
        ]
        copied = {c.source for c in copy.cells}
        assert all(q in copied for q in questions), f"{name}: a question is missing from the student copy"
    assert any(len(student[n].cells) < len(full[n].cells) for n in EXERCISE_NOTEBOOKS)


def test_student_build_refuses_the_notebooks_folder():
    build = _build_module()
    with pytest.raises(ValueError, match="out_dir"):
        build.build(NOTEBOOKS, student=True)


def test_student_option_on_the_command_line(tmp_path, capsys):
    build = _build_module()
    assert build.main(["--student", str(tmp_path / "copies")]) == 0
    written = sorted(p.name for p in (tmp_path / "copies").glob("*.ipynb"))
    assert written == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert str(tmp_path / "copies") in capsys.readouterr().out
