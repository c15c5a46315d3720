"""When an outcome row stops waiting, and what it records then (``tests/scenarios/closing.toml``).

A row closes when its user is restored, when the same user resets again (``superseded_at``), or
when the user leaves the room (``left_at``); a row still open at the horizon is censored there.
The history columns are read when the row closes, not at the horizon, and the Kaplan-Meier
estimate censors a row at the earliest of its supersession, its leaving and the horizon.

H  DM u0-u1: u1 online 0-4000; u0 resets at 1000 (restored at once) and at 5000 (nobody left)
I  DM u2-u3: u2 resets at 1000 and 5000; u3 never online
J  group u4,u5,u6: u6 resets at 1000, nobody serves it; the test makes u6 leave at 2000
K  DM u7-u8: u8 resets at 500 (online 500-600, back 3000); u7 comes online at 1000 and resets
   then: its first distribution tick runs at login, before the reset, and serves u8
L  group u9,u10,u11 (owner u9): u10 and u11 reset offline at 200 and 300, u9 at 400; the room is
   lost and u9 resets the room key
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim.engine import RunResult, Simulation, run_scenario
from sim.engine.collect import collect
from sim.inputs.scenario import load_scenario
from sim.results import kaplan_meier, outcomes_frame, restore_ends, summarize, terminal_table

CLOSING = Path(__file__).parents[2] / "scenarios" / "closing.toml"
HORIZON = 86_400.0


@functools.cache
def run() -> RunResult:
    return run_scenario(load_scenario(CLOSING), check_invariants=True)


def rows_of(result: RunResult, user: str) -> list[dict[str, Any]]:
    return sorted((o for o in result.outcomes if o["user"] == user), key=lambda o: o["reset_at"])


def room(result: RunResult, room_id: str) -> dict[str, Any]:
    (r,) = [r for r in result.rooms if r["room"] == room_id]
    return r


def test_no_invariant_violations() -> None:
    assert run().violations == []


def test_history_is_read_when_the_row_closes() -> None:
    first, second = rows_of(run(), "u0")
    # restored at 1000 with the room's only key: every earlier message is readable then, even
    # though u0 holds nothing of this room at the horizon (its second reset was never served)
    assert (first["restored_at"], first["restored_via"]) == (1000.0, "holder")
    assert first["history_messages"] > 0
    assert first["history_unreadable"] == 0
    assert not second["restored"]
    assert second["history_messages"] > first["history_messages"]
    assert second["history_unreadable"] == second["history_messages"]


def test_a_second_reset_supersedes_the_open_row() -> None:
    first, second = rows_of(run(), "u2")
    assert first["superseded_at"] == 5000.0 and not first["restored"]
    assert math.isnan(second["superseded_at"])
    # a restored row is closed, so a later reset does not supersede it
    assert all(math.isnan(o["superseded_at"]) for o in rows_of(run(), "u0"))


def test_kaplan_meier_censors_a_superseded_row_at_the_next_reset() -> None:
    result = run()
    frame = outcomes_frame(result)
    ends = restore_ends(frame, HORIZON)
    u2 = frame.index[frame["user"] == "u2"].tolist()
    assert ends.loc[u2].tolist() == [5000.0, HORIZON]
    restored = frame.index[frame["restored"]].tolist()
    assert ends.loc[restored].tolist() == frame.loc[restored, "restored_at"].tolist()
    # the estimate sees the censoring time, not the horizon: with every other row removed, the
    # one superseded row is at risk for exactly 4000 s
    km = kaplan_meier(frame.loc[u2[:1]], HORIZON)
    assert (km["n"], km["events"]) == (1, 0)
    summary = summarize(result)
    assert summary["outcomes_superseded"] == 1
    assert summary["outcomes_left"] == 0
    assert "stopped waiting unrestored: 1 superseded by the user's next reset" in terminal_table(summary)


def test_a_leave_closes_the_row_and_stops_the_waiting_time() -> None:
    sim = Simulation(load_scenario(CLOSING, {"traffic.messages_per_room_day": 0}))
    sim.establish()
    sim.resets.schedule()
    sim.clock.run_until(2000.0)
    u4, u5, u6 = sim.user_ids[4:7]
    group = next(rid for rid in sim.room_ids if u6 in sim.server.room(rid).subscriptions)
    assert list(sim.server.room(group).subscriptions) == [u4, u5, u6]
    sim.clock.now = 2000.0
    sim.membership.change("leave", group, 0.5)  # picks the last member, u6
    assert u6 not in sim.server.room(group).subscriptions
    sim.clock.run_until(sim.horizon)
    result = collect(sim)
    (u6,) = rows_of(result, "u6")
    assert u6["left_at"] == 2000.0 and not u6["restored"]
    assert room(result, group)["waiting_s"] == 1000.0  # 1000-2000, not until the horizon
    assert summarize(result)["outcomes_left"] == 1
    frame = outcomes_frame(result)
    assert restore_ends(frame, HORIZON)[frame["user"] == "u6"].tolist() == [2000.0]


def test_a_session_start_ticks_before_the_reset() -> None:
    result = run()
    (u8,) = rows_of(result, "u8")
    (u7,) = rows_of(result, "u7")
    # u7's device serves u8 at its login (1000) before u7 resets; u8 accepts at 3000 and then
    # serves u7, who accepts at its next login (4000): the DM survives
    assert (u8["served_at"], u8["restored_at"]) == (1000.0, 3000.0)
    assert (u7["holders_at_relogin"], u7["served_at"], u7["restored_at"]) == (0, 3000.0, 4000.0)
    dm = room(result, u7["room"])
    assert not dm["lost"] and dm["lost_at"] == 1000.0  # lost at u7's reset, regained at 3000


def test_a_forgotten_password_login_does_not_tick_before_the_reset() -> None:
    # the same as K, but u7 comes online at 1000 on a new device without its E2E password: it
    # cannot serve u8 before it resets, so the DM is lost
    scenario = load_scenario(CLOSING)
    scenario = dataclasses.replace(
        scenario, scripted_resets=tuple(r for r in scenario.scripted_resets if r.user != 7)
    )
    sim = Simulation(scenario, check_invariants=True)
    sim.establish()
    sim.resets.schedule()
    sim.clock.at(1000.0, sim.resets.plan, 7, "forgot_password")
    sim.clock.run_until(sim.horizon)
    result = collect(sim)
    (u8,) = rows_of(result, "u8")
    (u7,) = rows_of(result, "u7")
    assert u7["reason"] == "forgot_password" and u7["reset_at"] == 1000.0
    assert math.isnan(u8["served_at"]) and not u8["restored"]
    assert room(result, u7["room"])["lost"]
    assert result.violations == []


def test_a_room_key_reset_serves_and_restores_at_once() -> None:
    result = run()
    (u9,) = rows_of(result, "u9")
    assert u9["restored_via"] == "room_key_reset"
    assert u9["served_at"] == u9["restored_at"] == 400.0
    assert room(result, u9["room"])["room_key_resets"] == 1
    # u10, reset offline at 200, logs in at 2000 and finds the owner's new key held
    (u10,) = rows_of(result, "u10")
    assert (u10["reset_at"], u10["relogin_at"], u10["holders_at_relogin"]) == (200.0, 2000.0, 1)
    # u11 never comes back: a reset without a relogin
    (u11,) = rows_of(result, "u11")
    assert u11["reset_at"] == 300.0 and math.isnan(u11["relogin_at"])


@pytest.mark.parametrize("column", ["superseded_at", "left_at"])
def test_new_columns_reach_the_parquet(column: str, tmp_path: Path) -> None:
    from sim.results import write_run

    write_run(run(), tmp_path / "out", plots=False)
    frame = pd.read_parquet(tmp_path / "out" / "outcomes.parquet")
    assert frame[column].dtype == "float64"


# --- resets of users who are away (offline_resets.toml) ----------------------------------------------

OFFLINE = Path(__file__).parents[2] / "scenarios" / "offline_resets.toml"


def simulation(profile: str = "rocketchat") -> Simulation:
    sim = Simulation(load_scenario(OFFLINE, {"simulation.profile": profile}), check_invariants=True)
    sim.establish()
    return sim


def test_a_row_that_left_the_room_gets_no_relogin() -> None:
    # u2 is reset at 1000 while away, leaves at 2000 and logs in again at 3000
    sim = simulation()
    sim.resets.schedule()
    sim.clock.run_until(2000.0)
    group = sim.room_ids[0]
    sim.clock.now = 2000.0
    sim.membership.change("leave", group, 0.5)  # picks the last member, u2
    sim.clock.run_until(sim.horizon)
    result = collect(sim)
    (u2,) = rows_of(result, "u2")
    assert u2["left_at"] == 2000.0
    assert math.isnan(u2["relogin_at"]) and u2["holders_online_at_relogin"] == 0
    assert result.violations == []


def test_a_reset_due_when_an_admin_reset_user_returns_is_absorbed() -> None:
    # a rate reset of u2 falls at 500 (away): due at its next online start, 3000, when u2 also
    # logs in after the admin's reset at 1000; the key is new already, so that is one reset
    sim = simulation()
    sim.clock.at(500.0, sim.resets.plan, 2, "reset")
    sim.resets.schedule()
    sim.clock.run_until(sim.horizon)
    result = collect(sim)
    (u2,) = rows_of(result, "u2")
    assert (u2["reason"], u2["reset_at"], u2["relogin_at"], u2["restored_at"]) == (
        "scripted",
        1000.0,
        3000.0,
        3000.0,
    )
    assert math.isnan(u2["superseded_at"])
    assert sim.resets.absorbed == 1
    assert result.violations == []


@pytest.mark.parametrize("profile", ["rocketchat", "hardened"])
def test_a_user_locked_out_and_reset_by_an_admin_resets_once(profile: str) -> None:
    # u5 loses its authenticator at 1000 (locked out until an admin resets its TOTP at 4600); an
    # admin resets its E2E key at 2000; at its next login, 9000, it is not reset a second time
    sim = simulation(profile)
    sim.clock.at(900.0, sim.resets.plan, 5, "lost_authenticator")
    sim.resets.schedule()
    sim.clock.run_until(sim.horizon)
    result = collect(sim)
    (u5,) = rows_of(result, "u5")
    assert (u5["reset_at"], u5["relogin_at"], u5["restored_at"]) == (2000.0, 9000.0, 9000.0)
    assert math.isnan(u5["superseded_at"]) and u5["restored_via"] == "holder"
    assert result.violations == []


def test_a_holder_is_not_followed_for_members_without_keys() -> None:
    # u8 was reset by an admin at 1000 and never returns: without a key pair it is on no queue
    # (Rooms.removeUserFromE2EEQueue), nobody can serve it and u6 need not be logged in for it
    sim = simulation()
    sim.resets.schedule()
    sim.clock.run_until(1500.0)
    group = sim.room_ids[2]
    assert not sim.server.room(group).is_waiting(sim.user_ids[8])
    assert not sim.keys.holds(group, sim.user_ids[8])
    assert sim.keys.holds(group, sim.user_ids[6])
    assert not sim.following.relevant(6)
    sim.clock.run_until(sim.horizon)
    assert not sim.devices.online(6)


def test_an_owner_reset_while_away_logs_in_again_before_it_recovers_the_room(tmp_path: Path) -> None:
    # everybody in the group is reset by an admin while away; the owner u0 comes back at 5000:
    # that login is its relogin, and then it resets the lost room's key
    (tmp_path / "trace.csv").write_text("user,online_at,offline_at\nu0,5000,86400\n")
    (tmp_path / "s.toml").write_text(
        '[simulation]\nhorizon_days = 1\nseed = 2\n[population]\nusers = 3\n[churn]\nmodel = "trace"\n'
        'trace = "trace.csv"\n[recovery]\nowner_resets_lost_rooms = true\n'
        '[[rooms.explicit]]\ntype = "p"\nmembers = ["u0", "u1", "u2"]\n'
        '[[resets.scripted]]\nuser = "u1"\nat = 100\n[[resets.scripted]]\nuser = "u2"\nat = 150\n'
        '[[resets.scripted]]\nuser = "u0"\nat = 200\n'
    )
    result = run_scenario(load_scenario(tmp_path / "s.toml"), check_invariants=True)
    assert result.violations == []
    (u0,) = rows_of(result, "u0")
    assert (u0["reset_at"], u0["relogin_at"], u0["restored_at"]) == (200.0, 5000.0, 5000.0)
    assert u0["restored_via"] == "room_key_reset"
    assert result.rooms[0]["room_key_resets"] == 1
