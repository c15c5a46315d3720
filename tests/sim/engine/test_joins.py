"""What joiners read of a room's past, per policy, against closed forms (the join rows).

* ``rocketchat``: a joiner is served the current key and the old ones; once it holds the key it
  reads the whole past.
* ``ratchet`` (megolm): a joiner reads nothing sent before it joined, and is handed the key at the
  first message after its join: it holds the key by then, and reads everything sent since.
* ``bundle`` (MSC4268): an explicit invite (probability f) to a room whose history is shared
  (probability s) carries a key bundle when a member holding the key is online at that moment.
  Into a room of g members who all hold the key, each online with probability p independently
  (exponential churn, a moment drawn independently of presence), that is 1 - (1 - p) ** g; a
  bundled joiner reads the whole past once it has logged in, the others none of it.

Rooms are disjoint groups of 3 with nobody resetting, and only a room's first join is compared
with the closed form (its g = 3 members hold the key); the bands are two-sided 99 % binomial bands.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from sim.engine import JOIN_COLUMNS, RunResult, run_scenario
from sim.inputs.scenario import parse_scenario

GROUP = 3
P_ONLINE = 20.0 / (20.0 + 60.0)
INVITES, SHARED = 0.6, 0.7
Z99 = stats.norm.ppf(0.995)
DAY = 86400.0


def _run(policy: str, *, check: bool = False) -> RunResult:
    users = 1200
    rooms = [
        {"type": "p", "members": [f"u{i}" for i in range(g * GROUP, (g + 1) * GROUP)]}
        for g in range(users // GROUP)
    ]
    data = {
        "simulation": {"horizon_days": 2.0, "seed": 20_261_207, "policy": policy},
        "population": {"users": users},
        "churn": {"model": "exponential", "mean_online_minutes": 20.0, "mean_offline_minutes": 60.0},
        "rooms": {"explicit": rooms, "shared_history_fraction": SHARED},
        "traffic": {"messages_per_room_day": 12.0},
        "membership": {"join_rate_per_room_day": 0.5, "invite_fraction": INVITES},
    }
    return run_scenario(parse_scenario(data), check_invariants=check)


@pytest.fixture(scope="module")
def joins() -> dict[str, pd.DataFrame]:
    return {policy: pd.DataFrame(_run(policy).joins) for policy in ("rocketchat", "ratchet", "bundle")}


def _within_band(successes: int, n: int, p: float) -> tuple[bool, str]:
    half = Z99 * math.sqrt(p * (1 - p) / n)
    observed = successes / n
    return abs(observed - p) < half, f"{observed:.4f} vs {p:.4f} +- {half:.4f} (n={n})"


def test_every_policy_sees_the_same_joins(joins: dict[str, pd.DataFrame]) -> None:
    columns = ["join_id", "user", "room", "kind", "history_visibility", "joined_at", "history_messages"]
    first = joins["rocketchat"]
    assert len(first) >= 300
    for policy in ("ratchet", "bundle"):
        pd.testing.assert_frame_equal(
            joins[policy][columns[:6]].reset_index(drop=True), first[columns[:6]].reset_index(drop=True)
        )


def test_rocketchat_joiners_read_the_whole_past(joins: dict[str, pd.DataFrame]) -> None:
    rows = joins["rocketchat"]
    keyed = rows[rows["keyed"]]
    assert len(keyed) > 0.9 * len(rows)
    assert (keyed["history_unreadable"] == 0).all() and (keyed["later_unreadable"] == 0).all()
    assert (keyed["history_messages"] > 0).mean() > 0.8


def test_ratchet_joiners_read_only_what_is_sent_after_they_joined(joins: dict[str, pd.DataFrame]) -> None:
    rows = joins["ratchet"]
    assert (rows["history_unreadable"] == rows["history_messages"]).all()
    assert rows["history_messages"].sum() > 1000
    # a message after the join hands the joiner a new session first: it reads all of them
    later = rows[rows["later_messages"] > 0]
    assert later["keyed"].all() and (later["later_unreadable"] == 0).all()
    assert (later["served_at"] == later["keyed_at"]).all()
    # ...and nothing else does: a joiner with no message since holds no key
    assert not rows[rows["later_messages"] == 0]["keyed"].any()


def test_bundle_closed_form(joins: dict[str, pd.DataFrame]) -> None:
    rows = joins["bundle"]
    first = rows.sort_values("joined_at").drop_duplicates("room")
    assert (first["room_size"] == GROUP + 1).all()
    eligible = first[(first["kind"] == "invite") & (first["history_visibility"] == "shared")]
    bundled = eligible["bundle_keys"] > 0
    ok, why = _within_band(int(bundled.sum()), len(eligible), 1 - (1 - P_ONLINE) ** GROUP)
    assert ok, why
    # only an invite to a shared room carries a bundle
    assert (
        rows[(rows["kind"] == "auto") | (rows["history_visibility"] == "joined")]["bundle_keys"] == 0
    ).all()
    # a bundled joiner who has logged in since (a day is ample: 60 min mean off) reads the past
    settled = rows[(rows["bundle_keys"] > 0) & (rows["joined_at"] < DAY)]
    assert len(settled) > 50 and (settled["history_unreadable"] == 0).all()
    unbundled = rows[rows["bundle_keys"] == 0]
    assert (unbundled["history_unreadable"] == unbundled["history_messages"]).all()
    # what every first join gets, all told: f * s * (1 - (1 - p) ** g) of them read their past
    p_full = INVITES * SHARED * (1 - (1 - P_ONLINE) ** GROUP)
    with_past = first[(first["history_messages"] > 0) & (first["joined_at"] < DAY)]
    ok, why = _within_band(int((with_past["history_unreadable"] == 0).sum()), len(with_past), p_full)
    assert ok, why


@pytest.mark.parametrize("policy", ["ratchet", "bundle"])
def test_the_invariants_hold_for_joiners(policy: str) -> None:
    result = _run(policy, check=True)
    assert result.invariants_checked and result.violations == []


def test_join_rows_are_written_and_read_back(tmp_path: Path) -> None:
    from sim import api
    from sim.results import write_run

    result = run_scenario(
        parse_scenario(
            {
                "simulation": {"horizon_days": 0.5, "seed": 3, "policy": "bundle"},
                "population": {"users": 60},
                "rooms": {"groups": 12, "group_size": 4},
                "traffic": {"messages_per_room_day": 24.0},
                "membership": {"join_rate_per_room_day": 4.0},
                "resets": {"rate_per_user_day": 1.0},
            }
        )
    )
    assert len(result.joins) > 5
    summary = write_run(result, tmp_path / "run", plots=False)
    assert summary["joins"]["n"] == len(result.joins)
    back = api.load(tmp_path / "run")
    pd.testing.assert_frame_equal(
        back.joins[list(JOIN_COLUMNS)].reset_index(drop=True), api.joins(result), check_dtype=False
    )
    # the report's joiner table pools what the summary says of the run
    from sim.results.load import joiners
    from sim.results.report import make_report

    table = joiners(back)
    assert len(table) == 1
    row, joins = table.iloc[0], summary["joins"]
    assert row["joins"] == joins["n"] and row["bundles"] == joins["bundles"]
    assert row["keyed_k"] == joins["fraction_keyed"]["k"]
    assert row["whole_past_k"] == joins["fraction_with_history"]["k"]
    assert row["key_median_s"] == pytest.approx(joins["time_to_key_km"]["median_s"])
    page = make_report(tmp_path / "run", tmp_path / "rep").read_text()
    assert "## Joiners" in page and (tmp_path / "rep" / "joiners.csv").is_file()
    # a run written before keysim kept joins reads back with none, and its report has no joiners
    (tmp_path / "run" / "joins.parquet").unlink()
    assert api.load(tmp_path / "run").joins.empty
    assert "## Joiners" not in make_report(tmp_path / "run", tmp_path / "rep").read_text()


def test_without_joins_ratchet_and_bundle_are_rocketchat_row_for_row() -> None:
    """The two policies change only what joiners get: on a population nobody joins, every reset
    comes back exactly as under Rocket.Chat."""

    def rows(policy: str) -> pd.DataFrame:
        data = {
            "simulation": {"horizon_days": 3.0, "seed": 9, "policy": policy},
            "population": {"users": 300},
            "rooms": {"dms": 150, "groups": 40, "group_size": 4},
            "resets": {"rate_per_user_day": 0.05, "forgot_password_rate_per_user_day": 0.05},
            "traffic": {"messages_per_room_day": 4.0},
        }
        return pd.DataFrame(run_scenario(parse_scenario(data)).outcomes).drop(columns=["policy"])

    reference = rows("rocketchat")
    assert len(reference) > 30
    for policy in ("ratchet", "bundle"):
        pd.testing.assert_frame_equal(rows(policy), reference)
