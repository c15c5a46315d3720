"""The simulator on hand-made scenarios: explicit rooms, a presence trace, scripted resets.

Every case in ``tests/scenarios/scripted_policies.toml`` uses its own users, so each reset has
exactly one outcome row (one encrypted room per user) and its expected values can be written down
from the trace (``scripted_policies.csv``, seconds):

A  DM u0-u1   holder u1 online at the reset (co-present)                 reset u0 at 1000
B  DM u2-u3   holder u3 online only before the reset                     reset u2 at 1000
C  DM u4-u5   holder u5 online only after it (3000-4000), while u4 is
              offline; u4 back at 5000                                   reset u4 at 1000
D  group u6,u7,u8   u7 online 4500-5500, u6 back at 5000, u8 never       reset u6 at 1000
E  DM u9-u10  both reset, neither online while the other waits           u9 at 1000, u10 at 500
              (u10 is offline at 500: an admin resets it then; it logs in again at its next
              online start, 3000)
F  group u11,u12,u13   u11 offline at its scripted time, back at 7000;
              u12 online all day, u13 never                              reset u11 at 100
              (reset at 100 by an admin, relogin at 7000)
G  DM u14-u15 u14 online 2000-4000, holder u15 2400-2600                 reset u14 at 2500

Integer times keep every sum exact; ``float_times.toml`` checks times that are not.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim.engine import OUTCOME_COLUMNS, RunResult, run_scenario
from sim.inputs.scenario import load_scenario
from sim.results import write_run

SCENARIOS = Path(__file__).parents[2] / "scenarios"
SCRIPTED = SCENARIOS / "scripted_policies.toml"
FLOAT_TIMES = SCENARIOS / "float_times.toml"
HORIZON = 86_400.0
POLICIES = ["queue", "live", "backup"]
NAN = math.nan


@functools.cache
def run(policy: str, path: Path = SCRIPTED) -> RunResult:
    return run_scenario(load_scenario(path, {"simulation.policy": policy}), check_invariants=True)


def row(result: RunResult, user: str) -> dict[str, Any]:
    rows = [o for o in result.outcomes if o["user"] == user]
    assert len(rows) == 1, f"{user}: expected one outcome row, got {len(rows)}"
    return rows[0]


def room_of(result: RunResult, user: str) -> dict[str, Any]:
    room_id = row(result, user)["room"]
    (room,) = [r for r in result.rooms if r["room"] == room_id]
    return room


def same(actual: Any, expected: Any) -> bool:
    """Exact equality where NaN equals NaN."""
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return bool(actual == expected)


def check(
    result: RunResult,
    user: str,
    *,
    reset_at: float = 1000.0,
    relogin_at: float | None = None,
    online: int,
    holders: int,
    served: float,
    restored: float,
    via: str,
    lost: bool = False,
) -> None:
    o = row(result, user)
    got = {
        "reset_at": o["reset_at"],
        "relogin_at": o["relogin_at"],
        "holders_online_at_relogin": o["holders_online_at_relogin"],
        "holders_at_relogin": o["holders_at_relogin"],
        "served_at": o["served_at"],
        "restored_at": o["restored_at"],
        "restored": o["restored"],
        "restored_via": o["restored_via"],
        "lost": o["lost"],
    }
    want = {
        "reset_at": reset_at,
        "relogin_at": reset_at if relogin_at is None else relogin_at,
        "holders_online_at_relogin": online,
        "holders_at_relogin": holders,
        "served_at": served,
        "restored_at": restored,
        "restored": not math.isnan(restored),
        "restored_via": via,
        "lost": lost,
    }
    wrong = {k: (got[k], want[k]) for k in want if not same(got[k], want[k])}
    assert not wrong, f"{user} under {result.scenario.get('simulation.policy')}: (got, expected) {wrong}"


# --- the run as a whole ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_no_invariant_violations(policy: str) -> None:
    assert run(policy).violations == []


@pytest.mark.parametrize("policy", POLICIES)
def test_one_row_per_reset_and_room(policy: str) -> None:
    result = run(policy)
    assert sorted(o["user"] for o in result.outcomes) == sorted(
        ["u0", "u2", "u4", "u6", "u9", "u10", "u11", "u14"]
    )
    assert len({o["reset_id"] for o in result.outcomes}) == 8
    assert all(set(o) == set(OUTCOME_COLUMNS) for o in result.outcomes)
    assert {o["policy"] for o in result.outcomes} == {policy}
    assert {o["reason"] for o in result.outcomes} == {"scripted"}
    sizes = {o["user"]: (o["room_type"], o["room_size"]) for o in result.outcomes}
    assert sizes == {
        "u0": ("d", 2),
        "u2": ("d", 2),
        "u4": ("d", 2),
        "u6": ("p", 3),
        "u9": ("d", 2),
        "u10": ("d", 2),
        "u11": ("p", 3),
        "u14": ("d", 2),
    }
    for o in result.outcomes:
        assert o["old_keys_recovered"] == 0  # no room-key reset: no old keys to recover
        if o["restored"]:
            assert o["relogin_at"] <= o["served_at"] <= o["restored_at"] < HORIZON


# --- A: co-presence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_co_present_holder_serves_at_once(policy: str) -> None:
    check(run(policy), "u0", online=1, holders=1, served=1000, restored=1000, via="holder")


# --- B: the holder was online only before the reset ------------------------------------------------


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_holder_online_only_before_the_reset_never_serves(policy: str) -> None:
    # u3 still holds the key (the room is not lost), but never comes back
    check(run(policy), "u2", online=0, holders=1, served=NAN, restored=NAN, via="")


# --- C: the holder is online only after the reset, while the reset user is offline -------------------


def test_queue_serves_without_co_presence_and_restores_at_next_login() -> None:
    # u5 logs in at 3000 and serves the queue at once; u4 is offline then (1000-2000, 5000-6000)
    # and accepts the key when it logs in again at 5000
    check(run("queue"), "u4", online=0, holders=1, served=3000, restored=5000, via="holder")


def test_live_needs_co_presence() -> None:
    # u4's request at 1000 reached nobody; u4 and u5 are never online together afterwards
    check(run("live"), "u4", online=0, holders=1, served=NAN, restored=NAN, via="")


# --- D: a later co-present login --------------------------------------------------------------------


def test_queue_serves_when_a_holder_logs_in() -> None:
    check(run("queue"), "u6", online=0, holders=2, served=4500, restored=5000, via="holder")


def test_live_serves_at_the_reset_users_next_co_present_login() -> None:
    # u7 comes online at 4500 but a live request only goes out when u6 logs in (5000)
    check(run("live"), "u6", online=0, holders=2, served=5000, restored=5000, via="holder")


# --- backup: nobody needs to be online ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "online", "holders", "reset", "at"),
    [
        ("u0", 1, 1, 1000, 1000),
        ("u2", 0, 1, 1000, 1000),
        ("u4", 0, 1, 1000, 1000),
        ("u6", 0, 2, 1000, 1000),
        ("u9", 0, 0, 1000, 1000),  # u10 was reset at 500 and is not back yet
        ("u10", 0, 1, 500, 3000),  # u9 was restored from its backup at 1000: u10 has a holder
        ("u11", 1, 2, 100, 7000),
        ("u14", 1, 1, 2500, 2500),
    ],
)
def test_backup_restores_at_relogin_with_nobody_online(
    user: str, online: int, holders: int, reset: int, at: int
) -> None:
    check(
        run("backup"),
        user,
        reset_at=reset,
        relogin_at=at,
        online=online,
        holders=holders,
        served=at,
        restored=at,
        via="backup",
    )


def test_backup_loses_no_room() -> None:
    result = run("backup")
    assert not any(o["lost"] for o in result.outcomes)
    assert not any(r["lost"] for r in result.rooms)
    assert all(r["waiting_s"] == 0 and r["no_online_holder_s"] == 0 for r in result.rooms)


# --- E: a DM whose two members both reset is lost -------------------------------------------------------


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_dm_whose_members_both_reset_is_lost(policy: str, tmp_path: Path) -> None:
    result = run(policy)
    # u10 was offline at its scripted time (500): an admin reset it then, so when u9 resets at
    # 1000 nobody else holds the key and the room is lost; u10 logs in again at 3000, to nothing
    check(result, "u9", online=0, holders=0, served=NAN, restored=NAN, via="", lost=True)
    check(
        result,
        "u10",
        reset_at=500,
        relogin_at=3000,
        online=0,
        holders=0,
        served=NAN,
        restored=NAN,
        via="",
        lost=True,
    )
    room = room_of(result, "u9")
    assert room["lost"]
    assert room["lost_at"] == 1000.0
    assert room["room_key_resets"] == 0
    # the same through the files a run leaves behind
    write_run(result, tmp_path / "out", plots=False)
    rooms = pd.read_parquet(tmp_path / "out" / "rooms.parquet").set_index("room")
    outcomes = pd.read_parquet(tmp_path / "out" / "outcomes.parquet").set_index("user")
    dm = outcomes.loc["u9", "room"]
    assert outcomes.loc["u10", "room"] == dm
    assert bool(rooms.loc[dm, "lost"]) and rooms.loc[dm, "lost_at"] == 1000.0
    assert bool(outcomes.loc["u9", "lost"]) and bool(outcomes.loc["u10", "lost"])
    assert int(rooms["lost"].sum()) == 1  # and no other room


# --- F: a scripted reset of a user offline at that moment -----------------------------------------------


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_scripted_reset_of_offline_user_happens_at_its_time(policy: str) -> None:
    # reset at 100 (by an admin: u11 is offline); u11 logs in again at its first online start,
    # 7000, when u12 (online all day) holds the key and serves it
    check(
        run(policy),
        "u11",
        reset_at=100,
        relogin_at=7000,
        online=1,
        holders=2,
        served=7000,
        restored=7000,
        via="holder",
    )


# --- G: a scripted reset of a user online at that moment ---------------------------------------------


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_scripted_reset_of_online_user_happens_at_its_time(policy: str) -> None:
    check(run(policy), "u14", reset_at=2500, online=1, holders=1, served=2500, restored=2500, via="holder")


# --- rooms.parquet: waiting time and time without an online holder ---------------------------------------


@pytest.mark.parametrize(
    ("policy", "user", "waiting", "uncovered"),
    [
        ("queue", "u0", 0, 0),
        ("queue", "u2", HORIZON - 1000, HORIZON - 1000),
        ("queue", "u4", 4000, 3000),  # 1000-5000, u5 online 3000-4000
        ("queue", "u6", 4000, 3500),  # 1000-5000, u7 online from 4500
        ("queue", "u9", HORIZON - 1000, HORIZON - 1000),  # u10 online 3000-3200, then reset
        ("queue", "u11", 0, 0),
        ("live", "u4", HORIZON - 1000, HORIZON - 2000),  # u5 online 3000-4000, never served
        ("live", "u6", 4000, 3500),
    ],
)
def test_room_waiting_and_no_online_holder_times(
    policy: str, user: str, waiting: float, uncovered: float
) -> None:
    room = room_of(run(policy), user)
    assert (room["waiting_s"], room["no_online_holder_s"]) == (waiting, uncovered)
    assert room["encrypted"]


# --- times that are not exact in binary floating point -------------------------------------------------


def test_holder_session_starting_at_an_inexact_time_still_serves() -> None:
    # u0 resets at 128.3 (online 128.3-500, again 1500-1600); holder u1 online 1000.1-2000
    result = run("queue", FLOAT_TIMES)
    check(result, "u0", reset_at=128.3, online=0, holders=1, served=1000.1, restored=1500, via="holder")


def test_scripted_reset_at_an_inexact_online_start() -> None:
    # u2 scripted at 128.3, offline then, online 1000.1-3000; holder u3 online 2000-2500
    result = run("queue", FLOAT_TIMES)
    check(
        result,
        "u2",
        reset_at=128.3,
        relogin_at=1000.1,
        online=0,
        holders=1,
        served=2000,
        restored=2000,
        via="holder",
    )


def test_inexact_times_do_not_break_invariants() -> None:
    assert run("queue", FLOAT_TIMES).violations == []
