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
    assert result.run_id == direct.run_id and result.run_id.startswith("smoke-7-")
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
    # overrides apply to a Scenario as to its file, as a dict or as keywords (section__key)
    again = api.scenario(scenario, {"simulation.policy": "live"})
    assert (
        again.get("simulation.policy") == "live"
        and again.values == api.scenario(SMOKE, {**SMALL, "simulation.policy": "live"}).values
    )
    assert api.scenario(scenario, simulation__policy="live").values == again.values
    assert (
        api.scenario(SMOKE, {"simulation.policy": "queue"}, simulation__policy="live").values["simulation"][
            "policy"
        ]
        == "live"
    )  # a keyword wins
    with pytest.raises(api.ScenarioError, match="section__key"):
        api.scenario(SMOKE, policy="live")
    with pytest.raises(api.ScenarioError, match=r"simulation\.policy"):
        api.scenario(scenario, simulation__policy="nope")


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


def test_batch_is_one_row_per_run_with_common_random_numbers() -> None:
    table = api.batch(
        SMOKE,
        {"simulation.policy": ["queue", "live"]},
        replications=2,
        **{k.replace(".", "__"): v for k, v in SMALL.items()},
    )
    assert list(table["simulation.policy"]) == ["queue", "queue", "live", "live"]
    assert list(table["replicate"]) == [0, 1, 0, 1]
    seeds = table.groupby("replicate")["seed"].nunique()
    assert (seeds == 1).all() and table["seed"].nunique() == 2  # replicate r: one seed everywhere
    row = table.iloc[3]
    alone = api.run(SMOKE, {**SMALL, "simulation.policy": "live"}, seed=int(row["seed"]))
    outcomes = api.outcomes(alone)
    assert row["fraction_restored"] == pytest.approx(outcomes["restored"].mean())
    assert row["resets"] == outcomes["reset_id"].nunique()
    with pytest.raises(api.ScenarioError, match="replications"):
        api.batch(SMOKE, replications=0)
    with pytest.raises(api.ScenarioError, match=r"simulation\.policy.*list"):
        api.batch(SMOKE, {"simulation.policy": "queue"})


def test_timeline_agrees_with_the_rows() -> None:
    result = api.run(SMOKE, SMALL, seed=3)
    hourly = api.timeline(result)
    outcomes, rooms = api.outcomes(result), api.rooms(result)
    horizon = result.scenario.horizon_s
    assert list(hourly["t_s"]) == [3600.0 * h for h in range(int(horizon // 3600) + 1)]
    last = hourly.iloc[-1]
    assert last["restored"] == outcomes["restored"].sum()
    assert last["rooms_lost"] == int(rooms[rooms["encrypted"]]["lost"].sum())
    still = outcomes[~outcomes["restored"] & outcomes["superseded_at"].isna() & outcomes["left_at"].isna()]
    assert last["resets_waiting"] == len(still) and last["rooms_waiting"] == still["room"].nunique()
    assert (hourly["restored"].diff().fillna(0) >= 0).all()
    with pytest.raises(ValueError, match="step_s"):
        api.timeline(result, step_s=0)
