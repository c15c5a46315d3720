"""The operations ``keysim check`` applies, their guards, and the checks made as they happen.

Theory of operation.  :data:`OPERATIONS` is a table, kind -> (takes a room, guard, action, how a
trace says it); :func:`enabled_ops` lists every (kind, user, room) whose guard holds and
:func:`apply` runs one, advancing the clock by :data:`STEP_S`.

* Operations: those of ``tests/test_e2e_stateful.py`` (log in, log out, wrong password, change
  password, reset, join, leave, tick, accept, room-key reset, send) plus two paths RC has that
  the state machine lacks: a holder's suggestion that arrives after the member reset (RC #32197's
  loop fetches, then posts: a reset can fall between) and the deprecated ``e2e.updateGroupKey``.
  Guards skip only certain no-ops; a room-key reset is offered as RC's UI offers it (#33328).
* Checked during a step (what a step shows wrong is returned as violations): every reader of a
  sent message reads what was sent; a person with TOTP is refused a reset without a code or with
  a wrong one; a reset forgets the user's keys (spec 3.4); a suggestion stored by
  ``provideUsersSuggestedGroupKeys`` takes its user off the queue (spec 3.6); under ``live``, a
  handshake (login, unlock, join) yields the key iff another member online then held it.

The state-wide properties are in :mod:`.properties`; this module does not search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol import E2EEState, E2ERoomState, TwoFactorError, Violation, totp

from .world import STEP_S, World, totp_code

__all__ = ["OPERATIONS", "Op", "apply", "describe", "enabled_ops", "holds_key"]


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of user ``u{user}`` (in room ``room`` for room operations)."""

    kind: str
    user: int
    room: int | None = None


Guard = Callable[[World, int, int], bool]
Action = Callable[[World, int, int], list[Violation]]


def _member(w: World, i: int, r: int) -> bool:
    return w.users[i] in w.d.server.room(w.rooms[r]).subscriptions


def holds_key(w: World, uid: str, rid: str) -> bool:
    client = w.d.clients[uid]
    return client.functional and client.holds_current_key(rid)


def _holder(w: World, r: int) -> int | None:
    """The first functional member holding room ``r``'s current key (subscription order)."""
    rid = w.rooms[r]
    return next((w.users.index(u) for u in w.d.server.room(rid).subscriptions if holds_key(w, u, rid)), None)


def _op_login(w: World, i: int, r: int) -> list[Violation]:
    w.previous_pub.pop(w.users[i], None)  # a late suggestion arrives before the next login
    w.login(w.users[i])
    return []


def _op_login_wrong(w: World, i: int, r: int) -> list[Violation]:
    w.previous_pub.pop(w.users[i], None)
    w.login(w.users[i], remember=False)
    client = w.client(i)
    if client.state == E2EEState.ENTER_PASSWORD and client.enter_password("not the password", now=w.now):
        return [Violation("wrong_password", f"u{i}'s wrong E2E password unlocked its key")]
    if client.functional:
        return [Violation("wrong_password", f"u{i} is READY without typing its E2E password")]
    return []


def _op_enter_password(w: World, i: int, r: int) -> list[Violation]:
    password = w.d.people[w.users[i]].e2e_password
    assert password is not None
    if not w.client(i).enter_password(password, now=w.now):
        return [Violation("wrong_password", f"u{i}'s own E2E password does not unlock its key")]
    w.d.pump(w.now)
    return []


def _op_logout(w: World, i: int, r: int) -> list[Violation]:
    w.d.logout(w.users[i], now=w.now)
    return []


def _op_change_password(w: World, i: int, r: int) -> list[Violation]:
    new = f"changed by u{i}"
    w.client(i).change_password(new, now=w.now)
    w.d.people[w.users[i]].e2e_password = new
    w.d.pump(w.now)
    return []


