"""The simulator under both 2FA profiles, with TOTP users who lose their authenticators.

A person who loses its authenticator (and has no backup code) cannot pass the 2FA gate: it is
locked out until an admin resets its TOTP ``resets.admin_delay_hours`` later, then logs in without
TOTP and resets its E2E key (reason ``after_lost_authenticator``).  Under ``hardened`` a code is
accepted only for a strictly later time step, so the simulated people wait for fresh codes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest

from sim.engine import Simulation
from sim.engine.records import RunResult
from sim.inputs.scenario import load_scenario
from sim.results import outcomes_frame

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"
SMALL = {
    "population.users": 12,
    "rooms.dms": 6,
    "rooms.groups": 3,
    "rooms.group_size": 4,
    "simulation.horizon_days": 4,
    "resets.twofa_fraction": 1.0,
    "resets.rate_per_user_day": 0.3,
    "resets.lost_authenticator_rate_per_user_day": 0.2,
    "resets.admin_delay_hours": 6,
}


@functools.cache
def run(profile: str, backup_scrypt_n: int | None = 2) -> RunResult:
    scenario = load_scenario(SMOKE, {**SMALL, "simulation.profile": profile})
    return Simulation(scenario, check_invariants=True, backup_scrypt_n=backup_scrypt_n).run()


@pytest.mark.parametrize("profile", ["rocketchat", "hardened"])
def test_lost_authenticators_lock_people_out_until_an_admin_acts(profile: str) -> None:
    result = run(profile)
    assert result.violations == []
    frame = outcomes_frame(result)
    reasons = set(frame["reason"])
    assert {"reset", "after_lost_authenticator"} <= reasons, reasons
    # every such reset comes at least the admin's delay after the person lost its authenticator
    late = frame[frame["reason"] == "after_lost_authenticator"]
    assert late["locked_out_at"].notna().all()
    assert (late["reset_at"] - late["locked_out_at"] >= 6 * 3600.0 - 1e-6).all()
    assert frame.loc[frame["reason"] != "after_lost_authenticator", "locked_out_at"].isna().all()
    assert (late["relogin_at"].dropna() >= late["reset_at"].loc[late["relogin_at"].notna()]).all()


def test_profiles_differ_only_where_the_profile_matters() -> None:
    # the same people and presence: hardened makes some of them wait for a fresh code, so times
    # may shift by up to a 30 s step, but the resets are the same ones
    rc, hard = (outcomes_frame(run(p)) for p in ("rocketchat", "hardened"))
    key = ["reset_id", "user", "room"]
    assert rc[key].equals(hard[key])
    assert ((hard["reset_at"] - rc["reset_at"]).abs() <= 60.0).all()


@pytest.mark.slow
def test_the_scrypt_cost_of_backup_codes_changes_nothing_a_run_measures() -> None:
    # nobody types a backup code in a run; the simulator's cheap N gives identical tables
    cheap, full = run("hardened", 2), run("hardened", None)
    pd.testing.assert_frame_equal(outcomes_frame(cheap), outcomes_frame(full))
    assert cheap.rooms == full.rooms


def test_an_authenticator_is_lost_at_most_once() -> None:
    # after the admin removed its TOTP a user has no authenticator left to lose: with losses
    # planned twice for the same people, each still ends in exactly one such reset
    scenario = load_scenario(SMOKE, {**SMALL, "resets.rate_per_user_day": 0.0})
    sim = Simulation(scenario, check_invariants=True)
    sim.establish()
    for t in (3600.0, 10 * 3600.0):  # the second loss falls after the first one's admin delay
        for u in (1, 2, 3):
            sim.clock.at(t, sim.resets.reset, u, "lost_authenticator")
    sim.clock.run_until(sim.horizon)
    from sim.engine.collect import collect

    frame = outcomes_frame(collect(sim))
    late = frame[frame["reason"] == "after_lost_authenticator"]
    per_user = late.groupby("user")["reset_id"].nunique().to_dict()
    assert len(per_user) >= 2 and set(per_user.values()) == {1}, per_user


def test_the_reset_after_a_lockout_carries_it_whatever_its_cause() -> None:
    # a reset planned during the lockout waits for it to end and then coincides with the reset
    # after the admin's action: one of them happens, the other is absorbed, and the rows say
    # when the person was locked out either way
    scenario = load_scenario(
        SMOKE, {**SMALL, "resets.rate_per_user_day": 0.0, "resets.lost_authenticator_rate_per_user_day": 0.0}
    )
    sim = Simulation(scenario, check_invariants=True)
    sim.establish()
    users = [
        u
        for u in range(1, 6)
        if any(sim.server.room(r).encrypted for r in sim.server.rooms_of(sim.user_ids[u]))
    ]
    for u in users:
        sim.clock.at(3600.0, sim.resets.reset, u, "lost_authenticator")
        sim.clock.at(4000.0, sim.resets.plan, u, "reset")
    sim.clock.run_until(sim.horizon)
    from sim.engine.collect import collect

    result = collect(sim)
    assert result.violations == []
    frame = outcomes_frame(result)
    mine = frame[frame["user"].isin([f"u{u}" for u in users])]
    assert len(mine) > 0
    assert (mine.groupby("user")["reset_id"].nunique() == 1).all()
    assert (mine["locked_out_at"] == 3600.0).all()
    assert sim.resets.absorbed >= mine["user"].nunique()
