"""``keysim bench --crypto`` runs the reset-and-restore cycle on both backends (no timing asserts)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sim.bench.crypto import crypto_cycle
from sim.cli import main


def test_cycle_runs_on_both_backends() -> None:
    out = io.StringIO()
    figures = crypto_cycle(out, cycles=1)
    assert figures["real"]["median_s"] > 0 and figures["symbolic"]["median_s"] > 0
    assert figures["ratio_real_to_symbolic"] == figures["real"]["median_s"] / figures["symbolic"]["median_s"]
    assert "reset-and-restore cycle" in out.getvalue()


def test_cli_writes_json_and_checks_cycles(tmp_path: Path) -> None:
    target = tmp_path / "crypto.json"
    assert main(["bench", "--crypto", "--cycles", "1", "--json", str(target)]) == 0
    assert json.loads(target.read_text())["cycles"] == 1
    assert main(["bench", "--crypto", "--cycles", "0"]) == 2
