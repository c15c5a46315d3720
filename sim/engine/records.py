"""What a simulation run records: the outcome, join and room rows (:class:`Records`), and
per-device bookkeeping.

Each reset opens one outcome row per encrypted room of the user.  A row closes when the user is
restored, when the same user resets again (``superseded_at``), when it leaves the room
(``left_at``) or when it accepts a key a malicious server planted; the history it records is read
then (:meth:`Records.snapshot`).

Each join opens a join row: when the joiner first held the room's current key, and how much of
the room's past it reads (:meth:`Records.snapshot_join`, when it leaves, at its next reset, or at
the horizon).  Join rows are a table of their own, so outcome and room rows stay as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol import Client, ProtocolError, Server
from protocol.crypto import CryptoBackend

if TYPE_CHECKING:
    from ..inputs.scenario import Scenario
    from .keys import KeyView

__all__ = [
    "JOIN_COLUMNS",
    "OUTCOME_COLUMNS",
    "ROOM_COLUMNS",
    "Device",
    "Join",
    "Outcome",
    "Records",
    "RoomStats",
    "RunResult",
    "Wait",
]


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
JOIN_COLUMNS = (
    "run_id",
    "seed",
    "policy",
    "join_id",
    "user",
    "room",
    "room_size",
    "kind",
    "history_visibility",
    "joined_at",
    "bundle_keys",
    "served_at",
    "keyed_at",
    "keyed",
    "left_at",
    "closed_at",
    "history_messages",
    "history_unreadable",
    "later_messages",
    "later_unreadable",
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
class Join:
    """One member added to a room: how it got the room's key, and what it reads of the past."""

    join_id: int
    user: int
    room: str
    room_size: int
    #: ``invite`` (a member adds it) or ``auto`` (a team's auto-join rooms, a Matrix space)
    kind: str
    history_visibility: str
    joined_at: float
    #: policy bundle: the keys the inviter's bundle carried (0: none)
    bundle_keys: int = 0
    #: a key was handed to it (a suggestion, or a key stored for it)
    served_at: float = _NAN
    #: it first held the room's current key
    keyed_at: float = _NAN
    left_at: float = _NAN
    #: when the row closed: it left, or reset its own key (NaN: open at the horizon)
    closed_at: float = _NAN
    #: messages sent before it joined, and those it cannot read (at the close, or the horizon)
    history_messages: int = 0
    history_unreadable: int = 0
    #: messages sent after it joined (until the close), and those it cannot read
    later_messages: int = 0
    later_unreadable: int = 0
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
    """The simulator's view of one user's device.

    :class:`~sim.engine.devices.Devices` makes and drops the client and logs it in and out; the
    other fields are each written by the part named beside it.
    """

    client: Client | None = None
    #: when the device's current session ends (Following, Resets at a relogin; -1: logged out)
    online_until: float = -1.0
    #: when the device logged in, the phase of its distribution loop (Devices)
    login_at: float = 0.0
    #: the next login already scheduled for it (Following; Resets for an admin-reset user)
    pending_login: float | None = None
    #: whether its distribution loop is scheduled (Following)
    ticking: bool = False
    #: locked out until then: a lost authenticator, until the admin acts (Resets)
    locked_until: float = -1.0
    #: when the distribution loop last ran (one tick per instant; Following)
    last_tick_at: float = -1.0
    #: when the user last logged in again after a reset of its key (Resets)
    reset_relogin_at: float = -1.0
    #: clients made for this user so far (each draws from its own stream; Devices)
    clients_made: int = 0
    #: a phone: whether its app is open now (its client stays logged in, keys and all, between
    #: openings; Following)
    connected: bool = False


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
    #: one row per join (``JOIN_COLUMNS``)
    joins: list[dict[str, Any]] = field(default_factory=list)
    #: presence from the CollegeMsg trace: how well keysim's churn laws fit its sessions
    #: (:func:`sim.inputs.collegemsg.fit_report`); None otherwise
    trace_fit: dict[str, Any] | None = None


