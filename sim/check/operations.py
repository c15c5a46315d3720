"""The operations ``keysim check`` applies: their table, their guards, and how one is applied.

Theory of operation.  :data:`OPERATIONS` is a table, kind -> (takes a room, guard, action, how a
trace says it); :func:`enabled_ops` lists every (kind, user, room) whose guard holds and
:func:`apply` runs one, advancing the clock by :data:`STEP_S`.

* Operations: those of ``tests/protocol/test_e2e_stateful.py`` (log in, log out, wrong password, change
  password, reset, join, leave, tick, accept, room-key reset, send) plus two paths RC has that
  the state machine lacks: a holder's suggestion that arrives after the member reset (RC #32197's
  loop fetches, then posts: a reset can fall between) and the deprecated ``e2e.updateGroupKey``.
  Guards skip only certain no-ops; a room-key reset is offered as RC's UI offers it (#33328).
  A user with a phone (``phones``) has four more: its phone logs in, logs out, ticks, syncs.
* Checked during a step (what a step shows wrong is returned as violations): what each action
  checks itself (:mod:`.actions`), then, around it, that served users leave the queue and, under
  ``live``, that a handshake yields the key iff a holder was online (:mod:`.step_checks`).

The state-wide properties are in :mod:`.properties`; this module does not search.  May import
:mod:`protocol`, :mod:`.world`, :mod:`.membership`, :mod:`.step_checks` and :mod:`.actions`
only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol import Client, E2EEState, E2ERoomState, Violation

from . import actions
from .membership import holder, holds_key, member, needs_push
from .step_checks import live_after, live_before, served_left_queue, suggestions
from .world import STEP_S, World

__all__ = ["OPERATIONS", "Op", "apply", "describe", "enabled_ops", "holds_key"]


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of user ``u{user}`` (in room ``room`` for room operations)."""

    kind: str
    user: int
    room: int | None = None


Guard = Callable[[World, int, int], bool]
Action = Callable[[World, int, int], list[Violation]]


def _can_sync(w: World, i: int, r: int) -> bool:
    return _syncs(w, i, w.client(i))


def _phone_can_sync(w: World, i: int, r: int) -> bool:
    phone = w.phone(i)
    return phone is not None and _syncs(w, i, phone)


def _syncs(w: World, i: int, client: Client) -> bool:
    """Whether :meth:`Client.sync` would do anything; mirrors ``_on_subscription_changed`` (no
    session yet, a changed kid, a suggestion, an ``E2EKey`` while waiting)."""
    srv = w.d.server
    if not client.functional:
        return False
    for rid in srv.rooms_of(w.users[i]):
        room = srv.room(rid)
        sub, session = room.subscriptions[w.users[i]], client.session(rid)
        if not room.encrypted or session is None or sub.e2e_suggested_key:
            return True
        if session.key_id is not None and room.e2e_key_id is not None and session.key_id != room.e2e_key_id:
            return True
        if sub.e2e_key and session.state == E2ERoomState.WAITING_KEYS:
            return True
    return False


def _can_deliver_late(w: World, i: int, r: int) -> bool:
    uid = w.users[i]
    if uid not in w.previous_pub or (w.client(i).online and not w.late_after_login) or not member(w, i, r):
        return False
    giver = holder(w, r)
    return w.d.server.room(w.rooms[r]).subscriptions[uid].e2e_key is None and giver not in (None, i)


#: RC's UI offers a room-key reset only while the member's room is in one of these states (#33328)
_RESET_OFFERED = (None, *(E2ERoomState[s] for s in ("NOT_STARTED", "DISABLED", "ERROR", "WAITING_KEYS")))


def _can_reset_room(w: World, i: int, r: int) -> bool:
    rid = w.rooms[r]
    return (
        w.client(i).functional
        and member(w, i, r)
        and w.client(i).room_state(rid) in _RESET_OFFERED
        and w.d.server.room(rid).e2e_key_id is not None
        and w.d.server.has_permission(w.users[i], "toggle-room-e2e-encryption", rid)
    )


def _can_leave(w: World, i: int, r: int) -> bool:
    """A group's member, not its last owner (``leaveRoom``'s ``error-you-are-last-owner``)."""
    room = w.d.server.room(w.rooms[r])
    return room.t == "p" and w.users[i] in room.subscriptions and not room.is_last_owner(w.users[i])


