"""sim.api: the seam notebooks and the command line call, checked against the parts behind it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim import api
from sim.engine import OUTCOME_COLUMNS, ROOM_COLUMNS, run_scenario
from sim.inputs import load_scenario
from sim.results import write_run

SMOKE = Path(__file__).parents[2] / "scenarios" / "smoke.toml"
SMALL = {"simulation.horizon_days": 0.5, "population.users": 30, "rooms.dms": 10, "rooms.groups": 4}


def test_run_is_the_engine_run_of_the_loaded_scenario() -> None:
    result = api.run(SMOKE, {**SMALL, "simulation.policy": "live"}, seed=7)
    direct = run_scenario(load_scenario(SMOKE, overrides={**SMALL, "simulation.policy": "live"}).with_seed(7))
    assert result.run_id == "smoke-7"
    assert len(result.outcomes) > 0
    pd.testing.assert_frame_equal(api.outcomes(result), api.outcomes(direct))
    pd.testing.assert_frame_equal(api.rooms(result), api.rooms(direct))
    assert tuple(api.outcomes(result).columns) == OUTCOME_COLUMNS
    assert tuple(api.rooms(result).columns) == ROOM_COLUMNS
    assert set(api.outcomes(result)["policy"]) == {"live"}


def test_a_scenario_object_runs_as_its_file_does() -> None:
    scenario = api.scenario(SMOKE, SMALL)
    assert scenario.seed == 1
    pd.testing.assert_frame_equal(api.outcomes(api.run(scenario)), api.outcomes(api.run(SMOKE, SMALL)))
    with pytest.raises(api.ScenarioError, match="overrides"):
        api.scenario(scenario, {"simulation.seed": 2})


def test_bad_input_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(api.ScenarioError, match=r"population\.users"):
        api.run(SMOKE, {"population.users": -1})
    with pytest.raises(api.ScenarioError, match="file not found"):
        api.scenario(tmp_path / "missing.toml")


def test_load_reads_a_written_run_back(tmp_path: Path) -> None:
    result = api.run(SMOKE, SMALL)
    write_run(result, tmp_path / "run", plots=False)
    loaded = api.load(tmp_path / "run")
    assert loaded.kind == "run"
    assert len(loaded.outcomes) == len(result.outcomes)
    assert list(loaded.outcomes["reset_id"]) == list(api.outcomes(result)["reset_id"])
