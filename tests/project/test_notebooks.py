"""The notebooks execute on small parameters, and are stored with their outputs stripped.

Each notebook's first cell is its parameters (tagged ``parameters``, papermill's convention); the
test replaces that cell with small values, after checking it assigns exactly the names the test
gives, and runs the notebook with nbclient on an ipykernel whose kernel spec is written for this
interpreter (so the kernel is this venv's Python whatever kernels the machine has installed).
"""

from __future__ import annotations

import ast
import gc
import warnings
from pathlib import Path
from typing import Any

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
SMOKE = str(NOTEBOOKS.parent / "scenarios" / "smoke.toml")

SMALL: dict[str, dict[str, Any]] = {
    "protocol-walkthrough": {"SEED": 0, "PROFILE": "rocketchat", "POLICY": "queue", "CRYPTO": "symbolic"},
    "restoration-vs-online": {
        "SCENARIO": SMOKE,
        "SEED": 1,
        "USERS": 60,
        "HORIZON_DAYS": 1,
        "GROUP_SIZE_MAX": 6,
        "MEAN_ONLINE_MINUTES": 60,
        "MEAN_OFFLINE_MINUTES": 180,
        "RESETS_PER_USER_DAY": 0.3,
    },
    "policy-comparison": {
        "SCENARIO": SMOKE,
        "SEED": 1,
        "USERS": 60,
        "HORIZON_DAYS": 1,
        "MEAN_OFFLINE_MINUTES": 300,
        "RESETS_PER_USER_DAY": 0.3,
    },
}


def read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def outputs(nb: Any) -> list[Any]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def text(nb: Any) -> str:
    return "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream")


def data(nb: Any, mime: str) -> list[str]:
    return [o["data"][mime] for o in outputs(nb) if mime in o.get("data", {})]


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    root = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(path=str(root / "python3"))  # argv: this interpreter, -m ipykernel_launcher
    return KernelSpecManager(kernel_dirs=[str(root)])


def execute(name: str, kernels: KernelSpecManager, cwd: Path) -> Any:
    nb = read(name)
    cell = nb.cells[0]
    assigned = {
        t.id
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    assert assigned == set(SMALL[name]), "the test's small parameters must match the notebook's"
    cell.source = "\n".join(f"{key} = {value!r}" for key, value in SMALL[name].items())
    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernels)
    client = NotebookClient(nb, km=km, timeout=180, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    del client, km
    with warnings.catch_warnings():
        # jupyter_client leaves the kernel client's zmq sockets to the garbage collector; collect
        # them here, quietly, rather than in whichever test happens to run a collection later
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    errors = [o for o in outputs(nb) if o.output_type == "error"]
    assert not errors, errors
    return nb


def test_the_three_notebooks_are_there() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(SMALL)
    assert (NOTEBOOKS / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_stored_stripped_with_a_parameters_cell_first(name: str) -> None:
    nb = read(name)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs not stripped"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_protocol_walkthrough(kernels: KernelSpecManager, tmp_path: Path) -> None:
    nb = execute("protocol-walkthrough", kernels, tmp_path)
    assert any("<svg" in svg for svg in data(nb, "image/svg+xml"))  # the QR code
    out = text(nb)
    assert "otpauth://totp/Rocket.Chat:bob?secret=" in out
    assert "TOTP is on; 12 backup codes" in out
    assert "the group: WAITING_KEYS" in out and "carol's tick served 1 waiting member(s)" in out
    assert "bob holds the room key: True" in out and "before the reset" in out
    assert "invariants violated: []" in out
    tables = data(nb, "text/html")
    assert len(tables) >= 8 and any("E2ESuggestedKey" in t for t in tables)


def test_restoration_vs_online(kernels: KernelSpecManager, tmp_path: Path) -> None:
    nb = execute("restoration-vs-online", kernels, tmp_path)
    assert "stationary probability online p = 0.250" in text(nb)  # 60 / (60 + 180)
    tables = data(nb, "text/html")
    assert any("analytic" in t for t in tables)
    assert any("restored by the horizon" in t and "live" in t and "queue" in t for t in tables)
    assert len(data(nb, "image/png")) == 2


def test_policy_comparison(kernels: KernelSpecManager, tmp_path: Path) -> None:
    nb = execute("policy-comparison", kernels, tmp_path)
    tables = data(nb, "text/html")
    headline = next(t for t in tables if "median time to restore" in t)
    for variant in ("live", "queue", "backup", "queue + room-key reset"):
        assert f">{variant}<" in headline
    assert any("restored_via" in t for t in tables)
    assert len(data(nb, "image/png")) == 2
