"""The layer order of docs/conventions.md (Layers), enforced over every import in the packages.

mr2_core (bottom) <- theory <- {sims, mr2} (side by side) <- paper_figs <- mr2_cli (top, imported by nothing).
An import may only point to the same layer or a lower one; ``sims`` and ``mr2`` never import each
other; nothing outside ``theory`` imports a private ``theory._x`` module; and the project's modules
import each other without a cycle. Every import counts, the ones inside functions too: a lazy import
is still a dependency. Entry-point modules (``__main__.py``) belong to the application layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> rank; a module may import packages of the same or a lower rank
LAYERS = {"mr2_core": 0, "theory": 1, "sims": 2, "mr2": 2, "paper_figs": 3, "mr2_cli": 4}
SIDE_BY_SIDE = {("sims", "mr2"), ("mr2", "sims")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of a project package in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYERS:
                found.append((name, node.lineno, id(node) in top_level))
    return found


def _sources() -> list[Path]:
    return sorted(p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py"))


def _layer_of(path: Path) -> str:
    return "mr2_cli" if path.name == "__main__.py" else path.relative_to(ROOT).parts[0]


def test_every_package_is_checked():
    missing = [pkg for pkg in LAYERS if not (ROOT / pkg / "__init__.py").is_file()]
    assert not missing, f"packages of the layer order without an __init__.py: {missing}"
    assert len(_sources()) > 50  # the walk found the code (it would pass vacuously otherwise)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downwards(path: Path):
    layer = _layer_of(path)
    wrong = []
    for name, line, _ in _imports(path):
        target = name.split(".")[0]
        if target == layer:
            continue
        if LAYERS[target] > LAYERS[layer] or (layer, target) in SIDE_BY_SIDE:
            wrong.append(f"line {line}: {layer} imports {name} ({target} is not below {layer})")
        if target == "theory" and any(part.startswith("_") for part in name.split(".")[1:]):
            wrong.append(f"line {line}: {name} is private to theory")
    assert not wrong, f"{path.relative_to(ROOT)}:\n" + "\n".join(wrong)


def test_no_import_cycles():
    """Module-level imports between the project's modules form a DAG (lazy imports may close loops
    only through a function body, which runs after both modules exist)."""
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p): p for p in _sources()}
    for mod, path in modules.items():
        by_line: dict[int, list[str]] = {}
        for name, line, top in _imports(path):
            if top:
                by_line.setdefault(line, []).append(name)
        deps = set()
        for names in by_line.values():
            # `from a.b import c` imports the submodule a.b.c when there is one (a.b's __init__ has
            # run by then), else it reads an attribute of a.b
            subs = [n for n in names[1:] if n in modules]
            for target in subs or [names[0] if names[0] in modules else names[0].rsplit(".", 1)[0]]:
                if target in modules and target != mod:
                    deps.add(target)
        graph[mod] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(state) == len(graph)


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The walk catches an upward import inside a function (the test can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from paper_figs import style\n    return style\n")
    assert [(n, top) for n, _, top in _imports(bad)] == [("paper_figs", False), ("paper_figs.style", False)]