def _op_reset(w: World, i: int, r: int) -> list[Violation]:
    uid, srv = w.users[i], w.d.server
    secret = w.totp_secret.get(uid)
    code = None
    if secret is not None:
        code = totp_code(secret, w.now)
        near = {totp_code(secret, w.now + k * totp.PERIOD) for k in (-1, 0, 1)}
        wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in near)
        for attempt in (None, wrong):
            try:
                w.client(i).reset_own_key(attempt, now=w.now)
            except TwoFactorError:
                continue
            what = "no 2FA code" if attempt is None else "a wrong 2FA code"
            return [Violation("two_factor_gate", f"u{i} reset its E2E key with {what}")]
    previous = srv.user(uid).e2e_public_key
    w.d.reset(uid, now=w.now, code=code)
    if previous is not None:
        w.previous_pub[uid] = previous
    # spec 3.4 (server/lib/resetUserE2EKey.ts): the pair, the sessions and the room keys go
    out = []
    for rid in srv.rooms_of(uid):
        sub = srv.room(rid).subscriptions[uid]
        fields = {"E2EKey": sub.e2e_key, "E2ESuggestedKey": sub.e2e_suggested_key}
        kept = [f for f, v in (*fields.items(), ("oldRoomKeys", sub.old_room_keys)) if v is not None]
        if kept:
            out.append(
                Violation("reset_forgets_keys", f"after its reset u{i} keeps {', '.join(kept)} in {rid}")
            )
    if srv.user(uid).e2e_public_key is not None or w.d.clients[uid].online:
        out.append(Violation("reset_forgets_keys", f"after its reset u{i} keeps its key pair or a session"))
    return out


def _op_deliver_late(w: World, i: int, r: int) -> list[Violation]:
    """A holder's tick fetched u's public key before u reset and posts only now: a suggestion
    wrapped for u's previous key pair is stored (current key only; RC would add old keys)."""
    holder = _holder(w, r)
    assert holder is not None
    rid, client = w.rooms[r], w.client(holder)
    session = client.session(rid)
    assert session is not None and session.key is not None
    wrapped = w.d.backend.wrap_room_key(session.key, w.previous_pub.pop(w.users[i]), client.entropy)
    keys = {rid: [{"_id": w.users[i], "key": wrapped}]}
    w.d.server.e2e_provide_users_suggested_group_keys(w.users[holder], keys, now=w.now)
    w.d.pump(w.now)
    return []


def _needs_push(w: World, rid: str) -> list[tuple[str, str]]:
    """(member, public key) of the members a legacy client would push the key to."""
    srv = w.d.server
    return [
        (u, key)
        for u, s in srv.room(rid).subscriptions.items()
        if s.e2e_key is None and s.e2e_suggested_key is None and (key := srv.user(u).e2e_public_key)
    ]


def _op_push(w: World, i: int, r: int) -> list[Violation]:
    """The legacy client's hand-out: ``e2e.updateGroupKey`` for every member without a key
    (spec 3.6, "the deprecated updateGroupKey for another user"); it dequeues nobody."""
    rid, client = w.rooms[r], w.client(i)
    session = client.session(rid)
    assert session is not None and session.key is not None
    for uid, public_key in _needs_push(w, rid):
        wrapped = w.d.backend.wrap_room_key(session.key, public_key, client.entropy)
        w.d.server.e2e_update_group_key(w.users[i], rid, uid, wrapped)
    w.d.pump(w.now)
    return []


def _op_join(w: World, i: int, r: int) -> list[Violation]:
    room = w.d.server.room(w.rooms[r])
    before = {r: _live_before(w, w.users[i], room.id)}
    w.d.server.add_user_to_room(next(iter(room.subscriptions)), room.id, w.users[i], now=w.now)
    w.d.pump(w.now)
    return _live_after(w, i, before)


def _op_leave(w: World, i: int, r: int) -> list[Violation]:
    w.d.server.leave_room(w.users[i], w.rooms[r])
    w.d.pump(w.now)
    return []


def _op_tick(w: World, i: int, r: int) -> list[Violation]:
    w.d.tick(w.users[i], now=w.now)
    return []


def _op_accept(w: World, i: int, r: int) -> list[Violation]:
    w.client(i).sync(now=w.now)
    w.d.pump(w.now)
    return []


