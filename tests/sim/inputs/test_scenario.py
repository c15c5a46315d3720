"""Scenario files as a whole: the run's id, and how the problems of a file are reported."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sim import api
from sim.inputs.scenario import ScenarioError, ScenarioErrors, load_scenario, parse_scenario
from sim.results.provenance import resolved_scenario_toml

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"


def test_the_run_id_is_name_and_seed_for_the_file_as_written() -> None:
    assert load_scenario(SMOKE).run_id == "smoke-1"
    assert load_scenario(SMOKE).with_seed(9).run_id == "smoke-9"
    # a seed given as an override is already in the id
    assert load_scenario(SMOKE, {"simulation.seed": 4}).run_id == "smoke-4"


def test_the_run_id_changes_when_the_overrides_change() -> None:
    live = load_scenario(SMOKE, {"simulation.policy": "live"})
    queue = load_scenario(SMOKE, {"simulation.policy": "queue"})
    assert live.run_id.startswith("smoke-1-") and queue.run_id.startswith("smoke-1-")
    assert live.run_id != queue.run_id
    # the same overrides give the same id, in any order, by any route
    both = {"simulation.policy": "live", "population.users": 40}
    assert load_scenario(SMOKE, both).run_id == load_scenario(SMOKE, dict(reversed(both.items()))).run_id
    assert load_scenario(SMOKE).with_overrides(both).run_id == load_scenario(SMOKE, both).run_id
    assert (
        api.scenario(SMOKE, simulation__policy="live", population__users=40).run_id
        == load_scenario(SMOKE, both).run_id
    )
    # overrides pile up, and a new seed keeps the digest
    piled = load_scenario(SMOKE, {"simulation.policy": "live"}).with_overrides({"population.users": 40})
    assert piled.run_id == load_scenario(SMOKE, both).run_id
    assert piled.with_seed(3).run_id == "smoke-3-" + piled.run_id.rsplit("-", 1)[1]


def test_a_given_run_id_is_kept_and_checked() -> None:
    sc = load_scenario(SMOKE, {"simulation.run_id": "mine", "simulation.policy": "live"})
    assert sc.run_id == "mine" and sc.with_seed(5).run_id == "mine"
    with pytest.raises(ValueError, match=r"simulation\.run_id: must be letters"):
        load_scenario(SMOKE, {"simulation.run_id": "../escape"})


def test_the_resolved_scenario_reads_back_to_the_same_run_id(tmp_path: Path) -> None:
    sc = load_scenario(SMOKE, {"simulation.policy": "live"}).with_seed(6)
    path = tmp_path / "scenario.toml"
    path.write_text(resolved_scenario_toml(sc), encoding="utf-8")
    assert load_scenario(path).run_id == sc.run_id
    assert parse_scenario({}).run_id == "scenario-0"
    # ... and to a new one as soon as anything changes: another seed, any override
    assert load_scenario(path).with_seed(9).run_id == "smoke-9"
    assert load_scenario(path).with_seed(6).run_id == sc.run_id
    assert load_scenario(path, {"population.users": 40}).run_id.startswith("smoke-6-")
    assert load_scenario(path, {"population.users": 40}).run_id != sc.run_id


def test_a_section_that_is_not_a_table_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("rooms = 5\nresets = 'x'\n")
    with pytest.raises(ScenarioErrors) as caught:
        load_scenario(path)
    assert sorted(str(p) for p in caught.value.problems) == [
        "resets: must be a table",
        "rooms: must be a table",
    ]


BAD = """
[simulation]
horizon_dys = 3
policy = "nope"

[churn]
mean_online_minutes = -5
groups = 3

[populaton]
users = 3

[[rooms.explicit]]
type = "p"
members = ["u0", "u999"]
encrypted = true
colour = "red"
"""


def test_every_problem_in_a_file_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ScenarioErrors) as caught:
        load_scenario(path)
    found = {p.key: p.message for p in caught.value.problems}
    assert found == {
        "populaton": "unknown section (did you mean 'population'?)",
        "simulation.horizon_dys": "unknown key (did you mean 'horizon_days'?)",
        "simulation.policy": found["simulation.policy"],
        "churn.mean_online_minutes": "must be > 0, got -5",
        "churn.groups": "unknown key (it is a key of [rooms]: rooms.groups)",
        "rooms.explicit[0].colour": "unknown key",
    }
    assert found["simulation.policy"].startswith("must be one of 'rocketchat'")
    lines = str(caught.value).splitlines()
    assert lines[0] == "6 problems:" and all(line.startswith("  ") for line in lines[1:]) and len(lines) == 7
    # once each key is right, the checks across keys run, and report together too
    path.write_text(
        "[rooms]\ngroups = 3\ngroup_size = 9\ngroup_size_max = 4\ngraph = 'karate_club'\n"
        "[[rooms.explicit]]\ntype = 'd'\nmembers = ['u0', 'u1', 'u2']\nencrypted = true\n"
    )
    with pytest.raises(ScenarioErrors) as caught:
        load_scenario(path)
    assert [p.key for p in caught.value.problems] == [
        "rooms.explicit[0].members",
        "rooms.graph",
        "rooms.group_size",
    ]


def test_one_problem_is_a_plain_scenario_error() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(SMOKE, {"churn.mean_onlin_minutes": 5})
    assert type(caught.value) is ScenarioError
    assert str(caught.value) == "churn.mean_onlin_minutes: unknown key (did you mean 'mean_online_minutes'?)"


def test_scenario_errors_pickle() -> None:
    one = ScenarioError("churn.shape", "must be > 0, got 0")
    many = ScenarioErrors([one, ScenarioError("rooms.dms", "must be >= 0, got -1")])
    for error in (one, many):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and back.key == error.key
    assert [p.key for p in pickle.loads(pickle.dumps(many)).problems] == ["churn.shape", "rooms.dms"]
