"""tests/ mirrors the code: ``tests/protocol/`` for protocol/, ``tests/sim/<part>/`` for each part
of sim/, ``tests/project/`` for the repository as a whole (README, ``make run``, notebooks), and
data beside them (``tests/vectors/``, ``tests/golden/``, ``tests/scenarios/``).

No Python file sits directly in tests/ (no test module, no ``conftest.py``): pytest puts the
directory of such a file on ``sys.path``, where ``tests/sim`` and ``tests/protocol`` would be found as namespace packages
before the real ones by the processes a sweep spawns (``ModuleNotFoundError: sim.sweep.workers``).
For the same reason a test module imports test modules of its own directory only: each
directory runs on its own (``pytest tests/sim`` as well as ``pytest``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[2]
TESTS = ROOT / "tests"
SIM_PARTS = sorted(p.parent.name for p in (ROOT / "sim").glob("*/__init__.py"))
TEST_FILES = sorted(TESTS.rglob("test_*.py"))


def test_no_python_file_sits_directly_in_tests() -> None:
    assert [p.name for p in TESTS.glob("*.py")] == []


def test_each_part_of_sim_has_its_tests() -> None:
    assert set(SIM_PARTS) <= {p.name for p in (TESTS / "sim").iterdir() if p.is_dir()}


def test_test_directories_are_named_for_the_code() -> None:
    allowed = {("protocol",), ("project",), ("sim",)} | {("sim", part) for part in SIM_PARTS}
    placed = {p.parent.relative_to(TESTS).parts for p in TEST_FILES}
    assert placed <= allowed, placed - allowed


def test_module_names_are_unique() -> None:
    # without __init__.py files, pytest imports each test module by its file name
    twice = [name for name, count in Counter(p.name for p in TEST_FILES).items() if count > 1]
    assert twice == []


def test_test_modules_import_only_their_own_directory() -> None:
    # pytest puts a test module's own directory on sys.path: a module (or conftest) beside it
    # imports wherever it runs from, one elsewhere only when that directory happens to run first
    for path in TEST_FILES:
        lines = path.read_text().splitlines()
        imported = {line.split()[1].split(".")[0] for line in lines if line.startswith(("import ", "from "))}
        for name in imported & ({p.stem for p in TEST_FILES} | {"conftest"}):
            assert (path.parent / f"{name}.py").exists(), f"{path} imports {name} from another directory"
