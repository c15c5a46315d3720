"""History in the summary: a restoration that brings back the current key but not the messages
before the reset is not a full one (``fraction_restored_with_history``, ``history_readable``)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pandas as pd
import pytest

from sim.engine import RunResult, run_scenario
from sim.inputs.scenario import load_scenario
from sim.results import outcomes_frame
from sim.results.tables import ratio, summarize

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"


@functools.cache
def recovered_by_owners() -> RunResult:
    # groups of three that lose their last holder and are recovered by a room-key reset, which
    # starts the room afresh: the messages before it stay unreadable to everybody
    overrides = {
        "rooms.dms": 0,
        "rooms.group_size": 2,
        "resets.rate_per_user_day": 2.0,
        "recovery.owner_resets_lost_rooms": True,
        "traffic.messages_per_room_day": 40,
    }
    return run_scenario(load_scenario(SMOKE, overrides))


def test_a_room_key_reset_restores_without_history() -> None:
    result = recovered_by_owners()
    rows = outcomes_frame(result)
    fresh = rows[(rows["restored_via"] == "room_key_reset") & (rows["history_messages"] > 0)]
    assert len(fresh) > 0
    assert (fresh["history_unreadable"] == fresh["history_messages"]).all()
    summary = summarize(result)
    full, restored = summary["fraction_restored_with_history"], summary["fraction_restored"]
    assert full["k"] < restored["k"] and full["n"] == restored["n"]
    readable = summary["history_readable"]
    assert 0 < readable["value"] < 1
    assert readable["ci_low"] <= readable["value"] <= readable["ci_high"]
    # the ratio is over the restored rows' messages
    kept = rows[rows["restored"]]
    assert readable["n"] == kept["history_messages"].sum()
    assert readable["k"] == (kept["history_messages"] - kept["history_unreadable"]).sum()


def test_ratio_of_sums_with_a_bootstrap_interval() -> None:
    y, x = pd.Series([0, 5, 10, 3]), pd.Series([10, 5, 10, 3])
    r = ratio(y, x)
    assert (r["k"], r["n"], r["rows"]) == (18, 28, 4)
    assert r["value"] == pytest.approx(18 / 28)
    assert r["ci_low"] < r["value"] < r["ci_high"]
    assert ratio(y, x) == r  # a fixed seed: the same rows, the same interval


@pytest.mark.parametrize(
    ("y", "x", "value"),
    [([4, 6], [4, 6], 1.0), ([0, 0], [3, 1], 0.0), ([2], [4], 0.5)],
)
def test_ratio_without_spread_has_a_point_interval(y: list[int], x: list[int], value: float) -> None:
    r = ratio(pd.Series(y), pd.Series(x))
    assert r["value"] == r["ci_low"] == r["ci_high"] == value


def test_ratio_of_nothing_is_nan() -> None:
    r = ratio(pd.Series([], dtype=float), pd.Series([], dtype=float))
    assert r["n"] == 0 and math.isnan(r["value"])