def _op_room_key_reset(w: World, i: int, r: int) -> list[Violation]:
    w.client(i).reset_room_key(w.rooms[r], now=w.now)
    w.d.pump(w.now)
    return []


def _op_send(w: World, i: int, r: int) -> list[Violation]:
    """Send, then every member who holds the message's key must read exactly what was sent
    (messages are not part of a state's identity, so this is where they are checked)."""
    rid, text = w.rooms[r], f"hello from u{i}"
    mid = w.client(i).send(rid, text, now=w.now)
    message = next(m for m in w.d.server.messages(rid) if m.id == mid)
    out = []
    for uid in w.d.server.room(rid).subscriptions:
        client = w.d.clients[uid]
        if client.functional and w.d.server.room(rid).e2e_key_id in client.held_keys(rid):
            mark = len(client.decrypted)
            if client.decrypt(message) != {"msg": text}:
                out.append(Violation("readers_read_what_was_sent", f"{uid} misreads u{i}'s message in {rid}"))
            del client.decrypted[mark:]  # an observation, not an event of the protocol
    return out


def _can_sync(w: World, i: int, r: int) -> bool:
    """Whether :meth:`Client.sync` would do anything; mirrors ``_on_subscription_changed`` (no
    session yet, a changed kid, a suggestion, an ``E2EKey`` while waiting)."""
    client, srv = w.client(i), w.d.server
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
    if uid not in w.previous_pub or w.client(i).online or not _member(w, i, r):
        return False
    holder = _holder(w, r)
    return w.d.server.room(w.rooms[r]).subscriptions[uid].e2e_key is None and holder not in (None, i)


#: RC's UI offers a room-key reset only while the member's room is in one of these states (#33328)
_RESET_OFFERED = (None, *(E2ERoomState[s] for s in ("NOT_STARTED", "DISABLED", "ERROR", "WAITING_KEYS")))


def _can_reset_room(w: World, i: int, r: int) -> bool:
    rid = w.rooms[r]
    return (
        w.client(i).functional
        and _member(w, i, r)
        and w.client(i).room_state(rid) in _RESET_OFFERED
        and w.d.server.room(rid).e2e_key_id is not None
        and w.d.server.has_permission(w.users[i], "toggle-room-e2e-encryption", rid)
    )


def _can_leave(w: World, i: int, r: int) -> bool:
    room = w.d.server.room(w.rooms[r])
    sub = room.subscriptions.get(w.users[i])
    return room.t == "p" and sub is not None and "owner" not in sub.roles


