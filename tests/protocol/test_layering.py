"""protocol/ is sans-IO: no sim, no simpy, no clock, no global randomness, no printing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).parents[2] / "protocol"
FILES = sorted(PROTOCOL.rglob("*.py"))

FORBIDDEN_MODULES = {"sim", "simpy", "time", "secrets", "datetime", "socket", "subprocess", "asyncio"}
#: attribute uses that read a clock or global randomness
FORBIDDEN_ATTRS = {
    ("os", "urandom"),
    ("os", "getrandom"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
}
#: the only names of the random module protocol/ may touch: the generator classes
RANDOM_ALLOWED = {"Random", "SystemRandom"}


def test_files_found() -> None:
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PROTOCOL)))
def test_sans_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    problems.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            root = (node.module or "").split(".")[0]
            if node.level == 0 and root in FORBIDDEN_MODULES:
                problems.append(f"line {node.lineno}: from {node.module} import ...")
            if node.level == 0 and root == "random":
                bad = [a.name for a in node.names if a.name not in RANDOM_ALLOWED]
                if bad:
                    problems.append(f"line {node.lineno}: from random import {bad}")
            if node.level == 0 and root in ("os", "uuid"):
                bad = [a.name for a in node.names if (root, a.name) in FORBIDDEN_ATTRS]
                if bad:
                    problems.append(f"line {node.lineno}: from {root} import {bad}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in FORBIDDEN_ATTRS:
                problems.append(f"line {node.lineno}: {pair[0]}.{pair[1]}")
            if node.value.id == "random" and node.attr not in RANDOM_ALLOWED:
                problems.append(f"line {node.lineno}: global random.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"print", "open", "input"}
        ):
            problems.append(f"line {node.lineno}: {node.func.id}()")
    assert problems == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    # The scan above must be able to fail: feed it a file with every kind of violation.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import time\nimport random\nfrom sim import cli\nimport os\n"
        "x = random.random()\ny = os.urandom(4)\nprint(x)\n"
    )
    with pytest.raises(AssertionError):
        test_sans_io(bad)


def test_protocol_does_not_load_sim_or_simpy() -> None:
    import subprocess
    import sys

    code = "import sys, protocol; print(sorted(m for m in sys.modules if m in ('sim','simpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_single_exception_root() -> None:
    import protocol

    errors = [
        getattr(protocol, n)
        for n in protocol.__all__
        if isinstance(getattr(protocol, n), type) and issubclass(getattr(protocol, n), Exception)
    ]
    assert protocol.ProtocolError in errors
    assert all(issubclass(e, protocol.ProtocolError) for e in errors)