class Records:
    """The run's rows: outcome rows (open and closed), room statistics, and which rooms are lost."""

    def __init__(self, server: Server, backend: CryptoBackend, keys: KeyView, user_ids: list[str]) -> None:
        self.server = server
        self.backend = backend
        self.keys = keys
        #: the roster (read only here)
        self.user_ids = user_ids
        self.outcomes: list[Outcome] = []
        self.joins: list[Join] = []
        #: the join rows still open, by (user, room)
        self.open_joins: dict[tuple[int, str], Join] = {}
        #: the rows still waiting, by (user, room)
        self.open: dict[tuple[int, str], Outcome] = {}
        #: the rooms of each user's open rows, in the order of ``open`` (written with it, here
        #: only): asking whether a user waits must not scan every open row
        self._open_of: dict[int, dict[str, None]] = {}
        self.room_stats: dict[str, RoomStats] = {}
        #: rows of users reset while offline, who log in again at their next online start
        self.awaiting_relogin: dict[int, list[Outcome]] = {}
        #: when each user last lost its authenticator (and was locked out)
        self.locked_out_at: dict[int, float] = {}
        #: resets so far (each opens its rows under this number)
        self.resets = 0
        self.lost_count = 0
        self.lost_rooms: set[str] = set()
        self.lost_timeline: list[tuple[float, int]] = [(0.0, 0)]
        #: called with (room, now) when a room loses its last holder (owners' room-key reset)
        self.on_lost: Callable[[str, float], None] | None = None

    def add_room(self, room_id: str) -> None:
        self.room_stats[room_id] = RoomStats()

    def waits(self, u: int) -> bool:
        """Whether any row of ``u`` still waits."""
        return bool(self._open_of.get(u))

    def new_rows(self, u: int, reason: str, now: float) -> list[Outcome]:
        """A reset of ``u`` now: one open row per encrypted room of ``u``.  Rows an earlier reset
        left open are superseded (censored now)."""
        self.resets += 1
        for key in [(u, rid) for rid in self._open_of.get(u, ())]:
            earlier = self.open[key]
            earlier.superseded_at = now
            self.close(earlier, now)
        self.awaiting_relogin.pop(u, None)
        # the first reset after a lockout carries it (whatever made it happen first)
        locked_out_at = self.locked_out_at.pop(u, math.nan)
        rows = []
        for rid in self.server.rooms_of(self.user_ids[u]):
            room = self.server.room(rid)
            if not room.encrypted:
                continue
            outcome = Outcome(self.resets, reason, u, rid, room.t, len(room.subscriptions), now)
            outcome.locked_out_at = locked_out_at
            rows.append(outcome)
            self.outcomes.append(outcome)
            self.open[(u, rid)] = outcome
            self._open_of.setdefault(u, {})[rid] = None
        return rows

    def close(self, outcome: Outcome, now: float) -> None:
        """The row stops waiting (restored, superseded, left): keep the history the user has
        now, and stop following the row."""
        outcome.closed_at = now
        self.snapshot(outcome)
        if self.open.pop((outcome.user, outcome.room), None) is not None:
            rooms = self._open_of[outcome.user]
            del rooms[outcome.room]
            if not rooms:
                del self._open_of[outcome.user]

    def snapshot(self, o: Outcome) -> None:
        """Record the history ``o``'s user has in ``o``'s room now: when the row closes or, for a
        row still open, at the horizon.

        ``history_messages`` counts the room's messages sent before the reset, ``history_unreadable``
        those among them whose key the user does not hold (current key or ``oldRoomKeys``), and
        ``old_keys_recovered`` the old room keys a restored user got back with the current one.
        """
        uid = self.user_ids[o.user]
        sub = self.server.room(o.room).subscriptions.get(uid)
        restored = not math.isnan(o.restored_at)
        o.old_keys_recovered = len(sub.old_room_keys or []) if sub is not None and restored else 0
        held = self._kids_held(o.room, uid)
        # e2e_content: the content, or a legacy message's v1 ``msg`` string read as content
        messages = self.server.messages(o.room)
        before = [c for m in messages if m.ts < o.reset_at and (c := m.e2e_content()) is not None]
        o.history_messages = len(before)
        o.history_unreadable = sum(1 for c in before if self._kid(c) not in held)
        o.snapshot = True

    def new_join(self, u: int, room_id: str, kind: str, now: float) -> Join:
        """``u`` was added to ``room_id`` now: an open join row."""
        room = self.server.room(room_id)
        join = Join(
            len(self.joins) + 1, u, room_id, len(room.subscriptions), kind, room.history_visibility, now
        )
        self.joins.append(join)
        self.open_joins[(u, room_id)] = join
        return join

    def close_joins_of(self, u: int, now: float) -> None:
        """``u``'s key is about to be reset: what its joins gave ends here (read it first)."""
        for key in [k for k in self.open_joins if k[0] == u]:
            self.close_join(self.open_joins[key], now)

    def close_join(self, join: Join, now: float) -> None:
        join.closed_at = now
        self.snapshot_join(join)
        self.open_joins.pop((join.user, join.room), None)

    def snapshot_join(self, j: Join) -> None:
        """Record what ``j``'s joiner reads of the room now: of the messages sent before it
        joined, and of those sent since (until now), how many it holds no key for."""
        held = self._kids_held(j.room, self.user_ids[j.user])
        before, later = 0, 0
        before_unread, later_unread = 0, 0
        for m in self.server.messages(j.room):
            content = m.e2e_content()
            if content is None:
                continue
            unread = self._kid(content) not in held
            if m.ts < j.joined_at:
                before, before_unread = before + 1, before_unread + unread
            else:
                later, later_unread = later + 1, later_unread + unread
        j.history_messages, j.history_unreadable = before, before_unread
        j.later_messages, j.later_unreadable = later, later_unread
        j.snapshot = True

    def _kid(self, content: dict[str, Any]) -> str | None:
        """The kid a message was sent under; None for a ciphertext too malformed to name one
        (nobody can read it)."""
        try:
            return self.backend.message_kid(content)
        except ProtocolError:
            return None

    def _kids_held(self, room_id: str, user_id: str) -> set[str]:
        sub = self.server.room(room_id).subscriptions.get(user_id)
        if sub is None:
            return set()
        kids = {old.e2e_key_id for old in sub.old_room_keys or []}
        if sub.e2e_key is not None:
            kids.add(self.backend.wrapped_kid(sub.e2e_key))
        return kids

    def note_regained(self, room_id: str, now: float) -> None:
        """A lost room has a holder again (a room-key reset, or a pending suggestion accepted)."""
        if room_id in self.lost_rooms:
            self.lost_rooms.discard(room_id)
            self.lost_count -= 1
            self.lost_timeline.append((now, self.lost_count))

    def note_loss(self, room_id: str, now: float) -> None:
        """After a reset or a leave: if no member holds the room's current key any more, the room
        is lost."""
        room = self.server.room(room_id)
        if not room.encrypted or self.keys.holders(room_id):
            return
        stats = self.room_stats[room_id]
        if math.isnan(stats.lost_at):
            stats.lost_at = now
        if room_id in self.lost_rooms:
            return
        self.lost_rooms.add(room_id)
        self.lost_count += 1
        self.lost_timeline.append((now, self.lost_count))
        if self.on_lost is not None:
            self.on_lost(room_id, now)