#: kind -> (takes a room, guard, action, how a trace says it).  The guards are the stateful
#: test's preconditions, tightened only where the operation would certainly do nothing.
OPERATIONS: dict[str, tuple[bool, Guard, Action, str]] = {
    "login": (
        False,
        lambda w, i, r: not w.client(i).online,
        _op_login,
        "{u} logs in and unlocks E2EE (saving a new password if asked)",
    ),
    "login_wrong": (
        False,
        lambda w, i, r: not w.client(i).online and w.d.server.user(w.users[i]).e2e_private_key is not None,
        _op_login_wrong,
        "{u} logs in and types a wrong E2E password",
    ),
    "enter_password": (
        False,
        lambda w, i, r: w.client(i).online and w.client(i).state == E2EEState.ENTER_PASSWORD,
        _op_enter_password,
        "{u} types its E2E password",
    ),
    "logout": (False, lambda w, i, r: w.client(i).online, _op_logout, "{u} logs out"),
    "change_password": (
        False,
        lambda w, i, r: w.client(i).functional,
        _op_change_password,
        "{u} changes its E2E password",
    ),
    "reset": (False, lambda w, i, r: w.client(i).online, _op_reset, "{u} resets its E2E key"),
    "tick": (
        False,  # no candidate room: Client.tick samples nothing and returns at once
        lambda w, i, r: w.client(i).functional and bool(w.client(i).distribution_candidates()),
        _op_tick,
        "{u}'s client runs its key-distribution loop",
    ),
    "accept": (False, _can_sync, _op_accept, "{u}'s client syncs and accepts the keys suggested to it"),
    "join": (
        True,
        lambda w, i, r: w.d.server.room(w.rooms[r]).t == "p" and not _member(w, i, r),
        _op_join,
        "{u} is added to {r}",
    ),
    "leave": (True, _can_leave, _op_leave, "{u} leaves {r}"),
    "room_key_reset": (True, _can_reset_room, _op_room_key_reset, "{u} resets the room key of {r}"),
    "deliver_late": (
        True,
        _can_deliver_late,
        _op_deliver_late,
        "a holder's suggestion fetched before {u}'s reset (for its old key pair) arrives in {r}",
    ),
    "push": (
        True,
        lambda w, i, r: holds_key(w, w.users[i], w.rooms[r]) and bool(_needs_push(w, w.rooms[r])),
        _op_push,
        "{u} hands out the key of {r} with the deprecated e2e.updateGroupKey",
    ),
    "send": (
        True,
        lambda w, i, r: holds_key(w, w.users[i], w.rooms[r]),
        _op_send,
        "{u} sends a message in {r}",
    ),
}
_HANDSHAKES = ("login", "login_wrong", "enter_password")


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
    suggested = _suggested(w)
    if op.kind in _HANDSHAKES:
        uid = w.users[op.user]
        before = {r: _live_before(w, uid, rid) for r, rid in enumerate(w.rooms)}
        out = action(w, op.user, 0) or _live_after(w, op.user, before)
    else:
        out = action(w, op.user, op.room if op.room is not None else 0)
    return out if out or op.kind == "push" else _served_left_queue(w, suggested)


# ----------------------------------------------------------------------- checks made during a step


def _suggested(w: World) -> set[tuple[str, str]]:
    return {
        (rid, uid)
        for rid in w.rooms
        for uid, sub in w.d.server.room(rid).subscriptions.items()
        if sub.e2e_suggested_key is not None
    }


def _served_left_queue(w: World, before: set[tuple[str, str]]) -> list[Violation]:
    """Spec 3.6: ``provideUsersSuggestedGroupKeys`` takes the users it serves off the queue (the
    deprecated ``updateGroupKey`` does not: there only the acceptance does)."""
    return [
        Violation("served_users_leave_queue", f"{uid} waits in {rid} but was served")
        for rid, uid in _suggested(w) - before
        if w.d.server.room(rid).is_waiting(uid)
    ]


def _live_before(w: World, uid: str, rid: str) -> tuple[bool, bool]:
    """Before ``uid`` handshakes in ``rid``: is another member online holding the current key
    (a live request reaches it and it answers, ``_provide_key_to_user``), and has ``uid`` another
    way to the key (an ``E2EKey`` or a pending suggestion, or there is no key to get yet)?"""
    room = w.d.server.room(rid)
    kid = room.e2e_key_id
    online = False
    for other in room.subscriptions:
        session = w.d.clients[other].session(rid)
        if other != uid and w.d.clients[other].functional and session is not None:
            online = online or (session.key_id == kid and session.key is not None)
    sub = room.subscriptions.get(uid)
    return online, kid is None or (sub is not None and bool(sub.e2e_key or sub.e2e_suggested_key))


def _live_after(w: World, i: int, before: dict[int, tuple[bool, bool]]) -> list[Violation]:
    """``live``: a handshake yields the room key iff another member online then held it."""
    client = w.client(i)
    if w.d.server.policy != "live" or not client.functional:
        return []
    out = []
    for r, (holder_online, other_way) in before.items():
        rid = w.rooms[r]
        if not _member(w, i, r) or w.d.server.room(rid).e2e_key_id is None:
            continue
        holds = client.holds_current_key(rid)
        if holder_online and not holds:
            out.append(Violation("live_restoration", f"u{i} got no key in {rid} though a holder was online"))
        elif not holder_online and not other_way and holds:
            out.append(Violation("live_restoration", f"u{i} got the key of {rid} with no holder online"))
    return out
