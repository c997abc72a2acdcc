"""The wheel a user installs: only the project's own top-level names, the type markers and the licence,
and an install that imports and runs from a folder outside the repository (no source tree on the path).

Builds with ``pip wheel --no-deps --no-build-isolation`` (offline: the build backend comes from this
venv), installs with ``--no-deps`` into a fresh venv that sees this venv's dependencies through a
``.pth`` file (``--system-site-packages`` would only show the base interpreter's), then imports the
public API and runs ``mr2 --version`` there. About 10 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mr2", "mr2_core", "mr2_cli", "theory", "sims", "paper_figs")  # the installed top-level names
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE")
TIMEOUT_S = 120  # per subprocess; the whole test takes ~10 s on 2 busy cores

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a copy of the sources, so the build leaves no build/ or egg-info in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
          str(src)], cwd=src)  # fmt: skip
    (found,) = out.glob("mr2_margins-*.whl")
    return found


def test_wheel_holds_only_the_projects_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES), f"unexpected top-level names in {wheel.name}: {sorted(top - set(PACKAGES))}"
    for pkg in PACKAGES:
        assert f"{pkg}/py.typed" in names, f"{pkg}/py.typed missing from {wheel.name}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "mr2 = mr2_cli.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_imports_outside_the_repository(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
         cwd=tmp_path)  # fmt: skip
    # the fresh venv sees this venv's dependencies (torch, numpy, ...) through a .pth line; the .pth files
    # of that folder (this checkout's editable install) are not processed, so the checkout stays unseen
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    deps = sysconfig.get_paths()["purelib"]
    (Path(purelib.stdout.strip()) / "_mr2_test_deps.pth").write_text(deps + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    code = (
        "import pathlib, mr2, mr2_core.io, mr2_cli.cli, theory, sims, paper_figs\n"
        "from mr2 import MR2Loss, make_loss, LOSS_NAMES\n"
        "from mr2.models import Classifier\n"
        "from mr2.train import TrainConfig, train_run, run_study\n"
        f"root = pathlib.Path({str(ROOT)!r})\n"
        "for m in (mr2, mr2_core, mr2_cli, theory, sims, paper_figs):\n"
        "    p = pathlib.Path(m.__file__).resolve()\n"
        "    assert root not in p.parents, f'{m.__name__} imported from the checkout: {p}'\n"
        f"    assert pathlib.Path({str(env_dir)!r}).resolve() in p.parents, f'{{m.__name__}} from {{p}}'\n"
        "loss = make_loss('mr2', 3)\n"
        "print('ok', type(loss).__name__, len(LOSS_NAMES))\n"
    )
    out = _run([str(python), "-c", code], cwd=outside, env=env)
    assert out.stdout.strip().startswith("ok MR2Loss")
    version = _run([str(env_dir / "bin" / "mr2"), "--version"], cwd=outside, env=env)
    assert version.stdout.strip().startswith("mr2 "), version.stdout


def test_citation_and_licence_files():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert key in cff, f"CITATION.cff lacks {key}"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["version"] == project["version"], "CITATION.cff and pyproject.toml disagree on the version"
    (paper,) = cff["references"]
    assert "Margin Regularization" in paper["title"] and "2602.00205" in paper["url"]
    assert "MIT License" in (ROOT / "LICENSE").read_text().splitlines()[0]
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
