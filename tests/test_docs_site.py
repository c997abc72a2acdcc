"""The documentation site builds with one command, warnings as errors: ``bash scripts/build-docs.sh OUT``
(mkdocs --strict: the docs pages, an API reference from the docstrings, the notebooks).

Here the notebooks are rendered from their stored sources without executing them
(``MR2_DOCS_EXECUTE=false``): ``tests/notebooks/test_notebooks_run.py`` already executes each one
with the same quick parameters, and executing all of them again would add minutes to the suite. The
build's other failure modes (links, nav, docstrings griffe cannot parse, notebook conversion) are all
checked, in strict mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 600  # seconds; without notebook execution the build takes ~45 s on a loaded 2-core machine
DOCS_TOOLS = ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter", "material")


def test_the_docs_tools_are_an_extra_that_setup_installs():
    pyproject = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r"^docs = \[(.*)\]$", pyproject, re.MULTILINE)
    assert extra, "pyproject.toml has no optional extra 'docs'"
    for tool in ("mkdocs", "mkdocstrings[python]", "mkdocs-jupyter", "mkdocs-material"):
        assert f'"{tool}' in extra.group(1), f"the docs extra lacks {tool}"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    installs = [line for line in setup.splitlines() if "pip install" in line and "-e" in line]
    assert any("docs" in re.search(r"\[([^\]]*)\]", line).group(1).split(",") for line in installs), installs


def test_every_notebook_and_package_is_in_the_site():
    config = (ROOT / "mkdocs.yml").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{nb.name}" in config, f"{nb.name} is not in mkdocs.yml's nav"
    script = (ROOT / "scripts" / "build-docs.sh").read_text()
    for pkg in ("mr2_core", "theory", "sims", "mr2", "paper_figs", "mr2_cli"):
        assert f"api/{pkg}.md" in config and pkg in script, f"no API page for {pkg}"


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path):
    for tool in DOCS_TOOLS:
        pytest.importorskip(tool)
    out = tmp_path / "site"
    env = dict(
        os.environ, PYTHON=sys.executable, MR2_NB_QUICK="1", MR2_DOCS_EXECUTE="false", MPLBACKEND="Agg"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-docs.sh"), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    print(f"docs site: {seconds:.0f} s")
    assert (out / "index.html").is_file()
    theory_api = (out / "api" / "theory.html").read_text()
    assert "optimal_margins" in theory_api and "gain_over_uniform" in theory_api
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = out / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), f"{nb.name} has no page"
    derivation = (out / "notebooks" / "01_margin_bound_derivation.html").read_text()
    assert "READING_GUIDE" in derivation  # the notebook's code is on its page
    assert (out / "docs" / "setup.html").is_file()
