"""The simulator drives the same protocol code path whatever the crypto backend: a small run with
real crypto gives exactly the outcomes of the symbolic run (and no invariant is violated)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.engine import run_scenario
from sim.inputs.scenario import load_scenario
from sim.results import outcomes_frame, rooms_frame

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"
SMALL = {
    "population.users": 14,
    "rooms.dms": 6,
    "rooms.groups": 3,
    "simulation.horizon_days": 1,
    "resets.rate_per_user_day": 0.5,
    "traffic.messages_per_room_day": 6,
}


@pytest.mark.slow
def test_real_and_symbolic_runs_agree() -> None:
    runs = {}
    for crypto in ("symbolic", "real"):
        # one run id for both: the backend is meant to change nothing else
        scenario = load_scenario(
            SMOKE, overrides={**SMALL, "simulation.crypto": crypto, "simulation.run_id": "same"}
        )
        result = run_scenario(scenario, check_invariants=True)
        assert result.violations == []
        runs[crypto] = result
    symbolic, real = (outcomes_frame(runs[c]) for c in ("symbolic", "real"))
    assert len(symbolic) >= 5 and symbolic["restored"].any()
    pd.testing.assert_frame_equal(symbolic, real)  # NaN-aware, column by column
    assert rooms_frame(runs["symbolic"]).equals(rooms_frame(runs["real"]))
