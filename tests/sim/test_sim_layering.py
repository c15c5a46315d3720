"""sim/ is layered: imports run one way, cli -> api -> sweep/bench/check/demo -> results -> engine
-> inputs -> protocol, and there is no import circle anywhere in sim/.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a circle that
only the type checker sees is still a circle a reader has to untangle.  That protocol/ imports
neither sim nor simpy is checked with the rest of its sans-IO rules in tests/protocol/test_layering.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SIM = ROOT / "sim"

#: each part of sim/ and the layer it sits on; a module may import its own part and lower layers
LAYERS = {
    "sim": 0,  # the package itself: its version only
    "sim.inputs": 1,
    "sim.engine": 2,
    "sim.results": 3,
    "sim.sweep": 4,
    "sim.bench": 4,
    "sim.check": 4,
    "sim.demo": 4,
    "sim.api": 5,
    "sim.cli": 6,
}
#: imports across one layer that are part of the design (a sweep writes its runs' results)
ALLOWED_ACROSS = {("sim.sweep", "sim.results")}


def modules(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (a package directory) by its dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The modules of ``known`` that module ``name`` imports, with the line of each import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != name:
                yield resolved, node.lineno
                break


def graph(root: Path) -> dict[str, dict[str, int]]:
    known = modules(root)
    return {name: dict(imports(name, path, known)) for name, path in known.items()}


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def part(name: str) -> str:
    """The part of sim/ a module belongs to (``sim.engine.devices`` -> ``sim.engine``)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def wrong_way(edges: dict[str, dict[str, int]], layers: dict[str, int]) -> list[str]:
    """Imports that go up, or sideways between two parts of one layer."""
    problems = []
    for source, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            a, b = part(source), part(target)
            if a == b or (a, b) in ALLOWED_ACROSS:
                continue
            if a not in layers or b not in layers:
                problems.append(
                    f"{source}:{line} imports {target}: {a if a not in layers else b} has no layer"
                )
            elif layers[b] >= layers[a]:
                problems.append(
                    f"{source}:{line} imports {target} (layer {layers[b]} from layer {layers[a]})"
                )
    return problems


def test_every_module_sits_on_a_layer() -> None:
    assert {part(name) for name in modules(SIM)} <= set(LAYERS)


def test_no_import_circle_in_sim() -> None:
    assert circles(graph(SIM)) == []


def test_imports_run_one_way() -> None:
    assert wrong_way(graph(SIM), LAYERS) == []


def test_the_package_root_imports_nothing_of_sim() -> None:
    assert graph(SIM)["sim"] == {}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sim"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    # The scans above must be able to fail: a tree with a circle hidden under TYPE_CHECKING and
    # inside a function, and an engine module that imports the command line.
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": "",
            "engine/__init__.py": "from .a import x\n",
            "engine/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import y\nx = 1\n",
            "engine/b.py": "def f():\n    from .a import x\n    from ..cli import main\ny = 2\n",
            "inputs/__init__.py": "from ..engine import b\n",
        },
    )
    edges = graph(root)
    assert circles(edges) == [["sim.engine.a", "sim.engine.b"]]
    problems = wrong_way(edges, LAYERS)
    assert any("sim.engine.b:3 imports sim.cli" in p for p in problems)
    assert any(p.startswith("sim.inputs:1 imports sim.engine.b") for p in problems)


PARTS = sorted(n for n, p in modules(SIM).items() if n.count(".") == 1 and p.name == "__init__.py")


def test_the_parts_are_found() -> None:
    assert {"sim.inputs", "sim.engine", "sim.results", "sim.sweep", "sim.check", "sim.bench"} <= set(PARTS)


@pytest.mark.parametrize("name", [*PARTS, "sim.api"])
def test_each_part_says_what_it_owns_and_may_import(name: str) -> None:
    path = modules(SIM)[name]
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "May import" in doc, f"{path}: the docstring names what the part may import"
