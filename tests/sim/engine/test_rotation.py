"""Owners rotating room keys (``recovery.room_key_rotation_per_room_day``): the old key travels
with the new one as ``oldRoomKeys``, so a member restored after a rotation still reads the history
(``old_keys_recovered``), which a recovery of a lost room (a new key, no history) cannot give."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from sim.engine import RunResult, Simulation, run_scenario
from sim.engine.collect import collect
from sim.inputs.scenario import load_scenario
from sim.results import outcomes_frame, rooms_frame

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"

SCENARIO = """\
[simulation]
horizon_days = 1
seed = 2

[population]
users = 3

[churn]
model = "trace"
trace = "trace.csv"

[[rooms.explicit]]
type = "p"
members = ["u0", "u1", "u2"]

[[resets.scripted]]
user = "u1"
at = 2000
"""
TRACE = "user,online_at,offline_at\nu0,0,86400\nu1,2000,2100\n"


def test_a_member_restored_after_a_rotation_recovers_the_old_key(tmp_path: Path) -> None:
    (tmp_path / "trace.csv").write_text(TRACE)
    (tmp_path / "s.toml").write_text(SCENARIO)
    sim = Simulation(load_scenario(tmp_path / "s.toml"), check_invariants=True)
    sim.establish()
    group = sim.room_ids[0]
    sim.clock.at(500.0, sim.traffic.message, group, 0.0)  # u0 (online) writes under the first key
    sim.clock.at(1000.0, sim.owners.reset_room, 0, group, True)  # u0 rotates the key
    sim.resets.schedule()  # u1 resets at 2000 and is served by u0 at once
    sim.clock.run_until(sim.horizon)
    result = collect(sim)
    assert result.violations == []
    (row,) = result.outcomes
    assert (row["user"], row["restored_at"], row["restored_via"]) == ("u1", 2000.0, "holder")
    assert row["old_keys_recovered"] == 1
    assert (row["history_messages"], row["history_unreadable"]) == (1, 0)
    (room,) = result.rooms
    assert (room["room_key_rotations"], room["room_key_resets"]) == (1, 0)


@functools.cache
def rotating() -> RunResult:
    overrides = {"recovery.room_key_rotation_per_room_day": 2, "traffic.messages_per_room_day": 40}
    return run_scenario(load_scenario(SMOKE, overrides), check_invariants=True)


def test_rotations_happen_in_groups_only_and_keep_the_invariants() -> None:
    result = rotating()
    assert result.violations == []
    rooms = rooms_frame(result)
    assert rooms["room_key_rotations"].sum() > 0
    assert (rooms.loc[rooms["room_type"] == "d", "room_key_rotations"] == 0).all()


def test_old_keys_come_back_only_in_rotated_rooms() -> None:
    result = rotating()
    outcomes, rooms = outcomes_frame(result), rooms_frame(result)
    rotated = set(rooms.loc[rooms["room_key_rotations"] > 0, "room"])
    with_old = outcomes[outcomes["old_keys_recovered"] > 0]
    assert len(with_old) > 0
    assert set(with_old["room"]) <= rotated
    assert with_old["restored"].all()


@pytest.mark.parametrize("policy", ["queue", "live", "backup"])
def test_members_get_the_rotated_key_at_their_next_login(policy: str, tmp_path: Path) -> None:
    # u0 rotates at 1000 and stays online; u1 (online 2000-2100) and u2 (3000-3100) lacked the new
    # key from then on.  Under live they ask when they next log in (RC's onRoomKeyReset sends no
    # request), under queue the owner's loop serves them and they accept at that login.
    (tmp_path / "trace.csv").write_text("user,online_at,offline_at\nu0,0,86400\nu1,2000,2100\nu2,3000,3100\n")
    (tmp_path / "s.toml").write_text(SCENARIO.split("[[resets.scripted]]")[0])
    sim = Simulation(load_scenario(tmp_path / "s.toml", {"simulation.policy": policy}), check_invariants=True)
    sim.establish()
    group = sim.room_ids[0]
    sim.clock.at(1000.0, sim.owners.reset_room, 0, group, True)
    sim.clock.run_until(sim.horizon)
    assert sorted(sim.keys.holders(group)) == [0, 1, 2]
    assert collect(sim).violations == []