#: kind -> (takes a room, guard, action, how a trace says it).  The guards are the stateful
#: test's preconditions, tightened only where the operation would certainly do nothing.
OPERATIONS: dict[str, tuple[bool, Guard, Action, str]] = {
    "login": (
        False,
        lambda w, i, r: not w.client(i).online,
        actions.login,
        "{u} logs in and unlocks E2EE (saving a new password if asked)",
    ),
    "login_wrong": (
        False,
        lambda w, i, r: not w.client(i).online and w.d.server.user(w.users[i]).e2e_private_key is not None,
        actions.login_wrong,
        "{u} logs in and types a wrong E2E password",
    ),
    "enter_password": (
        False,
        lambda w, i, r: w.client(i).online and w.client(i).state == E2EEState.ENTER_PASSWORD,
        actions.enter_password,
        "{u} types its E2E password",
    ),
    "logout": (False, lambda w, i, r: w.client(i).online, actions.logout, "{u} logs out"),
    "change_password": (
        False,
        lambda w, i, r: w.client(i).functional,
        actions.change_password,
        "{u} changes its E2E password",
    ),
    "reset": (False, lambda w, i, r: w.client(i).online, actions.reset, "{u} resets its E2E key"),
    "tick": (
        False,  # no candidate room: Client.tick samples nothing and returns at once
        lambda w, i, r: w.client(i).functional and bool(w.client(i).distribution_candidates()),
        actions.tick,
        "{u}'s client runs its key-distribution loop",
    ),
    "accept": (False, _can_sync, actions.accept, "{u}'s client syncs and accepts the keys suggested to it"),
    "join": (
        True,
        lambda w, i, r: w.d.server.room(w.rooms[r]).t == "p" and not member(w, i, r),
        actions.join,
        "{u} is added to {r}",
    ),
    "leave": (True, _can_leave, actions.leave, "{u} leaves {r}"),
    "room_key_reset": (True, _can_reset_room, actions.room_key_reset, "{u} resets the room key of {r}"),
    "deliver_late": (
        True,
        _can_deliver_late,
        actions.deliver_late,
        "a holder's suggestion fetched before {u}'s reset (for its old key pair) arrives in {r}",
    ),
    "push": (
        True,
        lambda w, i, r: holds_key(w, w.users[i], w.rooms[r]) and bool(needs_push(w, w.rooms[r])),
        actions.push,
        "{u} hands out the key of {r} with the deprecated e2e.updateGroupKey",
    ),
    "send": (
        True,
        lambda w, i, r: holds_key(w, w.users[i], w.rooms[r]),
        actions.send,
        "{u} sends a message in {r}",
    ),
    # a user's phone (``phones``): the same account on a second device
    "phone_login": (
        False,
        lambda w, i, r: (p := w.phone(i)) is not None and not p.online,
        actions.phone_login,
        "{u}'s phone logs in and unlocks E2EE",
    ),
    "phone_logout": (
        False,
        lambda w, i, r: (p := w.phone(i)) is not None and p.online,
        actions.phone_logout,
        "{u}'s phone logs out",
    ),
    "phone_tick": (
        False,
        lambda w, i, r: (p := w.phone(i)) is not None and p.functional and bool(p.distribution_candidates()),
        actions.phone_tick,
        "{u}'s phone runs its key-distribution loop",
    ),
    "phone_accept": (
        False,
        _phone_can_sync,
        actions.phone_accept,
        "{u}'s phone syncs and accepts the keys suggested to it",
    ),
}
_HANDSHAKES = ("login", "login_wrong", "enter_password", "phone_login")


def describe(w: World, op: Op) -> str:
    """How a trace states ``op``."""
    room = w.names[w.rooms[op.room]] if op.room is not None else ""
    return OPERATIONS[op.kind][3].format(u=f"u{op.user}", r=room)


def enabled_ops(w: World) -> list[Op]:
    out = []
    for kind, (takes_room, guard, _, _) in OPERATIONS.items():
        for i in range(len(w.users)):
            for r in range(len(w.rooms)) if takes_room else (0,):
                if guard(w, i, r):
                    out.append(Op(kind, i, r if takes_room else None))
    return out


def apply(w: World, op: Op) -> list[Violation]:
    """Apply ``op`` (its guard holds) and return what it showed wrong on the way."""
    w.now += STEP_S
    action = OPERATIONS[op.kind][2]
    suggested = suggestions(w)
    if op.kind in _HANDSHAKES:
        uid = w.users[op.user]
        before = {r: live_before(w, uid, rid) for r, rid in enumerate(w.rooms)}
        client = w.phone(op.user) if op.kind == "phone_login" else None
        out = action(w, op.user, 0) or live_after(w, op.user, before, client)
    else:
        out = action(w, op.user, op.room if op.room is not None else 0)
    return out if out or op.kind == "push" else served_left_queue(w, suggested)
