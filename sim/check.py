"""``keysim check``: every interleaving of the E2EE key lifecycle within a small scope.

Theory of operation.  A *world* is a :class:`protocol.Deployment` (symbolic crypto) with N users,
all logged in, and M rooms made at the start (a group of everyone owned by u0, then DMs, then
two-member groups); u0 has TOTP.  :func:`explore` applies every enabled operation of
:data:`OPERATIONS` to every state, **breadth-first**, so the first violation found has a shortest
trace.  Each operation advances time by :data:`STEP_S`; ``now`` is part of neither the state's
identity nor any property.

* Operations: those of ``tests/test_e2e_stateful.py`` (log in, log out, wrong password, change
  password, reset, join, leave, tick, accept, room-key reset, send) plus two paths RC has that
  the state machine lacks: a holder's suggestion that arrives after the member reset (RC #32197's
  loop fetches, then posts: a reset can fall between) and the deprecated ``e2e.updateGroupKey``.
  Guards skip only certain no-ops; a room-key reset is offered as RC's UI offers it (#33328).
* Identity (:func:`canonical`): a walk of the server's documents, each client's device state,
  the people and the key ledger in a fixed order, in which every random name (tokens, kids,
  passwords, ids) becomes the order of its first appearance and every ciphertext is split into the
  names it binds (a wrapped key: kid, recipient, room secret; a private-key blob: key pair,
  password).  Left out, as they cannot change what happens next: timestamps, the order of a
  queue (only its cap of 50 reads it), messages (each send is checked when it happens), and
  history about keys nothing refers to any more.  Joining orders are kept: they order pushes.
* Safety, after every step: :func:`protocol.check_all`; every reader of a message reads what was
  sent; a person with TOTP is refused a reset without a code or with a wrong one; a reset forgets
  the user's keys (spec 3.4); a suggestion stored by ``provideUsersSuggestedGroupKeys`` takes its
  user off the queue (spec 3.6); under ``live``, a handshake (login, unlock, join) yields the key
  iff another member online then held it.
* Liveness, from every new state (each is the end of some trace): ``queue`` and ``backup``: after
  a settle (every functional client ticks and syncs, twice) each room's current key is held by all
  of its functional members or by none (spec section 4); ``backup``: with everybody else logged
  out, a person who lacks a current key it once held logs in alone and restores it.

A state is stored as its trace and rebuilt by replaying it from a snapshot of the initial world;
entropy sources are part of the snapshot, so a state is a function of its trace.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import pickle
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from protocol import (
    POLICIES,
    Client,
    Deployment,
    E2EEState,
    E2ERoomState,
    ProtocolError,
    TwoFactorError,
    Violation,
    check_all,
    totp,
)
from protocol.crypto import RoomKey, SymbolicBackend, codec

__all__ = [
    "OPERATIONS",
    "STEP_S",
    "CheckResult",
    "Op",
    "World",
    "apply",
    "canonical",
    "describe",
    "enabled_ops",
    "explore",
]

#: seconds per operation: longer than the room-key reset lock (10 s, ``e2e.resetRoomKey``)
STEP_S = 11.0
#: the first ``now`` (2026-01-01): TOTP codes are those of a realistic clock
T0 = 1_767_225_600.0
#: the symbolic backend's wrapped-key record starts so (protocol/crypto/symbolic.py)
_WRAP_MAGIC = b"KSYMWRAP"
MAX_USERS = 6


# ---------------------------------------------------------------------------------------- the world


class World:
    """A deployment plus what the explorer needs to drive it: names, the clock, a TOTP secret."""

    def __init__(self, users: int, rooms: int, policy: str, *, seed: int = 0) -> None:
        plan = _room_plan(users, rooms)
        self.d = Deployment(policy=policy, crypto="symbolic", seed=seed)
        self.users = [self.d.add_user(f"u{i}") for i in range(users)]
        self.now = T0
        # u0 has TOTP: Deployment's settings disable the password fallback, so without a factor
        # every reset would pass the 2FA gate unchecked.
        u0 = self.users[0]
        secret = self.d.server.totp_enable(u0, now=self.now).secret
        self.d.server.totp_validate_temp_token(u0, _totp(secret, self.now), now=self.now)
        self.totp_secret = {u0: secret}
        #: a reset user's previous public key, while a holder's late suggestion for it may arrive
        self.previous_pub: dict[str, str] = {}
        for uid in self.users:
            self.login(uid)
        self.rooms: list[str] = []
        for owner, members in plan:
            ids = [self.users[i] for i in members]
            if owner is None:
                rid = self.d.server.create_direct_message(ids[0], ids[1], now=self.now)
            else:
                name = "team" if not self.rooms else f"g{len(self.rooms)}"
                rid = self.d.server.create_private_group(self.users[owner], name, ids, now=self.now)
            self.rooms.append(rid)
        self.d.pump(self.now)
        self._small_entropy(seed)
        self.names = {uid: f"u{i}" for i, uid in enumerate(self.users)}
        for rid in self.rooms:
            room = self.d.server.room(rid)
            self.names[rid] = room.name if room.t == "p" else "dm " + room.name

    def _small_entropy(self, seed: int) -> None:
        """Give every entropy source a generator with a one-word state: a snapshot is then a few
        kilobytes (a Mersenne Twister pickles 625 words).  Deployment has no way to choose the
        generator, so two private references are reassigned here."""
        d = self.d
        d.server.entropy = _Entropy(seed * 1_000_003)
        d.server.twofactor._entropy = d.server.entropy  # the same source, as Server made it
        d._rng = _Entropy(seed)  # only add_user draws from it
        for k, client in enumerate(d.clients.values(), 1):
            client.entropy = _Entropy(seed * 1_000_003 + k)

    def client(self, i: int) -> Client:
        return self.d.clients[self.users[i]]

    def login(self, uid: str, *, remember: bool = True) -> None:
        """:meth:`Deployment.login`, with the TOTP code of a person who has one."""
        secret = self.totp_secret.get(uid)
        code = _totp(secret, self.now) if secret is not None else None
        self.d.login(uid, now=self.now, remember_password=remember, code=code)

    def name(self, text: str) -> str:
        """``text`` with every user and room id replaced by its readable name."""
        for key, value in self.names.items():
            text = text.replace(key, value)
        return text


_MASK64 = (1 << 64) - 1


class _Entropy(random.Random):
    """splitmix64 (Steele, Lea and Flood 2014) behind :class:`random.Random`'s interface; every
    other method of ``Random`` draws through the ones overridden here."""

    _state: int

    def seed(self, a: Any = None, version: int = 2) -> None:
        self._state = (a if isinstance(a, int) else hash(a)) & _MASK64

    def _next(self) -> int:
        self._state = z = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def _randbelow(self, n: int) -> int:  # choice(), sample(), randrange(): one draw, scaled
        return (self._next() * n) >> 64

    def choice(self, seq: Any) -> Any:
        return seq[(self._next() * len(seq)) >> 64]

    def getrandbits(self, k: int) -> int:
        if 0 < k <= 64:
            return self._next() >> (64 - k)
        out, n = 0, 0
        while n < k:
            out, n = (out << 64) | self._next(), n + 64
        return out >> (n - k)

    def random(self) -> float:
        return self.getrandbits(53) / 9007199254740992.0

    def getstate(self) -> Any:
        return self._state

    def setstate(self, state: Any) -> None:
        self._state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return _Entropy, (self._state,)


@lru_cache(maxsize=1024)
def _code(secret: str, step: int) -> str:
    return totp.totp(secret, step * totp.PERIOD)


def _totp(secret: str, now: float) -> str:
    """The code a TOTP app shows at ``now``."""
    return _code(secret, int(now // totp.PERIOD))


def _room_plan(users: int, rooms: int) -> list[tuple[int | None, list[int]]]:
    """(owner, or None for a DM; the other members): a group of everyone, DMs, then pairs."""
    if not 2 <= users <= MAX_USERS:
        raise ValueError(f"users: must be between 2 and {MAX_USERS}, got {users}")
    pairs = sorted(itertools.combinations(range(users), 2), key=lambda p: (p[0] == 0, p))
    plan: list[tuple[int | None, list[int]]] = [(0, list(range(1, users)))]
    plan += [(None, [a, b]) for a, b in pairs]  # DMs without u0 first: u1+u2, ...
    plan += [(a, [b]) for a, b in pairs]
    if not 1 <= rooms <= len(plan):
        raise ValueError(f"rooms: must be between 1 and {len(plan)} for {users} users, got {rooms}")
    return plan[:rooms]


# -------------------------------------------------------------------------------------- operations


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


def _holds(w: World, uid: str, rid: str) -> bool:
    client = w.d.clients[uid]
    return client.functional and client.holds_current_key(rid)


def _holder(w: World, r: int) -> int | None:
    """The first functional member holding room ``r``'s current key (subscription order)."""
    rid = w.rooms[r]
    return next((w.users.index(u) for u in w.d.server.room(rid).subscriptions if _holds(w, u, rid)), None)


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
        code = _totp(secret, w.now)
        near = {_totp(secret, w.now + k * totp.PERIOD) for k in (-1, 0, 1)}
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
        lambda w, i, r: _holds(w, w.users[i], w.rooms[r]) and bool(_needs_push(w, w.rooms[r])),
        _op_push,
        "{u} hands out the key of {r} with the deprecated e2e.updateGroupKey",
    ),
    "send": (
        True,
        lambda w, i, r: _holds(w, w.users[i], w.rooms[r]),
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


# ------------------------------------------------------------------------------------- properties


def check_state(w: World) -> list[Violation]:
    """The protocol's invariants, and every reader of every stored message reads what was sent."""
    d = w.d
    out = check_all(d.server, d.clients, d.ledger, passwords=[p.account_password for p in d.people.values()])
    sent = {mid: text for c in d.clients.values() for (_, mid, text) in c.sent}
    for uid, client in d.clients.items():
        if not client.functional:
            continue
        mark = len(client.decrypted)
        for rid in d.server.rooms_of(uid):
            held = client.held_keys(rid)
            for message in d.server.messages(rid):
                kid = message.content.get("kid") if message.content else None
                if kid in held and client.decrypt(message) != {"msg": sent.get(message.id)}:
                    out.append(Violation("readers_read_what_was_sent", f"{uid} misreads {message.id}"))
        del client.decrypted[mark:]  # reading is an observation: it must not split states
    return out


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


SETTLE = "settle: every logged-in READY client ticks, then syncs and accepts, twice over"


def settle(w: World) -> None:
    for _ in range(2):
        for uid in w.users:
            if w.d.clients[uid].functional:
                w.now += STEP_S
                w.d.tick(uid, now=w.now)
                w.d.clients[uid].sync(now=w.now)
                w.d.pump(w.now)


def check_eventually(w: World) -> tuple[list[Violation], list[str]]:
    """The liveness properties of the policy, run on ``w`` itself (which they change); the
    violations, and the steps of the suffix that showed them."""
    policy = w.d.server.policy
    if policy == "live":
        return [], []  # checked at each handshake
    acquired = {uid: {(a.room_id, a.kid) for a in c.acquired} for uid, c in w.d.clients.items()}
    settle(w)
    steps = [SETTLE]
    out = check_state(w)
    for rid in w.rooms:
        room = w.d.server.room(rid)
        members = [uid for uid in room.subscriptions if w.d.clients[uid].functional]
        holders = [uid for uid in members if _holds(w, uid, rid)]
        for uid in members:
            if room.e2e_key_id is not None and holders and uid not in holders:
                out.append(
                    Violation(
                        "queue_restores", f"{uid} is READY in {rid} but never got the key {holders[0]} serves"
                    )
                )
    if policy == "backup" and not out:
        out += _backup_restores(w, acquired, steps)
    return out, steps


def _backup_restores(
    w: World, acquired: dict[str, set[tuple[str, str]]], steps: list[str]
) -> list[Violation]:
    """``backup``: a person lacking a room's current key it once held restores it alone."""
    srv = w.d.server

    def once_held(uid: str, rid: str) -> bool:
        return (rid, srv.room(rid).e2e_key_id) in acquired[uid]

    needy = [
        uid
        for uid in w.users
        if any(
            once_held(uid, rid) and srv.room(rid).subscriptions[uid].e2e_key is None
            for rid in srv.rooms_of(uid)
        )
    ]
    if not needy:
        return []
    names = ", ".join(w.names[u] for u in needy)
    steps.append(f"everybody logs out; then each of {names} logs in alone and restores from its backup")
    for uid in w.users:
        if w.d.clients[uid].online:
            w.d.logout(uid, now=w.now)
    out = []
    for uid in needy:
        w.now += STEP_S
        w.login(uid)
        client, person = w.d.clients[uid], w.d.people[uid]
        if client.functional and person.recovery_key is not None:
            client.restore_from_backup(person.recovery_key, now=w.now)
            w.d.pump(w.now)
        for rid in srv.rooms_of(uid):
            if once_held(uid, rid) and not _holds(w, uid, rid):
                out.append(
                    Violation("backup_restores", f"{uid} once held the key of {rid} but did not restore it")
                )
        out += check_state(w)
        w.d.logout(uid, now=w.now)
    return out


# ---------------------------------------------------------------------------------------- identity


def canonical(w: World) -> tuple[Any, ...]:
    """The state's identity: equal for states that differ only by random names and times."""
    return _walk(w)


_SYMBOLIC = SymbolicBackend()


@lru_cache(maxsize=1 << 16)
def _pub(public_key: str) -> str:
    return str(json.loads(public_key).get("pub", public_key))


@lru_cache(maxsize=1 << 16)
def _priv_pub(private_key: str) -> str:
    return _pub(_SYMBOLIC.public_key_text(private_key))


@lru_cache(maxsize=1 << 16)
def _wrap_parts(wrapped: str) -> tuple[str, str, str] | None:
    """A symbolic wrapped key as (kid, recipient's public key, room secret), or None."""
    try:
        kid, record = codec.split_prefixed(wrapped)
    except ProtocolError:
        return None
    if not record.startswith(_WRAP_MAGIC):
        return None
    n = len(_WRAP_MAGIC)
    return kid, record[n : n + 16].hex(), record[n + 16 : n + 32].hex()


@lru_cache(maxsize=1 << 16)
def _open_blob(blob: str, user_id: str, password: str) -> str | None:
    try:
        return str(_SYMBOLIC.decrypt_private_key(blob, user_id=user_id, password=password))
    except ProtocolError:
        return None


def _secret(key: RoomKey) -> str:
    return str(key.key).removeprefix("sym-room-")


class _Names:
    """Random names, renamed by the order of their first appearance in a walk."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[str, int] = {}

    def __call__(self, value: str | None) -> int:
        if value is None:
            return -1
        n = self._d.get(value)
        if n is None:
            n = self._d[value] = len(self._d)
        return n

    def known(self, value: str | None) -> int:
        """The name ``value`` already has, or -1: names nothing new."""
        return self._d.get(value, -1) if value is not None else -1

    def pub(self, public_key: str | None) -> int:
        return self(_pub(public_key)) if public_key is not None else -1

    def priv(self, private_key: object) -> int:
        return self(_priv_pub(str(private_key))) if private_key is not None else -1

    def key(self, key: RoomKey | None) -> tuple[int, int]:
        return (-1, -1) if key is None else (self(key.kid), self(_secret(key)))

    def wrap(self, wrapped: str | None) -> tuple[int, ...]:
        if wrapped is None:
            return ()
        parts = _wrap_parts(wrapped)
        return (self("?" + wrapped),) if parts is None else tuple(self(p) for p in parts)

    def olds(self, old: Iterable[Any] | None) -> tuple[tuple[int, ...], ...] | None:
        return None if old is None else tuple((self(o.e2e_key_id), *self.wrap(o.e2e_key)) for o in old)

    def blob(self, blob: str | None, uid: str, passwords: Iterable[str | None]) -> tuple[int, ...]:
        if blob is None:
            return ()
        for password in passwords:
            private = _open_blob(blob, uid, password) if password is not None else None
            if private is not None:
                return self.priv(private), self(password)
        return (self("?" + blob),)  # nobody knows its password: it can never open


def _walk(w: World) -> tuple[Any, ...]:
    """The state as nested tuples of small ints, literals and enum values."""
    n, d, srv = _Names(), w.d, w.d.server
    users, rooms = w.users, w.rooms
    uix = {uid: i for i, uid in enumerate(users)}
    rix = {rid: i for i, rid in enumerate(rooms)}
    out: list[Any] = []
    for uid in users:
        user, client, person = srv.user(uid), d.clients[uid], d.people[uid]
        tokens = tuple((n(t), lt.two_factor_authorized_until is None) for t, lt in user.login_tokens.items())
        pair = n.blob(user.e2e_private_key, uid, (person.e2e_password, client.random_password))
        out.append((n.pub(user.e2e_public_key), pair, n.pub(user.e2e_backup_public_key), tokens))
        out.append((n.pub(w.previous_pub.get(uid)), tuple(rix[r] for r in srv.rooms_of(uid))))
    for rid in rooms:
        room = srv.room(rid)
        subs = tuple(
            (
                uix[u],
                s.roles,
                n.wrap(s.e2e_key),
                n.wrap(s.e2e_suggested_key),
                n.olds(s.old_room_keys),
                n.olds(s.suggested_old_room_keys),
                uix.get(s.suggestion_signer or "", -1),
                n(s.suggestion_signature),
            )
            for u, s in room.subscriptions.items()
        )
        waiting = (
            None if room.users_waiting is None else tuple(sorted(uix[x.user_id] for x in room.users_waiting))
        )
        out.append((room.encrypted, n(room.e2e_key_id), waiting, subs))
    if srv.policy == "backup":
        # no public listing of the backup store: read it (an observer changes nothing); which
        # keys it holds matters, and how many of them nothing else refers to
        store: dict[tuple[str, str], dict[str, str]] = getattr(srv, "_backups")  # noqa: B009
        for u, r, keys in sorted((uix[u], rix[r], keys) for (u, r), keys in store.items()):
            out.append((u, r, tuple(sorted(n.known(k) for k in keys))))
    for uid in users:
        client, person = d.clients[uid], d.people[uid]
        sessions = tuple(
            (
                rix[rid],
                s.state.value,
                n(s.key_id),
                n.key(s.key),
                None if s.old_keys is None else tuple((n(k), *n.key(v[0])) for k, v in s.old_keys.items()),
                s.ready_once,
            )
            for rid in client.session_room_ids()
            if (s := client.session(rid)) is not None
        )
        # the rooms regained since the latest reset (their first source was checked then)
        regained = (
            sorted({rix[a.room_id] for a in client.acquired[client.reset_marks[-1] :]})
            if client.resets
            else ()
        )
        device = (n(client.login_token), n.priv(client.private_key), n.pub(client.public_key))
        out.append((client.state.value, n(client.random_password), n.priv(client.recovery_key), device))
        out.append((sessions, bool(client.resets), tuple(regained)))
        out.append((n(person.e2e_password), n.priv(person.recovery_key)))
    # History, restricted to keys named above: a key that no document, device or backup refers
    # to any more can never be held again.  A key record matters for the keys a device holds
    # (each needs one) and, for the backup property, for the rooms' current keys.
    for uid in users:
        client = d.clients[uid]
        relevant = {(rid, kid) for rid in client.session_room_ids() for kid in client.held_keys(rid)}
        if srv.policy == "backup":
            relevant |= {(rid, srv.room(rid).e2e_key_id or "") for rid in w.rooms}
        records = {
            (rix[a.room_id], n.known(a.kid)) for a in client.acquired if (a.room_id, a.kid) in relevant
        }
        backed: set[tuple[str, str]] = getattr(client, "_backed_up", set())  # not uploaded again
        backed_up = {(rix[r], n.known(k)) for r, k in backed}
        out.append((tuple(sorted(records)), tuple(sorted(x for x in backed_up if x[1] >= 0))))
    ledger = {(rix[r], n.known(k), n.known(_secret(v[0]))) for (r, k), v in d.ledger.keys.items()}
    out.append(tuple(sorted(x for x in ledger if x[1] >= 0)))
    return tuple(out)


class _Seen:
    """The states seen, as 64-bit hashes of their walks: memory stays flat; a collision, about
    1e-9 likely at a million states, would merge two states."""

    def __init__(self) -> None:
        self._walks: set[int] = set()
        self.count = 0

    def add(self, w: World) -> bool:
        """Whether ``w`` is new (and from now on seen)."""
        h = hash(_walk(w))
        if h in self._walks:
            return False
        self._walks.add(h)
        self.count += 1
        return True


# --------------------------------------------------------------------------------------- snapshots


class _Reducers(dict[type, Callable[[Any], Any]]):
    """A pickler's dispatch table: protocol dataclasses rebuilt from their field values (the
    ``__setstate__`` that ``slots=True`` generates is several times slower)."""

    def __missing__(self, cls: type) -> Callable[[Any], Any]:
        if not dataclasses.is_dataclass(cls) or not all(f.init for f in dataclasses.fields(cls)):
            raise KeyError(cls)
        names = tuple(f.name for f in dataclasses.fields(cls))
        validated = hasattr(cls, "__post_init__")  # validated when first made: not again

        def reducer(obj: Any) -> Any:
            values = tuple(getattr(obj, n) for n in names)
            return (_build, (cls, names, values)) if validated else (cls, values)

        self[cls] = reducer
        return reducer


_REDUCERS = _Reducers()


def _build(cls: type, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    obj: Any = object.__new__(cls)
    for name, value in zip(names, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


def _dump(w: World) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(w)
    return buf.getvalue()


def _load(data: bytes) -> World:
    w: World = pickle.loads(data)
    return w


def _rebuild(root: bytes, trace: Sequence[Op]) -> World:
    """Replay ``trace`` from the initial world; entropy included, so exactly."""
    w = _load(root)
    for op in trace:
        apply(w, op)
    return w


# ---------------------------------------------------------------------------------------- explorer


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What :func:`explore` found, with the statistics ``keysim check`` prints."""

    users: int
    rooms: int
    depth: int
    policy: str
    #: distinct states reached (the initial one included)
    states: int
    #: operations applied
    transitions: int
    elapsed_s: float
    #: the levels fully expanded: ``depth`` when the search is complete
    depth_done: int
    #: True when ``max_states`` stopped the search
    capped: bool = False
    #: True when no operation led to a new state before ``depth``: the scope is exhausted
    exhausted: bool = False
    #: the violations of the shortest failing trace; empty when none was found
    violations: tuple[str, ...] = ()
    #: that trace as readable steps: the start, the operations, then the suffix if any
    trace: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def report(self) -> str:
        lines = [
            f"keysim check: policy {self.policy}, {self.users} users, {self.rooms} rooms, depth {self.depth}",
            f"  states explored  {self.states:,}",
            f"  transitions      {self.transitions:,}",
            f"  states/second    {self.states_per_second:,.0f}",
            f"  elapsed          {self.elapsed_s:.2f} s",
            f"  depth completed  {self.depth_done}{' (no new state beyond it)' if self.exhausted else ''}",
        ]
        if self.capped:
            lines.append(f"  --max-states reached: the search stopped at {self.states:,} states, incomplete")
        if self.ok:
            lines.append("no violation found")
            return "\n".join(lines)
        lines.append("VIOLATION")
        lines += [f"  {v}" for v in self.violations]
        lines.append(f"shortest trace ({len(self.trace) - 1} steps):")
        lines += [f"  {k}. {step}" for k, step in enumerate(self.trace)]
        return "\n".join(lines)


