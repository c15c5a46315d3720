"""The scenario schema: every key a scenario may contain, with its type, default and check.

:data:`SCHEMA` declares the keys of each section and :data:`TABLES` the rows of its arrays of
tables, each as a :class:`Key`; ``scenarios/README.md`` documents them for users.  A check returns
``None`` for a good value or the problem in words, which :mod:`sim.inputs.scenario` raises as a
``ScenarioError`` naming the dotted key.  May import the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import POLICIES

from .topology import GENERATORS

__all__ = ["SCHEMA", "SEED_LIMIT", "TABLES", "Check", "Key"]


Check = Callable[[Any], str | None]


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be > 0, got {v}"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be >= 0, got {v}"


def _fraction(v: Any) -> str | None:
    return None if 0 <= v <= 1 else f"must be between 0 and 1, got {v}"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}, got {v!r}"

    return check


def _at_least(n: float) -> Check:
    def check(v: Any) -> str | None:
        return None if v >= n else f"must be >= {n}, got {v}"

    return check


def _amplitude(v: Any) -> str | None:
    return None if 0 <= v < 1 else f"must be >= 0 and < 1, got {v}"


#: seeds are stored in the tables as signed 64-bit integers
SEED_LIMIT = 2**63


def _seed(v: Any) -> str | None:
    return None if 0 <= v < SEED_LIMIT else f"must be in [0, 2**63), got {v}"


def _run_name(v: Any) -> str | None:
    """A run's name and id become directory names (``runs/<run_id>/``): no separators."""
    if v == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
        return None
    return f"must be letters, digits, '.', '_' or '-' (starting with a letter or digit), got {v!r}"


@dataclass(frozen=True, slots=True)
class Key:
    type: type | tuple[type, ...]
    default: Any
    check: Check | None = None
    doc: str = ""


