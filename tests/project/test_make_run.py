"""``make run`` end to end: the baseline scenario produces every output the README promises."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[2]
OUT = ROOT / "runs" / "baseline-1"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "keysim").exists(),
    reason="needs make and the venv",
)
def test_make_run_on_baseline() -> None:
    proc = subprocess.run(["make", "-s", "run"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "restored" in proc.stdout and "outputs in runs/baseline-1/" in proc.stdout
    outcomes = pd.read_parquet(OUT / "outcomes.parquet")
    assert len(outcomes) > 500 and outcomes["restored"].mean() > 0.5
    summary = json.loads((OUT / "summary.json").read_text())
    assert summary["scenario"] == "baseline" and summary["users"] == 3000
    assert summary["fraction_restored"]["n"] == len(outcomes)
    assert len(list((OUT / "plots").glob("*.png"))) == 3
