"""The repository stands alone (docs/conventions.md, Layers): no tracked file points to notes that live
outside it, and every relative link in the Markdown docs reaches a file of the checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Pointers to notes kept outside the repository, spelt in pieces so that this file does not match itself.
# File names match case-sensitively (docs/method.md is ours), phrases in any case.
FORBIDDEN_NAMES = ("METHOD" + ".md", "STYLE" + ".md", "SETUP" + "-NOTES")
FORBIDDEN_PHRASES = (".." + "/shared", "house" + " style")
EXEMPT_DIRS = (".ci/",)  # the CI runner is not part of the project's text
# [text](target) and ![alt](target); the target ends at whitespace or ")"
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)  # http:, mailto:, //host, #anchor


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if out.returncode != 0:
        pytest.skip(f"git ls-files failed: {out.stderr.decode(errors='replace').strip()}")
    return [f for f in out.stdout.decode().split("\0") if f]


def forbidden_mentions(text: str) -> list[tuple[int, str]]:
    """(line number, forbidden string) for every pointer to outside notes in ``text``."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        hits += [(number, name) for name in FORBIDDEN_NAMES if name in line]
        hits += [(number, phrase) for phrase in FORBIDDEN_PHRASES if phrase in line.lower()]
    return hits


def broken_links(markdown: str, source: Path) -> list[str]:
    """Relative link targets in ``markdown`` (a file at ``source``) that name no existing file or folder."""
    broken = []
    for target in MARKDOWN_LINK.findall(markdown):
        if EXTERNAL.match(target):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if path and not (source.parent / path).exists():
            broken.append(target)
    return broken


def test_forbidden_mentions_finds_each_pointer_and_nothing_else():
    method, style, notes = FORBIDDEN_NAMES
    shared, house = FORBIDDEN_PHRASES
    lines = ["nothing here", f"see {shared.upper()}/x", house.title() + ", rule 4", f"{method} and {style}"]
    lines += [notes, "docs/method.md, docs/style.md and setup-notes are fine", "the shared machine"]
    expected = [(2, shared), (3, house), (4, method), (4, style), (5, notes)]
    assert forbidden_mentions("\n".join(lines)) == expected


def test_no_tracked_file_points_outside_the_repository():
    hits = []
    for name in _tracked_files():
        if name.startswith(EXEMPT_DIRS):
            continue
        path = ROOT / name
        if not path.is_file():  # deleted in the work tree but not yet from the index
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images, PDFs
            continue
        hits += [f"{name}:{n}: {word}" for n, word in forbidden_mentions(text)]
    assert not hits, "pointers to notes outside the repository:\n" + "\n".join(hits)


def test_broken_links_finds_a_missing_file_and_accepts_the_rest(tmp_path):
    (tmp_path / "there.md").write_text("x")
    (tmp_path / "sub").mkdir()
    page = tmp_path / "page.md"
    text = (
        "[ok](there.md) [anchor](there.md#part) [dir](sub/) ![img](there.md) [web](https://example.org/x.md) "
        "[local](#top) [mail](mailto:a@b.c) [gone](missing.md) [gone too](sub/nothing.png#x)"
    )
    assert broken_links(text, page) == ["missing.md", "sub/nothing.png#x"]


def _markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", _markdown_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_markdown_links_resolve(page):
    assert page.is_file(), f"{page} is missing"
    broken = broken_links(page.read_text(encoding="utf-8"), page)
    assert not broken, f"{page.relative_to(ROOT)} links to files that do not exist: {broken}"
