"""The other systems' designs (policies escrow, contacts, rejoin, dehydrated) against their closed forms.

* ``escrow``: a person who forgot its E2E password gets it back from the PIN vault, at once, with
  probability (1 - loss) * (f + (1 - f) * min(G, c) / c): it recalls the PIN with probability f,
  else tries c candidates in a random order and the vault destroys the record after G wrong ones.
* ``contacts``: with k recovery contacts, each online with probability p = on / (on + off)
  independently (exponential churn, a moment chosen independently of their presence), somebody
  answers at once with probability 1 - (1 - p) ** k.
* ``rejoin``: every room is back at the relogin itself, and none of its history.
* ``dehydrated``: a person's first reset comes back from its dehydrated device with probability
  setup * kept, when the device was made before the rooms' keys; a device made later holds only
  keys shared since (at a member's message, or a new key).

Each population is split into disjoint groups, so each reset yields one row per room of its group
and rows of different groups are independent; the bands are two-sided 99 % binomial bands.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from sim.engine import RunResult, run_scenario
from sim.inputs.scenario import parse_scenario

MEAN_ONLINE_MIN = 20.0
MEAN_OFFLINE_MIN = 60.0
P_ONLINE = MEAN_ONLINE_MIN / (MEAN_ONLINE_MIN + MEAN_OFFLINE_MIN)  # 0.25
Z99 = stats.norm.ppf(0.995)


def _run(
    policy: str, group: int, users: int, resets: dict[str, float], **tables: dict[str, object]
) -> RunResult:
    rooms = [
        {"type": "p", "members": [f"u{i}" for i in range(g * group, (g + 1) * group)]}
        for g in range(users // group)
    ]
    data: dict[str, object] = {
        "simulation": {"horizon_days": 2.0, "seed": 20_261_207, "policy": policy},
        "population": {"users": users},
        "churn": {
            "model": "exponential",
            "mean_online_minutes": MEAN_ONLINE_MIN,
            "mean_offline_minutes": MEAN_OFFLINE_MIN,
        },
        "rooms": {"explicit": rooms},
        "resets": resets,
        **tables,
    }
    return run_scenario(parse_scenario(data))


def _within_band(successes: int, n: int, p: float) -> tuple[bool, str]:
    half = Z99 * math.sqrt(p * (1 - p) / n)
    observed = successes / n
    return abs(observed - p) < half, f"{observed:.4f} vs {p:.4f} +- {half:.4f} (n={n})"


@pytest.mark.parametrize(
    ("remembered", "candidates", "max_guesses", "loss"),
    [(0.8, 20, 10, 0.0), (0.5, 20, 5, 0.2), (0.3, 4, 10, 0.1)],
    ids=["defaults", "tight-limit", "few-candidates"],
)
def test_escrow_success_is_the_closed_form(
    remembered: float, candidates: int, max_guesses: int, loss: float
) -> None:
    result = _run(
        "escrow",
        3,
        1500,
        {"forgot_password_rate_per_user_day": 0.15},
        escrow={
            "pin_remembered_fraction": remembered,
            "pin_candidates": candidates,
            "max_guesses": max_guesses,
            "vault_loss_fraction": loss,
        },
    )
    rows = pd.DataFrame(result.outcomes)
    per_reset = rows.groupby("reset_id")["restored_via"].first()
    n, successes = len(per_reset), int((per_reset == "escrow").sum())
    assert n >= 300
    expected = (1 - loss) * (remembered + (1 - remembered) * min(max_guesses, candidates) / candidates)
    ok, text = _within_band(successes, n, expected)
    assert ok, text
    escrowed = rows[rows["restored_via"] == "escrow"]
    # at once, and with the whole history (nothing was reset)
    assert (escrowed["restored_at"] == escrowed["reset_at"]).all()
    assert (escrowed["history_unreadable"] == 0).all()
    # whoever the vault failed reset their key and waited for a holder, as under rocketchat
    others = rows[rows["restored_via"] != "escrow"]
    assert set(others["restored_via"]) <= {"holder", ""}


@pytest.mark.parametrize("k", [1, 3])
def test_contacts_answer_at_once_with_the_closed_form(k: int) -> None:
    """Groups of k + 1: the k others are the person's contacts (they are named from its rooms)."""
    result = _run(
        "contacts",
        k + 1,
        3000 // (k + 1) * (k + 1),
        {"forgot_password_rate_per_user_day": 0.05},
        contacts={"per_user": k, "patience_hours": 24.0},
    )
    assert result.stationary_online == pytest.approx(P_ONLINE, abs=1e-12)
    rows = pd.DataFrame(result.outcomes)
    at_once = (
        rows["restored"] & (rows["restored_at"] == rows["reset_at"]) & (rows["restored_via"] == "contacts")
    )
    n = len(rows)
    assert n >= 250
    ok, text = _within_band(int(at_once.sum()), n, 1 - (1 - P_ONLINE) ** k)
    assert ok, text
    via = rows.loc[rows["restored"], "restored_via"]
    assert set(via) <= {"contacts", "holder"}
    contacts = rows[rows["restored_via"] == "contacts"]
    assert (contacts["history_unreadable"] == 0).all()
    # an answer that comes later is taken at the person's next login: after the reset, and
    # within the horizon
    assert (contacts["restored_at"] >= contacts["reset_at"]).all()
    # with one contact, nobody online at once means waiting: a strict majority of rows
    if k == 1:
        assert (~at_once).mean() > 0.6