#: section -> key -> declaration.  Tables of tables (``[[rooms.explicit]]``,
#: ``[[resets.scripted]]``, ``[[population.classes]]``) are declared in :data:`TABLES`.
SCHEMA: dict[str, dict[str, Key]] = {
    "simulation": {
        "name": Key(str, "", _run_name, "run name (default: the file name)"),
        "run_id": Key(str, "", _run_name, "the run's id (default: <name>-<seed>[-<overrides' digest>])"),
        "horizon_days": Key((int, float), 30.0, _positive, "simulated time, days"),
        "seed": Key(int, 0, _seed, "root seed; --seed overrides"),
        "policy": Key(str, "rocketchat", _one_of(*POLICIES), "recovery policy"),
        "crypto": Key(str, "symbolic", _one_of("symbolic", "real"), "crypto backend"),
        "profile": Key(str, "rocketchat", _one_of("rocketchat", "hardened"), "2FA profile"),
        "tick_seconds": Key((int, float), 10.0, _positive, "key-distribution interval (RC: 10 s)"),
    },
    "population": {
        "users": Key(int, 100, _at_least(2), "number of users, named u0 .. u{N-1}"),
        "class_assignment": Key(
            str,
            "random",
            _one_of("random", "degree", "contiguous"),
            "how users get their [[population.classes]]: at random (seeded), by room count, or in blocks",
        ),
    },
    "churn": {
        "model": Key(
            str, "exponential", _one_of("exponential", "weibull", "lognormal", "trace", "collegemsg"), ""
        ),
        "collegemsg_lead_minutes": Key(
            (int, float), 5.0, _non_negative, "model collegemsg: online this long before each message sent"
        ),
        "collegemsg_linger_minutes": Key(
            (int, float), 30.0, _positive, "model collegemsg: and this long after it"
        ),
        "collegemsg_gap_minutes": Key(
            (int, float), 0.0, _non_negative, "model collegemsg: windows closer than this are one session"
        ),
        "mean_online_minutes": Key((int, float), 60.0, _positive, ""),
        "mean_offline_minutes": Key((int, float), 300.0, _positive, ""),
        "shape": Key((int, float), 0.6, _positive, "Weibull shape k"),
        "sigma": Key((int, float), 1.0, _positive, "lognormal sigma"),
        "rhythm": Key(str, "none", _one_of("none", "daily", "weekly"), ""),
        "rhythm_amplitude": Key((int, float), 0.0, _amplitude, ""),
        "rhythm_peak_hour": Key(
            (int, float),
            20.0,
            lambda v: None if 0 <= v < 168 else f"must be in [0, 168), got {v}",
            "hour of the day (daily) or of the week (weekly)",
        ),
        "trace": Key(str, "", None, "CSV user,online_at,offline_at (model = trace)"),
    },
    "rooms": {
        "generator": Key(
            str,
            "random",
            _one_of(*GENERATORS),
            "",
        ),
        "mean_degree": Key((int, float), 8.0, _non_negative, "generator random: expected contacts per user"),
        "graph": Key(
            str,
            "",
            None,
            "generator networkx: karate_club, les_miserables, florentine_families, davis_southern_women",
        ),
        "dms": Key(int, 0, _non_negative, ""),
        "groups": Key(int, 0, _non_negative, ""),
        "group_size": Key(int, 5, _at_least(2), ""),
        "group_size_dist": Key(str, "fixed", _one_of("fixed", "poisson", "geometric", "uniform"), ""),
        "group_size_max": Key(int, 50, _at_least(2), ""),
        "unencrypted_fraction": Key((int, float), 0.0, _fraction, ""),
        "shared_history_fraction": Key(
            (int, float), 1.0, _fraction, "rooms whose history visibility is 'shared' (policy bundle)"
        ),
        "communities": Key(int, 10, _at_least(1), ""),
        "p_in": Key((int, float), 0.1, _fraction, ""),
        "p_out": Key((int, float), 0.001, _fraction, ""),
        "ba_m": Key(int, 2, _at_least(1), ""),
        "ws_k": Key(int, 4, _at_least(2), ""),
        "ws_p": Key((int, float), 0.1, _fraction, ""),
        "file": Key(str, "", None, "edge list, CSV, GraphML or GML (generator = file or bipartite)"),
    },
    "resets": {
        "rate_per_user_day": Key((int, float), 0.0, _non_negative, "own-key resets while online"),
        "forgot_password_rate_per_user_day": Key(
            (int, float), 0.0, _non_negative, "new-device logins with a forgotten E2E password"
        ),
        "twofa_fraction": Key((int, float), 0.0, _fraction, "users with TOTP enabled"),
        "lost_authenticator_rate_per_user_day": Key(
            (int, float), 0.0, _non_negative, "TOTP users losing their authenticator and backup codes"
        ),
        "admin_delay_hours": Key(
            (int, float), 24.0, _non_negative, "until an admin resets a locked-out user's TOTP"
        ),
        "recovery_key_kept_fraction": Key(
            (int, float),
            1.0,
            _fraction,
            "policies backup, dehydrated: users who still have their recovery key",
        ),
    },
    "membership": {
        "join_rate_per_room_day": Key((int, float), 0.0, _non_negative, ""),
        "leave_rate_per_room_day": Key((int, float), 0.0, _non_negative, ""),
        "invite_fraction": Key(
            (int, float),
            1.0,
            _fraction,
            "joins that are explicit invites (the rest: team auto-join, a Matrix space); policy bundle",
        ),
    },
    "recovery": {
        "owner_resets_lost_rooms": Key(
            bool, False, None, "an online owner resets the key of a room nobody can serve"
        ),
        "room_key_rotation_per_room_day": Key(
            (int, float), 0.0, _non_negative, "owners rotate the keys of private groups they hold"
        ),
    },
    "escrow": {
        "pin_remembered_fraction": Key(
            (int, float), 0.8, _fraction, "policy escrow: people who recall their PIN at once"
        ),
        "pin_candidates": Key(int, 20, _at_least(1), "PINs a person who forgot tries among (one is right)"),
        "max_guesses": Key(int, 10, _at_least(1), "the vault's guess limit (Signal SVR2, iCloud: 10)"),
        "vault_loss_fraction": Key((int, float), 0.0, _fraction, "recoveries that find the record lost"),
    },
    "contacts": {
        "per_user": Key(int, 3, _at_least(1), "policy contacts: recovery contacts per person (Apple: <= 5)"),
        "patience_hours": Key(
            (int, float), 24.0, _positive, "how long a person waits for a contact before resetting"
        ),
    },
    "dehydrated": {
        "setup_fraction": Key(
            (int, float),
            0.5,
            _fraction,
            "policy dehydrated: people with recovery set up (a dehydrated device)",
        ),
        "rotation_days": Key(
            (int, float),
            7.0,
            _positive,
            "a client replaces its dehydrated device this often (matrix-js-sdk: 7)",
        ),
    },
    "devices": {
        "phone_fraction": Key(
            (int, float), 0.0, _fraction, "people with Rocket.Chat's mobile app besides their web client"
        ),
        "phone_session_minutes": Key((int, float), 5.0, _positive, "mean time the app is open"),
        "phone_gap_minutes": Key((int, float), 120.0, _positive, "mean time between two openings"),
    },
    "traffic": {
        "messages_per_room_day": Key((int, float), 0.0, _non_negative, ""),
    },
    "faults": {
        "request_loss": Key((int, float), 0.0, _fraction, "fire-and-forget requests lost"),
        "request_duplicate": Key((int, float), 0.0, _fraction, "... delivered twice"),
        "request_delay": Key((int, float), 0.0, _fraction, "... held back (reordered)"),
        "push_loss": Key((int, float), 0.0, _fraction, "server pushes lost"),
        "push_duplicate": Key((int, float), 0.0, _fraction, "... delivered twice"),
        "push_delay": Key((int, float), 0.0, _fraction, "... held back (reordered)"),
        "delay_mean_seconds": Key((int, float), 30.0, _positive, "mean hold-back"),
        "crash_on_push": Key((int, float), 0.0, _fraction, "a device crashes before handling a push"),
        "server_restarts_per_day": Key((int, float), 0.0, _non_negative, "the server restarts"),
    },
    "adversary": {
        "substitute_public_keys": Key(bool, False, None, "the server hands out its own key (#42088)"),
        "plant_suggestions": Key(bool, False, None, "the server plants room keys as suggestions"),
        "withhold_queue": Key(bool, False, None, "the server tells holders nobody waits"),
        "replay_suggestions": Key(bool, False, None, "the server replays old suggestions"),
        "substitute_own_public_key": Key(
            bool, False, None, "fetchMyKeys answers the server's public key: own wraps leak"
        ),
        "swap_recovery_request_key": Key(
            bool, False, None, "policy contacts: the server swaps a recovery request's one-time key"
        ),
        "mitigation": Key(str, "none", _one_of("none", "fingerprints", "signed", "both"), "client defences"),
    },
}

TABLES: dict[str, dict[str, Key]] = {
    "rooms.explicit": {
        "type": Key(str, None, _one_of("p", "d"), ""),
        "members": Key(list, None, None, ""),
        "encrypted": Key(bool, True, None, ""),
    },
    "resets.scripted": {
        "user": Key(str, None, None, ""),
        "at": Key((int, float), None, _non_negative, "seconds"),
    },
    "population.classes": {
        "name": Key(str, None, None, ""),
        "fraction": Key((int, float), None, _fraction, ""),
        "model": Key(str, "", _one_of("", "exponential", "weibull", "lognormal"), ""),
        "mean_online_minutes": Key((int, float), 0.0, _non_negative, ""),
        "mean_offline_minutes": Key((int, float), 0.0, _non_negative, ""),
        "shape": Key((int, float), 0.0, _non_negative, ""),
    },
}
