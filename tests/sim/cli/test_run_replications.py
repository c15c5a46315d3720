"""``keysim run --replications N``: N seeds into a sweep store, pooled figures, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main
from sim.results import load_results
from sim.sweep.plan import replicate_seed
from sim.sweep.store import read_runs

SMOKE = Path(__file__).resolve().parents[3] / "scenarios" / "smoke.toml"
SMALL = ["--set", "simulation.horizon_days=0.5", "--set", "population.users=30", "--set", "rooms.groups=4"]


def test_replications_run_with_derived_seeds_and_pool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reps"
    assert main(["run", str(SMOKE), "--seed", "5", "--replications", "3", "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "3 replications pooled" in printed and "restored by the horizon" in printed
    rows = read_runs(out)
    assert sorted(r["seed"] for r in rows) == sorted(replicate_seed(5, r) for r in range(3))
    assert {r["status"] for r in rows} == {"done"}
    results = load_results(out)
    assert len(results.runs) == 3 and set(results.outcomes["seed"]) == {r["seed"] for r in rows}
    summary = json.loads(next((out / "summaries").iterdir()).read_text())
    assert summary["parameters"]["population"]["users"] == 30  # the --set values reached every run
    # the same command again finds every run done and changes nothing
    before = {p.name: p.read_bytes() for p in (out / "outcomes").iterdir()}
    assert (
        main(["run", str(SMOKE), "--seed", "5", "--replications", "3", "--out", str(out), "--quiet", *SMALL])
        == 0
    )
    assert {p.name: p.read_bytes() for p in (out / "outcomes").iterdir()} == before
    assert isinstance(pd.read_parquet(next((out / "joins").iterdir())), pd.DataFrame)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--replications", "0"], "--replications"),
        (["--replications", "2", "--check-invariants"], "--check-invariants"),
    ],
)
def test_bad_replications_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["run", str(SMOKE), "--out", str(tmp_path / "x"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
