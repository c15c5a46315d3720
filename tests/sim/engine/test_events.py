"""Event efficiency, by count (never by time): the simulator schedules work only where the
protocol needs presence.  Users nobody asks about cost nothing after time 0, and a reset costs
a bounded number of SimPy events however many users and days the run has."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from sim.engine import run_scenario
from sim.inputs.scenario import load_scenario

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"
BIG = {
    "population.users": 3000,
    "rooms.dms": 1500,
    "rooms.groups": 600,
    "traffic.messages_per_room_day": 0,
    "simulation.horizon_days": 10,
}


@functools.cache
def stats(rate: float) -> dict[str, Any]:
    return run_scenario(load_scenario(SMOKE, {**BIG, "resets.rate_per_user_day": rate})).stats


def test_a_run_without_resets_schedules_nothing() -> None:
    s = stats(0.0)
    # 3,000 users over 10 days with 4-hour cycles would be 360,000 state changes to toggle
    assert (s["events"], s["ticks"], s["resets"]) == (0, 0, 0)
    assert s["logins"] == 3000  # the establishment at time 0, and nothing after
    assert s["presence_events"] == 3000  # each user's state at time 0, and nothing after


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_events_grow_with_resets_not_with_users_and_days(rate: float) -> None:
    s = stats(rate)
    assert s["resets"] > 0
    assert s["events"] < 25 * s["resets"]
    # presence is drawn for the users followed, far below toggling everybody all the time
    assert s["presence_events"] < 0.7 * 3000 * 10 * 86400 / (4 * 3600) * 2
