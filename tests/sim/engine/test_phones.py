"""People with a phone besides their web client (``[devices]``), against what must follow.

* A person who forgot its E2E password and has a phone signed in with the key changes the
  password there: every room back at once, with its history.  With forgotten passwords the only
  resets, no phone is ever signed out, so a person's resets all go that way if it has a phone and
  none do otherwise: the share of people restored by phone is ``phone_fraction`` (99 % band).
* Under ``rocketchat`` a live request is answered by phones only: a relogin with a holder whose
  app is open at that moment is served at the relogin itself; one with no holder reachable is
  not.  Under ``queue`` the open phone's loop serves within a tick.
* A reset logs the phone out; it signs in again at its first opening after the new keys.
* A recovery contact's open phone answers a request (policy contacts): answered at once with
  probability p_web + (1 - p_web) * phone_fraction * p_phone.
* ``phone_fraction = 0`` is the run without phones (the golden tables pin it), and then
  ``rocketchat`` is ``queue``, row for row: nobody answers the live request.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from sim.engine import RunResult, Simulation, run_scenario
from sim.engine.setup import make_phone_presence
from sim.inputs.scenario import Scenario, parse_scenario

TICK_S = 10.0
Z99 = stats.norm.ppf(0.995)


def _scenario(
    policy: str, users: int, resets: dict[str, float], phones: float, simulation_profile: str = "rocketchat"
) -> Scenario:
    group = 3
    rooms = [
        {"type": "p", "members": [f"u{i}" for i in range(g * group, (g + 1) * group)]}
        for g in range(users // group)
    ]
    return parse_scenario(
        {
            "simulation": {
                "horizon_days": 2.0,
                "seed": 20_261_207,
                "policy": policy,
                "tick_seconds": TICK_S,
                "profile": simulation_profile,
            },
            "population": {"users": users},
            "churn": {"model": "exponential", "mean_online_minutes": 20.0, "mean_offline_minutes": 60.0},
            "rooms": {"explicit": rooms},
            "resets": resets,
            "devices": {"phone_fraction": phones, "phone_session_minutes": 20.0, "phone_gap_minutes": 60.0},
        }
    )


def test_a_phone_with_the_key_answers_for_a_forgotten_password() -> None:
    f = 0.4
    sim = Simulation(_scenario("rocketchat", 1500, {"forgot_password_rate_per_user_day": 0.2}, f))
    result = sim.run()
    rows = pd.DataFrame(result.outcomes)
    by_phone = rows[rows["restored_via"] == "phone"]
    assert (by_phone["restored_at"] == by_phone["reset_at"]).all()
    assert (by_phone["history_unreadable"] == 0).all()
    # per person: all its resets by phone if it has one, none otherwise
    has_phone = {f"u{u}" for u in sim.devices.phones}
    per_user = rows.groupby("user")["restored_via"].agg(lambda v: set(v) == {"phone"})
    assert (per_user == per_user.index.isin(has_phone)).all()
    n, k = len(per_user), int(per_user.sum())
    half = Z99 * math.sqrt(f * (1 - f) / n)
    assert abs(k / n - f) < half, (k, n)
    assert not result.violations


def _reachable_rows(policy: str) -> tuple[pd.DataFrame, pd.Series]:
    """Own-key resets with everybody on a phone: the rows whose two holders held the key at the
    relogin, and for each whether one of the holders' apps was open then (and signed in: a
    holder that reset earlier is left out)."""
    sc = _scenario(policy, 2400, {"rate_per_user_day": 0.1}, 1.0)
    result: RunResult = run_scenario(sc, check_invariants=True)
    assert not result.violations
    rows = pd.DataFrame(result.outcomes)
    rows = rows[(rows["holders_at_relogin"] == 2) & rows["relogin_at"].notna()]
    first_reset = rows.groupby("user")["reset_at"].min()
    phones = make_phone_presence(sc)

    def members(user: str) -> list[int]:
        g = int(user[1:]) // 3
        return [m for m in range(3 * g, 3 * g + 3) if f"u{m}" != user]

    keep, open_ = [], []
    for row in rows.itertuples():
        holders = members(str(row.user))
        at = float(row.relogin_at)
        signed_out = any(first_reset.get(f"u{m}", math.inf) <= at for m in holders)
        keep.append(not signed_out)
        open_.append(any(phones.is_online(m, at) for m in holders))
    mask = pd.Series(keep, index=rows.index)
    return rows[mask], pd.Series(open_, index=rows.index)[mask]


@pytest.mark.parametrize("policy", ["rocketchat", "queue"])
def test_an_open_phone_serves_a_relogin(policy: str) -> None:
    rows, phone_open = _reachable_rows(policy)
    wait = rows["served_at"] - rows["relogin_at"]
    served_by_phone = wait[phone_open]
    assert len(served_by_phone) >= 80
    assert (rows.loc[phone_open, "holders_online_at_relogin"] > 0).all()  # a phone counts
    assert (served_by_phone <= TICK_S).mean() > 0.99
    at_once = (served_by_phone == 0).mean()
    if policy == "rocketchat":
        assert at_once > 0.99, at_once  # the phone answers the relogin's live request
    else:
        assert at_once < 0.5, at_once  # only its loop serves
    # nobody reachable: nobody answers at the relogin
    alone = wait[rows["holders_online_at_relogin"] == 0]
    assert len(alone) >= 50 and (alone.dropna() > 0).all()


@pytest.mark.parametrize("profile", ["rocketchat", "hardened"])
def test_a_reset_signs_the_phone_out_until_the_new_keys(profile: str) -> None:
    """Under hardened the phone's sign-in right after the new keys waits for a fresh TOTP step
    (the reset and the relogin used the current ones); if its app closes meanwhile it signs in
    at its next opening."""
    sc = _scenario(
        "rocketchat", 600, {"rate_per_user_day": 0.2, "twofa_fraction": 1.0}, 1.0, simulation_profile=profile
    )
    sim = Simulation(sc)
    result = sim.run()
    assert not result.violations
    rows = pd.DataFrame(result.outcomes)
    reset_users = {int(u[1:]) for u in rows["user"]}
    assert result.stats["phones"] == 600
    # every phone signed in once at set-up; a phone whose owner reset signs in again, at most
    # once per reset, and only with the owner's current keys
    again = {u for u, dev in sim.devices.phones.items() if dev.clients_made > 1}
    assert len(again) > 0.5 * len(reset_users) and again <= reset_users
    assert result.stats["phone_logins"] == sum(dev.clients_made for dev in sim.devices.phones.values())
    last_reset = rows.groupby("user")["reset_at"].max()
    for u, dev in sim.devices.phones.items():
        phone = dev.client
        assert phone is not None
        if phone.online:  # signed in: with the owner's current keys, after its last reset
            assert phone.public_key == sim.server.user(sim.user_ids[u]).e2e_public_key
            assert dev.login_at >= last_reset.get(f"u{u}", 0.0)
        else:  # signed out by a reset it has not opened since
            assert u in reset_users and dev.login_at < last_reset[f"u{u}"]


def test_with_web_clients_only_rocketchat_is_the_queue() -> None:
    resets = {"rate_per_user_day": 0.1, "forgot_password_rate_per_user_day": 0.1}

    def rows(policy: str) -> pd.DataFrame:
        out = pd.DataFrame(run_scenario(_scenario(policy, 600, resets, 0.0)).outcomes)
        return out.drop(columns=["policy"])

    pd.testing.assert_frame_equal(rows("rocketchat"), rows("queue"))


def test_a_recovery_contacts_open_phone_answers() -> None:
    """Policy contacts, one contact each (groups of 2), half of the people on a phone.  A person
    without a phone who forgot its password is answered at once when its contact is online on
    the web (p = 0.25) or, failing that, has a phone whose app is open (0.5 * 0.25):
    P = 0.25 + 0.75 * 0.5 * 0.25 = 0.34375."""
    users = 6000
    rooms = [{"type": "p", "members": [f"u{i}", f"u{i + 1}"]} for i in range(0, users, 2)]
    sc = parse_scenario(
        {
            "simulation": {"horizon_days": 2.0, "seed": 20_261_207, "policy": "contacts"},
            "population": {"users": users},
            "churn": {"model": "exponential", "mean_online_minutes": 20.0, "mean_offline_minutes": 60.0},
            "rooms": {"explicit": rooms},
            "resets": {"forgot_password_rate_per_user_day": 0.15},
            "contacts": {"per_user": 1},
            "devices": {"phone_fraction": 0.5, "phone_session_minutes": 20.0, "phone_gap_minutes": 60.0},
        }
    )
    sim = Simulation(sc)
    result = sim.run()
    assert not result.violations
    rows = pd.DataFrame(result.outcomes)
    without = rows[~rows["user"].isin({f"u{u}" for u in sim.devices.phones})]
    at_once = (without["restored_via"] == "contacts") & (without["restored_at"] == without["reset_at"])
    p = 0.25 + 0.75 * 0.5 * 0.25
    n = len(without)
    assert n >= 100
    half = Z99 * math.sqrt(p * (1 - p) / n)
    assert abs(at_once.mean() - p) < half, (at_once.mean(), p, n)
