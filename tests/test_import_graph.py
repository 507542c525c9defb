"""The stages import one way: cli -> export, train, distill -> models -> sdk.

Walks every import statement of the package's source files, the ones inside functions
included (a lazy import is still a dependency), and asserts that the module graph has no
cycle and that no lower layer imports a higher one. ``sdk/`` is the whole runtime: a phone
app or a server that renders stickers installs it alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> package, as pyproject.toml's package-dir maps them.
PACKAGES = {
    "talkinghead": "talkinghead",
    "sdk": "talkinghead.sdk",
    "models": "talkinghead.models",
    "train": "talkinghead.train",
    "distill": "talkinghead.distill",
    "export": "talkinghead.export",
    "bindings": "talkinghead.bindings",
    "benchmarks": "talkinghead.benchmarks",
}
TOP = ("talkinghead.cli", "talkinghead.pipeline", "talkinghead.packs")
# What each layer must not import (a prefix matches the package and its modules).
FORBIDDEN = {
    "talkinghead.sdk": (
        "talkinghead.models",
        "talkinghead.train",
        "talkinghead.distill",
        "talkinghead.export",
        "talkinghead.benchmarks",
        "talkinghead.bindings",
        *TOP,
    ),
    "talkinghead.models": (
        "talkinghead.train",
        "talkinghead.distill",
        "talkinghead.export",
        "talkinghead.benchmarks",
        "talkinghead.bindings",
        *TOP,
    ),
    "talkinghead.train": ("talkinghead.benchmarks", *TOP),
    "talkinghead.distill": ("talkinghead.benchmarks", *TOP),
    "talkinghead.export": (
        "talkinghead.train",
        "talkinghead.distill",
        "talkinghead.benchmarks",
        *TOP,
    ),
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of this package that ``path`` imports, anywhere in the file."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    # An import of a.b.c depends on a.b.c if it is a module, else on its closest package.
    deps = set()
    for mod in found:
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        if mod and mod != name:
            deps.add(mod)
    return deps


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``talkinghead`` itself left out: every
    module may read ``__version__`` from it)."""
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    return {k: v - {"talkinghead"} for k, v in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_lazy_imports():
    graph = import_graph()
    # sdk/photos.py imports the tracker at module level; cli imports pipeline inside functions.
    assert "talkinghead.sdk.tracker" in graph["talkinghead.sdk.photos"]
    assert "talkinghead.pipeline" in graph["talkinghead.cli"]
    assert len(graph) > 80


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_a_higher_one(layer):
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        if mod == layer or mod.startswith(layer + ".")
        for dep in sorted(deps)
        if any(dep == f or dep.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert not bad, "\n".join(bad)