def _start(w: World) -> str:
    users = ", ".join(w.names[u] + (" (TOTP)" if u in w.totp_secret else "") for u in w.users)
    rooms = "; ".join(
        f"{w.names[rid]} ({', '.join(w.names[u] for u in w.d.server.room(rid).subscriptions)})"
        for rid in w.rooms
    )
    return f"start: {users} log in; rooms {rooms}"


def explore(
    users: int = 3,
    rooms: int = 2,
    depth: int = 8,
    policy: str = "queue",
    max_states: int | None = None,
    *,
    eventually: bool = True,
    seed: int = 0,
) -> CheckResult:
    """Breadth-first search of every interleaving of :data:`OPERATIONS` up to ``depth`` steps;
    stops at the first violation (a shortest trace) or after ``max_states`` distinct states."""
    if policy not in POLICIES:
        raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
    if depth < 0:
        raise ValueError(f"depth: must be >= 0, got {depth}")
    if max_states is not None and max_states < 1:
        raise ValueError(f"max-states: must be >= 1, got {max_states}")
    started = time.perf_counter()
    root = World(users, rooms, policy, seed=seed)
    snapshot = _dump(root)
    seen = _Seen()
    seen.add(root)
    transitions = level = 0

    def result(found: Sequence[Violation] = (), steps: Sequence[str] = (), **flags: bool) -> CheckResult:
        violations = tuple(root.name(str(v)) for v in found)
        trace = (_start(root), *(root.name(s) for s in steps)) if found else ()
        elapsed = time.perf_counter() - started
        return CheckResult(
            users,
            rooms,
            depth,
            policy,
            seen.count,
            transitions,
            elapsed,
            level,
            violations=violations,
            trace=trace,
            **flags,
        )

    def check(w: World, trace: tuple[Op, ...], *, new: bool) -> CheckResult | None:
        """The safety properties of a new state, then (on ``w`` itself) the liveness ones."""
        found: list[Violation] = []
        suffix: list[str] = []
        try:
            found = check_state(w) if new else []
            if not found and new and eventually:
                found, suffix = check_eventually(w)
        except Exception as exc:  # a crash of the protocol is a finding, not an accident
            found, suffix = [Violation("operation_failed", f"{type(exc).__name__}: {exc}")], ["settle"]
        return result(found, [describe(w, op) for op in trace] + suffix) if found else None

    if failed := check(_load(snapshot), (), new=True):
        return failed
    frontier: list[tuple[Op, ...]] = [()]
    for level in range(depth):
        following: list[tuple[Op, ...]] = []
        for trace in frontier:
            parent = _rebuild(snapshot, trace)
            parent_bytes = _dump(parent)
            for op in enabled_ops(parent):
                transitions += 1
                child, child_trace = _load(parent_bytes), (*trace, op)
                try:
                    found = apply(child, op)
                    new = not found and seen.add(child)
                except Exception as exc:  # a crash of the protocol is a finding, not an accident
                    found, new = [Violation("operation_failed", f"{type(exc).__name__}: {exc}")], False
                if found:
                    return result(found, [describe(child, o) for o in child_trace])
                if not new:
                    continue
                following.append(child_trace)
                if failed := check(child, child_trace, new=True):
                    return failed
                if max_states is not None and seen.count >= max_states:
                    return result(capped=True)
        frontier = following
        if not frontier:
            level += 1
            return result(exhausted=True)
    level = depth
    return result()
