"""What a simulation run records: the outcome and room rows, and per-device bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol import Client

if TYPE_CHECKING:
    from ..inputs.scenario import Scenario

__all__ = ["OUTCOME_COLUMNS", "ROOM_COLUMNS", "Device", "Outcome", "RoomStats", "RunResult", "Wait"]


OUTCOME_COLUMNS = (
    "run_id",
    "seed",
    "policy",
    "reset_id",
    "reason",
    "user",
    "room",
    "room_type",
    "room_size",
    "reset_at",
    "locked_out_at",
    "relogin_at",
    "holders_online_at_relogin",
    "holders_at_relogin",
    "served_at",
    "restored_at",
    "restored",
    "restored_via",
    "superseded_at",
    "left_at",
    "lost",
    "old_keys_recovered",
    "history_messages",
    "history_unreadable",
)
ROOM_COLUMNS = (
    "run_id",
    "seed",
    "policy",
    "room",
    "room_type",
    "room_size",
    "encrypted",
    "waiting_s",
    "no_online_holder_s",
    "lost",
    "lost_at",
    "room_key_resets",
    "room_key_rotations",
    "messages",
)

_NAN = math.nan


class Wait(Exception):
    """The person cannot act before ``until`` (no fresh 2FA code yet)."""

    def __init__(self, until: float) -> None:
        self.until = until


@dataclass(slots=True)
class Outcome:
    reset_id: int
    reason: str
    user: int
    room: str
    room_type: str
    room_size: int
    reset_at: float
    #: after a lost authenticator: when the person lost it and was locked out (NaN otherwise)
    locked_out_at: float = _NAN
    relogin_at: float = _NAN
    holders_online_at_relogin: int = 0
    holders_at_relogin: int = 0
    served_at: float = _NAN
    restored_at: float = _NAN
    restored_via: str = ""
    #: the same user's next reset, while this row was still open (censors it there)
    superseded_at: float = _NAN
    #: the user left the room while this row was still open (censors it there)
    left_at: float = _NAN
    holders: tuple[int, ...] = ()
    #: when the row stopped waiting: restored, superseded, left (NaN: open at the horizon)
    closed_at: float = _NAN
    #: history as the user had it when the row closed (or at the horizon)
    old_keys_recovered: int = 0
    history_messages: int = 0
    history_unreadable: int = 0
    snapshot: bool = False


@dataclass(slots=True)
class RoomStats:
    waiting_since: float | None = None
    waiting_s: float = 0.0
    no_online_holder_s: float = 0.0
    lost_at: float = _NAN
    room_key_resets: int = 0
    room_key_rotations: int = 0
    messages: int = 0


@dataclass(slots=True)
class Device:
    """The simulator's view of one user's device."""

    client: Client | None = None
    online_until: float = -1.0
    login_at: float = 0.0
    pending_login: float | None = None
    ticking: bool = False
    locked_until: float = -1.0
    #: when the distribution loop last ran (one tick per instant)
    last_tick_at: float = -1.0
    #: when the user last logged in again after a reset of its key
    reset_relogin_at: float = -1.0
    #: clients made for this user so far (each draws from its own stream)
    clients_made: int = 0


@dataclass
class RunResult:
    """Everything one run produced, as tidy rows and a few figures."""

    scenario: Scenario
    run_id: str
    outcomes: list[dict[str, Any]]
    rooms: list[dict[str, Any]]
    lost_timeline: list[tuple[float, int]]
    stats: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    #: whether the invariants were checked at the horizon (``--check-invariants``)
    invariants_checked: bool = False
    stationary_online: float | None = None
    #: what a malicious server obtained, when the scenario has one
    adversary: dict[str, Any] | None = None
    #: what a faulty network did, when the scenario has one
    faults: dict[str, Any] | None = None
