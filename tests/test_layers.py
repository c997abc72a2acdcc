"""The layer order of docs/conventions.md (Layers), enforced over every import in the packages.

mr2_core (bottom) <- theory <- {sims, mr2} (side by side) <- paper_figs <- mr2_cli (top, imported by nothing).
An import may only point to the same layer or a lower one; ``sims`` and ``mr2`` never import each
other; nothing outside ``theory`` imports a private ``theory._x`` module; and the project's modules
import each other without a cycle. Every import counts, the ones inside functions too: a lazy import
is still a dependency (for the layers and for the cycles); only imports under ``if TYPE_CHECKING:``,
which never run, are left out of the cycle check. Entry-point modules (``__main__.py``) belong to the
application layer.
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


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) block."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                hidden |= {id(sub) for stmt in node.body for sub in ast.walk(stmt)}
    return hidden


def _imports(path: Path, *, runtime_only: bool = False) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of a project package in ``path``;
    with ``runtime_only``, without the imports under ``if TYPE_CHECKING:`` (they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    hidden = _type_checking_only(tree) if runtime_only else set()
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
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


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports at run time, at module level or inside a function."""
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        by_node: dict[int, list[str]] = {}
        for name, line, top in _imports(path, runtime_only=True):
            by_node.setdefault((line, top), []).append(name)
        deps = set()
        for names in by_node.values():
            # `from a.b import c` imports the submodule a.b.c when there is one (a.b's __init__ has
            # run by then), else it reads an attribute of a.b
            subs = [n for n in names[1:] if n in modules]
            for target in subs or [names[0] if names[0] in modules else names[0].rsplit(".", 1)[0]]:
                if target in modules and target != mod:
                    deps.add(target)
        graph[mod] = deps
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    """The project's modules import each other without a cycle, counting the imports made inside
    functions: a lazy import that closes a loop is still a cycle of dependencies (it only hides it
    from the interpreter until the function runs)."""
    modules = {_module_name(p): p for p in _sources()}
    graph = _import_graph(modules)
    assert len(graph) == len(modules)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_a_lazy_cycle(tmp_path):
    """Two modules whose only link back is an import inside a function form a cycle (the test can
    fail), and removing that import removes it."""
    pkg = tmp_path / "theory"
    pkg.mkdir()
    a, b = pkg / "a.py", pkg / "b.py"
    a.write_text("from theory.b import g\n\n\ndef f():\n    return g()\n")
    b.write_text("def g():\n    from theory.a import f\n    return f\n")
    modules = {"theory.a": a, "theory.b": b}
    assert _find_cycle(_import_graph(modules)) == ["theory.a", "theory.b", "theory.a"]
    b.write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from theory.a import f\n")
    assert _find_cycle(_import_graph(modules)) is None  # a type-only import never runs


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The walk catches an upward import inside a function (the test can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from paper_figs import style\n    return style\n")
    assert [(n, top) for n, _, top in _imports(bad)] == [("paper_figs", False), ("paper_figs.style", False)]