def test_rejoin_restores_every_room_at_the_relogin_without_history() -> None:
    result = _run(
        "rejoin",
        4,
        1200,
        {"rate_per_user_day": 0.1, "forgot_password_rate_per_user_day": 0.1},
        traffic={"messages_per_room_day": 24.0},
    )
    rows = pd.DataFrame(result.outcomes)
    assert len(rows) >= 300
    assert rows["restored"].all()
    assert (rows["restored_at"] == rows["relogin_at"]).all()
    # with web clients only, nobody answers the live request of the login's handshake (a
    # holder's phone could: tests/sim/engine/test_phones.py): every room is rejoined
    assert set(rows["restored_via"]) == {"rejoin"}
    rejoined = rows[rows["restored_via"] == "rejoin"]
    assert len(rejoined) > 0.8 * len(rows)
    with_history = rejoined[rejoined["history_messages"] > 0]
    assert len(with_history) > 100
    assert (with_history["history_unreadable"] == with_history["history_messages"]).all()
    assert not result.violations


@pytest.mark.parametrize("policy", ["escrow", "contacts"])
def test_password_recovery_changes_nothing_else(policy: str) -> None:
    """Escrow and contacts act on a forgotten password only: with own-key resets alone a run is
    the rocketchat run, row for row."""

    def rows(name: str) -> pd.DataFrame:
        out = pd.DataFrame(_run(name, 3, 600, {"rate_per_user_day": 0.2}).outcomes)
        return out.drop(columns=["policy"])

    pd.testing.assert_frame_equal(rows(policy), rows("rocketchat"))


@pytest.mark.parametrize("phones", [0.0, 0.5], ids=["web", "phones"])
@pytest.mark.parametrize(
    "policy",
    ["rocketchat", "live", "backup", "escrow", "contacts", "rejoin", "dehydrated", "ratchet", "bundle"],
)
def test_the_invariants_hold_under_every_design(policy: str, phones: float) -> None:
    data = {
        "simulation": {"horizon_days": 3.0, "seed": 4, "policy": policy},
        "devices": {"phone_fraction": phones},
        "population": {"users": 300},
        "rooms": {"dms": 150, "groups": 40, "group_size": 4},
        "resets": {"rate_per_user_day": 0.05, "forgot_password_rate_per_user_day": 0.1},
        "traffic": {"messages_per_room_day": 4.0},
        "membership": {"join_rate_per_room_day": 0.2},
    }
    result = run_scenario(parse_scenario(data), check_invariants=True)
    assert result.invariants_checked
    assert result.outcomes and result.violations == []
    assert ("phone" in {o["restored_via"] for o in result.outcomes}) is bool(phones)


def _dehydrated_rows(rotation_days: float, messages: float, rate: float = 0.1) -> pd.DataFrame:
    result = _run(
        "dehydrated",
        3,
        1500,
        {"forgot_password_rate_per_user_day": rate, "recovery_key_kept_fraction": 0.8},
        dehydrated={"setup_fraction": 0.5, "rotation_days": rotation_days},
        traffic={"messages_per_room_day": messages},
    )
    assert not result.violations
    return pd.DataFrame(result.outcomes)


def test_a_dehydrated_device_restores_what_it_was_sent() -> None:
    """Devices made before the rooms got every first room key: a person's first reset comes
    back from its device with probability setup * kept = 0.4, at once and with the history.  The
    device made at that rehydration is sent nothing (no messages, no new keys): a second reset
    never comes back from it."""
    rows = _dehydrated_rows(7.0, 0.0, rate=0.3)
    resets = rows.drop_duplicates("reset_id").sort_values("reset_at")
    first = resets.drop_duplicates("user")
    later = resets[~resets["reset_id"].isin(first["reset_id"])]
    by_device = first["restored_via"] == "dehydrated"
    ok, why = _within_band(int(by_device.sum()), len(first), 0.5 * 0.8)
    assert ok, why
    restored = rows[rows["restored_via"] == "dehydrated"]
    assert (restored["restored_at"] == restored["reset_at"]).all()
    assert (restored["history_unreadable"] == 0).all()
    assert len(later) >= 50 and not (later["restored_via"] == "dehydrated").any()


def test_a_replaced_dehydrated_device_has_only_what_was_sent_since() -> None:
    """Replaced every 6 hours (at the person's first login after that): without messages, a
    reset on the second day finds the device empty; with messages, members share the current
    key with it at their next message, and it restores again."""
    quiet = _dehydrated_rows(0.25, 0.0, rate=0.3)
    busy = _dehydrated_rows(0.25, 48.0, rate=0.3)

    def share(rows: pd.DataFrame, lo: float, hi: float) -> float:
        resets = rows.drop_duplicates("reset_id")
        resets = resets[(resets["reset_at"] >= lo) & (resets["reset_at"] < hi)]
        assert len(resets) >= 60
        return float((resets["restored_via"] == "dehydrated").mean())

    day = 86400.0
    assert share(quiet, 0.0, 0.25 * day) > 0.25  # the first device, with the first keys
    assert share(quiet, day, 2 * day) < 0.02
    assert share(busy, day, 2 * day) > 0.2


@pytest.mark.parametrize("policy", ["dehydrated", "contacts"])
def test_the_designs_on_a_faulty_network(policy: str) -> None:
    """Shares with dehydrated devices and contacts' answers are fire-and-forget requests like
    any other: some are lost, the run goes on, and the invariants hold."""
    result = _run(
        policy,
        3,
        600,
        {"forgot_password_rate_per_user_day": 0.3},
        traffic={"messages_per_room_day": 24.0},
        faults={"request_loss": 0.2, "request_delay": 0.1},
    )
    assert not result.violations
    rows = pd.DataFrame(result.outcomes)
    assert (rows["restored_via"] == policy).sum() > 50
