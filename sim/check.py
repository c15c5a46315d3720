"""``keysim check``: exhaustive small-scope exploration of the E2EE key lifecycle.

Theory of operation.  A *world* is a :class:`protocol.Deployment` (symbolic crypto) with N users
and M rooms made at the start, every user logged in.  From it the explorer applies every enabled
operation of :data:`OPERATIONS` (the operation set of ``tests/test_e2e_stateful.py``) to every
state, **breadth-first**, so the first violation found has a shortest trace.  Time advances by
:data:`STEP_S` per operation; ``now`` is part of neither the state's identity nor the properties.

* Identity.  States are deduplicated by :func:`canonical`, a walk of the server's documents, each
  client's local state, the people and the key ledger in a fixed order in which every random name
  (key tokens, kids, login tokens, passwords, message ids) is replaced by the order of its first
  appearance, and every structured ciphertext is split into the names it binds (a wrapped key into
  kid, recipient and room secret; a private-key blob into key pair and password).  Two states that
  differ only by random names are equal; timestamps are left out.
* Safety.  After every step: :func:`protocol.check_all`, every logged-in member reads every
  message whose key it holds (and must read what was sent), and for a person with TOTP a reset with
  no code and with a wrong code must be refused before the real reset goes through.
* Liveness (the "eventually" properties), checked from every new state on a copy:
  ``queue``/``backup``: after a settle (every functional client ticks and syncs, twice), in every
  room with a key, either no functional member holds it or all do (spec section 4);
  ``backup``: with everyone else logged out, each person logs in alone, restores with its recovery
  key, and holds every room's current key it ever held; ``live``: checked at each handshake (a
  login, an unlock, a join): the member gets the key iff another member online then holds it.

Randomness: every entropy source is reseeded from the trace before each operation, so a state is a
function of its trace; a state is stored as its trace and rebuilt by replay when expanded.
"""

from __future__ import annotations

import array
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

__all__ = ["OPERATIONS", "STEP_S", "CheckResult", "Op", "World", "canonical", "explore"]

#: seconds per operation: longer than the room-key reset lock (10 s, ``e2e.resetRoomKey``)
STEP_S = 11.0
#: the first ``now`` (2026-01-01): TOTP codes are computed for a realistic clock
T0 = 1_767_225_600.0
_WRAP_MAGIC = b"KSYMWRAP"
MESSAGES_IN_STATE = False  # the symbolic backend's wrapped-key record (protocol/crypto/symbolic.py)


# ---------------------------------------------------------------------------------------- the world


class World:
    """A deployment plus what the explorer needs to drive it: names, the clock, a TOTP secret."""

    def __init__(self, users: int, rooms: int, policy: str, *, seed: int = 0) -> None:
        self.d = Deployment(policy=policy, crypto="symbolic", seed=seed)
        self.users = [self.d.add_user(f"u{i}") for i in range(users)]
        self.now = T0
        # u0 has TOTP, so that the 2FA gate on resets is exercised (Deployment's settings
        # disable the password fallback: without a factor every reset would pass unchecked).
        u0 = self.users[0]
        secret = self.d.server.totp_enable(u0, now=self.now).secret
        self.d.server.totp_validate_temp_token(u0, _totp(secret, self.now), now=self.now)
        self.totp_secret: dict[str, str] = {u0: secret}
        #: a reset user's previous public key, while a holder's late suggestion for it may arrive
        self.previous_pub: dict[str, str] = {}
        for uid in self.users:
            self.login(uid)
        self.rooms: list[str] = []
        for owner, members in _room_plan(users, rooms):
            ids = [self.users[i] for i in members]
            if owner is None:
                rid = self.d.server.create_direct_message(ids[0], ids[1], now=self.now)
            else:
                name = "team" if not self.rooms else f"g{len(self.rooms)}"
                rid = self.d.server.create_private_group(self.users[owner], name, ids, now=self.now)
            self.rooms.append(rid)
        self.d.pump(self.now)
        self.symmetries = _symmetries(self)
        self._small_entropy(seed)
        self.names = {uid: f"u{i}" for i, uid in enumerate(self.users)}
        for rid in self.rooms:
            room = self.d.server.room(rid)
            self.names[rid] = room.name if room.t == "p" else "dm " + room.name

    def _small_entropy(self, seed: int) -> None:
        """Give every entropy source a generator with a one-word state, so that a snapshot of a
        world is a few kilobytes (a Mersenne Twister pickles 625 words).  Deployment offers no
        way to choose the generator, so two private references are reassigned here."""
        d = self.d
        sources = [d.server.entropy, *(c.entropy for c in d.clients.values())]
        fresh = {id(src): _Entropy(seed * 1_000_003 + k) for k, src in enumerate(sources)}
        d.server.entropy = fresh[id(d.server.entropy)]
        d.server.twofactor._entropy = d.server.entropy
        d._rng = _Entropy(seed)
        for client in d.clients.values():
            client.entropy = fresh[id(client.entropy)]

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
    """splitmix64 (Steele, Lea and Flood 2014) behind :class:`random.Random`'s interface: every
    method of ``Random`` draws from :meth:`getrandbits` and :meth:`random`, overridden here."""

    _state: int

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)

    def seed(self, a: Any = None, version: int = 2) -> None:
        self._state = hash(a) & _MASK64 if not isinstance(a, int) else a & _MASK64

    def _next(self) -> int:
        self._state = z = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def _randbelow(self, n: int) -> int:
        # every choice(), sample() and randrange() lands here: one draw, scaled (Lemire)
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
    """The TOTP code an authenticator shows at ``now``."""
    return _code(secret, int(now // totp.PERIOD))


def _room_plan(users: int, rooms: int) -> list[tuple[int | None, list[int]]]:
    """(owner or None for a DM, members): a group of everyone, then DMs, then smaller groups."""
    if users < 2 or rooms < 1:
        raise ValueError("need at least 2 users and 1 room")
    plan: list[tuple[int | None, list[int]]] = [(0, list(range(1, users)))]
    pairs = [(a, b) for a in range(users) for b in range(a + 1, users)]
    pairs.sort(key=lambda p: (p[0] == 0, p))  # DMs without the owner first: u1+u2, ...
    plan += [(None, [a, b]) for a, b in pairs]
    plan += [(a, [b]) for a, b in pairs]  # two-member groups
    if rooms > len(plan):
        raise ValueError(f"at most {len(plan)} rooms for {users} users")
    return plan[:rooms]


# -------------------------------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of one user (and one room for room operations)."""

    kind: str
    user: int
    room: int | None = None


Guard = Callable[[World, int, int], bool]
Action = Callable[[World, int, int], list[Violation]]


def _member(w: World, i: int, r: int) -> bool:
    return w.users[i] in w.d.server.room(w.rooms[r]).subscriptions


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
    uid = w.users[i]
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
    previous = w.d.server.user(uid).e2e_public_key
    w.d.reset(uid, now=w.now, code=code)
    if previous is not None:
        w.previous_pub[uid] = previous
    # spec 3.4 (resetUserE2EKey.ts): the key pair is gone, and so is every room key the user had
    out = []
    for rid in w.d.server.rooms_of(uid):
        sub = w.d.server.room(rid).subscriptions[uid]
        kept = [
            f
            for f, v in (
                ("E2EKey", sub.e2e_key),
                ("E2ESuggestedKey", sub.e2e_suggested_key),
                ("oldRoomKeys", sub.old_room_keys),
            )
            if v is not None
        ]
        if kept:
            out.append(
                Violation("reset_forgets_keys", f"after its reset u{i} keeps {', '.join(kept)} in {rid}")
            )
    if w.d.server.user(uid).e2e_public_key is not None or w.d.clients[uid].online:
        out.append(Violation("reset_forgets_keys", f"after its reset u{i} keeps its key pair or a session"))
    return out


def _holder(w: World, r: int) -> int | None:
    """The first functional member holding room ``r``'s current key (subscription order)."""
    rid = w.rooms[r]
    for uid in w.d.server.room(rid).subscriptions:
        if _holds(w, uid, rid):
            return w.users.index(uid)
    return None


def _can_deliver_late(w: World, i: int, r: int) -> bool:
    uid = w.users[i]
    if uid not in w.previous_pub or w.client(i).online or not _member(w, i, r):
        return False
    sub = w.d.server.room(w.rooms[r]).subscriptions[uid]
    holder = _holder(w, r)
    return sub.e2e_key is None and holder is not None and holder != i


def _op_deliver_late(w: World, i: int, r: int) -> list[Violation]:
    """A holder's tick fetched u's public key before u reset, and posts only now (RC #32197's
    loop is asynchronous): a suggestion wrapped for u's previous key pair is stored."""
    holder = _holder(w, r)
    assert holder is not None
    rid, client = w.rooms[r], w.client(holder)
    session = client.session(rid)
    assert session is not None and session.key is not None
    wrapped = w.d.backend.wrap_room_key(session.key, w.previous_pub.pop(w.users[i]), client.entropy)
    entry = {"_id": w.users[i], "key": wrapped}
    w.d.server.e2e_provide_users_suggested_group_keys(w.users[holder], {rid: [entry]}, now=w.now)
    w.d.pump(w.now)
    return []


def _can_push(w: World, i: int, r: int) -> bool:
    rid = w.rooms[r]
    if not _holds(w, w.users[i], rid):
        return False
    srv = w.d.server
    return any(
        s.e2e_key is None and s.e2e_suggested_key is None and srv.user(u).e2e_public_key
        for u, s in srv.room(rid).subscriptions.items()
    )


def _op_push(w: World, i: int, r: int) -> list[Violation]:
    """The legacy client's way to hand out a key: ``e2e.updateGroupKey`` for every member
    without one (spec 3.6, "creator push and the deprecated updateGroupKey for another user")."""
    rid, client, srv = w.rooms[r], w.client(i), w.d.server
    session = client.session(rid)
    assert session is not None and session.key is not None
    for uid, sub in list(srv.room(rid).subscriptions.items()):
        public_key = srv.user(uid).e2e_public_key
        if sub.e2e_key is None and sub.e2e_suggested_key is None and public_key:
            wrapped = w.d.backend.wrap_room_key(session.key, public_key, client.entropy)
            srv.e2e_update_group_key(w.users[i], rid, uid, wrapped)
    w.d.pump(w.now)
    return []


def _op_join(w: World, i: int, r: int) -> list[Violation]:
    room = w.d.server.room(w.rooms[r])
    actor = next(iter(room.subscriptions))
    before = _live_holders(w, i, r)
    w.d.server.add_user_to_room(actor, room.id, w.users[i], now=w.now)
    w.d.pump(w.now)
    return _live_handshake(w, i, {r: before})


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
    w.client(i).send(w.rooms[r], f"hello from u{i}", now=w.now)
    return []


def _offline(w: World, i: int, r: int) -> bool:
    return not w.client(i).online


def _can_fail_password(w: World, i: int, r: int) -> bool:
    uid = w.users[i]
    return _offline(w, i, r) and w.d.server.user(uid).e2e_private_key is not None


def _functional(w: World, i: int, r: int) -> bool:
    return w.client(i).functional


def _can_tick(w: World, i: int, r: int) -> bool:
    # with no candidate room, Client.tick samples nothing and returns before any effect
    return w.client(i).functional and bool(w.client(i).distribution_candidates())


def _can_sync(w: World, i: int, r: int) -> bool:
    """Whether :meth:`Client.sync` would do anything: this mirrors ``_on_subscription_changed``
    (a room without a session, a changed kid, a suggestion, an ``E2EKey`` while waiting), so
    only certain no-ops are skipped."""
    client = w.client(i)
    if not client.functional:
        return False
    for rid in w.d.server.rooms_of(w.users[i]):
        room = w.d.server.room(rid)
        sub, session = room.subscriptions[w.users[i]], client.session(rid)
        if not room.encrypted:
            return True
        if session is None or sub.e2e_suggested_key:
            return True
        if session.key_id is not None and room.e2e_key_id is not None and session.key_id != room.e2e_key_id:
            return True
        if sub.e2e_key and session.state.value == "WAITING_KEYS":
            return True
    return False


#: RC's UI offers a room-key reset only to a member whose room is in one of these states (#33328)
_RESET_OFFERED = (
    None,
    E2ERoomState.NOT_STARTED,
    E2ERoomState.DISABLED,
    E2ERoomState.ERROR,
    E2ERoomState.WAITING_KEYS,
)

#: kind -> (takes a room, guard, action, description with {u} and {r}).  Guards are the stateful
#: test's preconditions, tightened so that no operation is a certain no-op or a certain error.
OPERATIONS: dict[str, tuple[bool, Guard, Action, str]] = {
    "login": (False, _offline, _op_login, "{u} logs in and unlocks E2EE (saves a new password if asked)"),
    "login_wrong": (False, _can_fail_password, _op_login_wrong, "{u} logs in and types a wrong E2E password"),
    "enter_password": (
        False,
        lambda w, i, r: (
            w.client(i).online
            and w.client(i).state == E2EEState.ENTER_PASSWORD
            and w.d.people[w.users[i]].e2e_password is not None
        ),
        _op_enter_password,
        "{u} types its E2E password",
    ),
    "logout": (False, lambda w, i, r: w.client(i).online, _op_logout, "{u} logs out"),
    "change_password": (False, _functional, _op_change_password, "{u} changes its E2E password"),
    "reset": (False, lambda w, i, r: w.client(i).online, _op_reset, "{u} resets its E2E key"),
    "tick": (False, _can_tick, _op_tick, "{u}'s client runs its key-distribution loop (tick)"),
    "accept": (False, _can_sync, _op_accept, "{u}'s client syncs and accepts suggested keys"),
    "join": (
        True,
        lambda w, i, r: w.d.server.room(w.rooms[r]).t == "p" and not _member(w, i, r),
        _op_join,
        "{u} is added to {r}",
    ),
    "leave": (
        True,
        lambda w, i, r: (
            w.d.server.room(w.rooms[r]).t == "p"
            and _member(w, i, r)
            and "owner" not in w.d.server.room(w.rooms[r]).subscriptions[w.users[i]].roles
        ),
        _op_leave,
        "{u} leaves {r}",
    ),
    "room_key_reset": (
        True,
        lambda w, i, r: (
            _functional(w, i, r)
            and _member(w, i, r)
            and w.client(i).room_state(w.rooms[r]) in _RESET_OFFERED
            and w.d.server.room(w.rooms[r]).e2e_key_id is not None
            and w.d.server.has_permission(w.users[i], "toggle-room-e2e-encryption", w.rooms[r])
        ),
        _op_room_key_reset,
        "{u} resets the room key of {r}",
    ),
    "deliver_late": (
        True,
        _can_deliver_late,
        _op_deliver_late,
        "a holder's late suggestion for {u}'s previous key pair reaches {r}",
    ),
    "push": (True, _can_push, _op_push, "{u} pushes the key of {r} with the deprecated e2e.updateGroupKey"),
    "send": (
        True,
        lambda w, i, r: _functional(w, i, r) and w.client(i).holds_current_key(w.rooms[r]),
        _op_send,
        "{u} sends a message in {r}",
    ),
}


def describe(w: World, op: Op) -> str:
    template = OPERATIONS[op.kind][3]
    room = w.names[w.rooms[op.room]] if op.room is not None else ""
    return template.format(u=f"u{op.user}", r=room)


def enabled_ops(w: World) -> list[Op]:
    out = []
    for kind, (takes_room, guard, _, _) in OPERATIONS.items():
        for i in range(len(w.users)):
            for r in range(len(w.rooms)) if takes_room else (0,):
                if guard(w, i, r):
                    out.append(Op(kind, i, r if takes_room else None))
    return out


def apply(w: World, op: Op) -> list[Violation]:
    """Apply ``op`` (its guard holds); the explorer-level violations it showed, if any."""
    w.now += STEP_S
    action = OPERATIONS[op.kind][2]
    suggested = _suggested(w)
    if op.kind in ("login", "login_wrong", "enter_password"):
        before = {r: _live_holders(w, op.user, r) for r in range(len(w.rooms))}
        out = action(w, op.user, 0) or _live_handshake(w, op.user, before)
    else:
        out = action(w, op.user, op.room if op.room is not None else 0)
    return out if out or op.kind == "push" else _served_left_queue(w, suggested)


# ------------------------------------------------------------------------------------- properties


def check_state(w: World) -> list[Violation]:
    """The safety properties: the protocol's invariants, and every reader reads what was sent."""
    d = w.d
    passwords = [p.account_password for p in d.people.values()]
    out = check_all(d.server, d.clients, d.ledger, passwords=passwords)
    sent = {mid: text for c in d.clients.values() for (_, mid, text) in c.sent}
    for uid, client in d.clients.items():
        if not client.functional:
            continue
        mark = len(client.decrypted)
        for rid in d.server.rooms_of(uid):
            held = client.held_keys(rid)
            for message in d.server.messages(rid):
                kid = message.content.get("kid") if message.content else None
                plain = client.decrypt(message)
                if kid in held and plain != {"msg": sent.get(message.id)}:
                    out.append(Violation("readers_read_what_was_sent", f"{uid} misreads {message.id}"))
        # reading is an observation: its record must not split states that differ in nothing else
        del client.decrypted[mark:]
    return out


def _suggested(w: World) -> set[tuple[str, str]]:
    return {
        (rid, uid)
        for rid in w.rooms
        for uid, sub in w.d.server.room(rid).subscriptions.items()
        if sub.e2e_suggested_key is not None
    }


def _served_left_queue(w: World, before: set[tuple[str, str]]) -> list[Violation]:
    """Spec 3.6: ``provideUsersSuggestedGroupKeys`` takes the users it serves off the queue.
    (The deprecated ``updateGroupKey`` does not: there only the acceptance dequeues.)"""
    out = []
    for rid, uid in _suggested(w) - before:
        if w.d.server.room(rid).is_waiting(uid):
            out.append(Violation("served_users_leave_queue", f"{uid} waits in {rid} but was served"))
    return out


def _holds(w: World, uid: str, rid: str) -> bool:
    return w.d.clients[uid].functional and w.d.clients[uid].holds_current_key(rid)


def _live_holders(w: World, i: int, r: int) -> tuple[bool, bool]:
    """Before a handshake of u{i} in room ``r``: whether another member online holds the key
    (a live request reaches it, and it answers: ``_provide_key_to_user``), and whether u{i} has
    another way to the key (an ``E2EKey``, a pending suggestion, or no key yet to get)."""
    rid = w.rooms[r]
    room = w.d.server.room(rid)
    if w.users[i] not in room.subscriptions or room.e2e_key_id is None:
        return False, True
    online = False
    for uid in room.subscriptions:
        session = w.d.clients[uid].session(rid)
        if uid != w.users[i] and w.d.clients[uid].functional and session is not None:
            online = online or (session.key_id == room.e2e_key_id and session.key is not None)
    sub = room.subscriptions[w.users[i]]
    return online, bool(sub.e2e_key or sub.e2e_suggested_key)


def _live_handshake(w: World, i: int, before: dict[int, tuple[bool, bool]]) -> list[Violation]:
    """``live``: a handshake restores the key iff another member online then held it."""
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
            detail = f"u{i} handshook in {rid} while a holder was online, and got no key"
            out.append(Violation("live_restoration", detail))
        elif not holder_online and not other_way and holds:
            detail = f"u{i} got the key of {rid} at its handshake with no holder online"
            out.append(Violation("live_restoration", detail))
    return out


def settle(w: World) -> None:
    """Every functional client ticks and syncs, twice (the settle suffix of a trace)."""
    for _ in range(2):
        for uid in w.users:
            if w.d.clients[uid].functional:
                w.now += STEP_S
                w.d.tick(uid, now=w.now)
                w.d.clients[uid].sync(now=w.now)
                w.d.pump(w.now)


def check_eventually(w: World) -> tuple[list[Violation], list[str]]:
    """The liveness properties of ``w``'s policy, on ``w`` itself (pass a copy); the violations
    and the steps of the suffix that showed them."""
    policy = w.d.server.policy
    if policy == "live":
        return [], []
    acquired = {uid: {(a.room_id, a.kid) for a in c.acquired} for uid, c in w.d.clients.items()}
    settle(w)
    steps = ["settle: every logged-in READY client ticks, syncs and accepts, twice"]
    out = check_state(w)
    for rid in w.rooms:
        room = w.d.server.room(rid)
        if room.e2e_key_id is None:
            continue
        members = [uid for uid in room.subscriptions if w.d.clients[uid].functional]
        holders = [uid for uid in members if _holds(w, uid, rid)]
        for uid in members:
            if holders and uid not in holders:
                detail = f"{uid} is READY in {rid} but never got the key that {holders[0]} holds and serves"
                out.append(Violation("queue_restores", detail))
    if policy == "backup" and not out:
        out += _backup_restores(w, acquired, steps)
    return out, steps


def _backup_restores(
    w: World, acquired: dict[str, set[tuple[str, str]]], steps: list[str]
) -> list[Violation]:
    """``backup``: a person who lacks a room key it once held gets it back from its backup,
    with nobody else online."""
    srv = w.d.server

    def lacking(uid: str) -> list[str]:
        return [
            rid
            for rid in srv.rooms_of(uid)
            if (rid, srv.room(rid).e2e_key_id) in acquired[uid]
            and srv.room(rid).subscriptions[uid].e2e_key is None
        ]

    needy = [uid for uid in w.users if lacking(uid)]
    if not needy:
        return []
    steps.append(
        f"everybody logs out; {', '.join(needy)} log in alone, one at a time, and restore from backup"
    )
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
            if (rid, srv.room(rid).e2e_key_id) in acquired[uid] and not _holds(w, uid, rid):
                out.append(
                    Violation(
                        "backup_restores", f"{uid} held {rid}'s current key once but did not restore it alone"
                    )
                )
        out += check_state(w)
        w.d.logout(uid, now=w.now)
    return out


# ------------------------------------------------------------------------------- canonical identity


@lru_cache(maxsize=1 << 16)
def _pub(public_key: str) -> str:
    obj = json.loads(public_key)
    return str(obj.get("pub", public_key))


_SYMBOLIC = SymbolicBackend()


@lru_cache(maxsize=1 << 16)
def _priv_pub(private_key: str) -> str:
    return _pub(_SYMBOLIC.public_key_text(private_key))


@lru_cache(maxsize=1 << 16)
def _wrap_parts(wrapped: str) -> tuple[str, str, str] | None:
    """A symbolic wrapped key as (kid, recipient's pub, room secret), or None."""
    try:
        kid, record = codec.split_prefixed(wrapped)
    except ProtocolError:
        return None
    if not record.startswith(_WRAP_MAGIC):
        return None
    n = len(_WRAP_MAGIC)
    return kid, record[n : n + 16].hex(), record[n + 16 : n + 32].hex()


def _secret(key: RoomKey) -> str:
    """A symbolic room key's secret (the handle is ``sym-room-<hex>``)."""
    return str(key.key).removeprefix("sym-room-")


class _Names:
    """Random names renamed by order of first appearance."""

    __slots__ = ("_d", "backend")

    def __init__(self, w: World) -> None:
        self._d: dict[str, int] = {}
        self.backend = w.d.backend

    def __call__(self, value: str | None) -> int:
        if value is None:
            return -1
        n = self._d.get(value)
        if n is None:
            n = self._d[value] = len(self._d)
        return n

    def known(self, value: str) -> int:
        """The name of ``value`` if it already has one, else -1 (names nothing new)."""
        return self._d.get(value, -1)

    def pub(self, public_key: str | None) -> int:
        return self(_pub(public_key)) if public_key is not None else -1

    def priv(self, private_key: object) -> int:
        if private_key is None:
            return -1
        return self(_priv_pub(str(private_key)))

    def key(self, key: RoomKey | None) -> tuple[int, int]:
        return (-1, -1) if key is None else (self(key.kid), self(_secret(key)))

    def wrap(self, wrapped: str | None) -> tuple[int, ...]:
        if wrapped is None:
            return ()
        parts = _wrap_parts(wrapped)
        if parts is None:
            return (self("?" + wrapped),)
        return tuple(self(p) for p in parts)

    def olds(self, old: Iterable[Any] | None) -> tuple[tuple[int, ...], ...] | None:
        return None if old is None else tuple((self(o.e2e_key_id), *self.wrap(o.e2e_key)) for o in old)

    def blob(self, blob: str | None, passwords: Iterable[str | None], uid: str) -> tuple[int, ...]:
        if blob is None:
            return ()
        for password in passwords:
            if password is not None:
                private = _open_blob(self.backend, blob, uid, password)
                if private is not None:
                    return (self.priv(private), self(password))
        return (self("?" + blob),)


_BLOBS: dict[tuple[str, str], object] = {}


def _open_blob(backend: Any, blob: str, uid: str, password: str) -> object:
    key = (blob, password)
    if key not in _BLOBS:
        if len(_BLOBS) > 1 << 16:
            _BLOBS.clear()
        try:
            _BLOBS[key] = backend.decrypt_private_key(blob, user_id=uid, password=password)
        except ProtocolError:
            _BLOBS[key] = None
    return _BLOBS[key]


def canonical(w: World) -> frozenset[tuple[Any, ...]]:
    """The state's identity: equal for states that differ only by random names and times, or by
    a symmetry of the initial rooms (a permutation of users that maps the room plan onto itself,
    u1 <-> u2 for 3 users and 2 rooms): the set of the state's walks under every symmetry."""
    return frozenset(_walk(w, uix, rix) for uix, rix in w.symmetries)


def _symmetries(w: World) -> list[tuple[dict[str, int], dict[str, int]]]:
    """The permutations of users (u0 fixed: it owns the first group and has TOTP) that map the
    initial rooms onto themselves, each with the room permutation it induces."""
    out = []
    rooms = [_room_shape(w, rid, list(range(len(w.users)))) for rid in w.rooms]
    order = {shape: k for k, shape in enumerate(rooms)}  # the room plan has no two equal rooms
    for rest in itertools.permutations(range(1, len(w.users))):
        perm = [0, *rest]
        image = [_room_shape(w, rid, perm) for rid in w.rooms]
        if sorted(image) == sorted(rooms):
            users = {uid: perm[i] for i, uid in enumerate(w.users)}
            out.append((users, {rid: order[image[k]] for k, rid in enumerate(w.rooms)}))
    return out


def _room_shape(w: World, rid: str, perm: list[int]) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    room = w.d.server.room(rid)
    index = {uid: perm[i] for i, uid in enumerate(w.users)}
    owners = tuple(sorted(index[u] for u, s in room.subscriptions.items() if "owner" in s.roles))
    return room.t, owners, tuple(sorted(index[u] for u in room.subscriptions))


def _walk(w: World, uix: dict[str, int], rix: dict[str, int]) -> tuple[Any, ...]:
    n = _Names(w)
    d, srv = w.d, w.d.server
    users = sorted(w.users, key=uix.__getitem__)
    out: list[Any] = []
    for uid in users:
        user, client, person = srv.user(uid), d.clients[uid], d.people[uid]
        out.append(
            (
                n.pub(user.e2e_public_key),
                n.blob(user.e2e_private_key, (person.e2e_password, client.random_password), uid),
                n.pub(user.e2e_backup_public_key),
                n.pub(w.previous_pub.get(uid)),
                tuple((n(t), lt.two_factor_authorized_until is None) for t, lt in user.login_tokens.items()),
                tuple(rix[r] for r in srv.rooms_of(uid)),
            )
        )
    for rid in sorted(w.rooms, key=rix.__getitem__):
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
        # the backup store has no public listing: read it (an observer, it changes nothing)
        store: dict[tuple[str, str], dict[str, str]] = getattr(srv, "_backups")  # noqa: B009
        # every entry is wrapped for its user's recovery key; which keys matters, and how many
        # of those no one else refers to (they can come back only as history)
        entries = [(uix[u], rix[r], keys) for (u, r), keys in store.items()]
        for u, r, keys in sorted(entries, key=lambda e: e[:2]):
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
        # rooms regained since the latest reset: their first source passed the check already
        first = (
            {rix[a.room_id] for a in client.acquired[client.reset_marks[-1] :]}
            if client.reset_marks
            else set()
        )
        out.append(
            (
                client.state.value,
                n(client.random_password),
                n.priv(client.recovery_key),
                n(client.login_token),
                n.priv(client.private_key),
                n.pub(client.public_key),
                sessions,
                bool(client.resets),
                tuple(sorted(first)),
                n(person.e2e_password),
                n.priv(person.recovery_key),
            )
        )
    # History, restricted to the keys still named somewhere above: a key no wrap, session,
    # backup or room refers to can never be held again, so what is known of it cannot matter.
    for uid in users:
        client = d.clients[uid]
        # records matter for the keys held (every held key needs one) and, for the backup
        # property, for the rooms' current keys
        relevant: set[tuple[str, str | None]] = {
            (rid, kid) for rid in client.session_room_ids() for kid in client.held_keys(rid)
        }
        if srv.policy == "backup":
            relevant |= {(rid, srv.room(rid).e2e_key_id) for rid in w.rooms}
        acquired = {
            (rix[a.room_id], n.known(a.kid)) for a in client.acquired if (a.room_id, a.kid) in relevant
        }
        backed_up: set[tuple[str, str]] = getattr(client, "_backed_up", set())  # not uploaded again
        out.append(
            (
                tuple(sorted(x for x in acquired if x[1] >= 0)),
                tuple(sorted(x for r, k in backed_up if (x := (rix[r], n.known(k)))[1] >= 0)),
            )
        )
    ledger = {(rix[r], n.known(k), n.known(_secret(v[0]))) for (r, k), v in d.ledger.keys.items()}
    out.append(tuple(sorted(x for x in ledger if x[1] >= 0)))
    # messages: which (key, readable) pairs exist per room; ids, senders and counts do not matter
    if MESSAGES_IN_STATE:
        for rid in sorted(w.rooms, key=rix.__getitem__):
            out.append(tuple(sorted({_message_parts(n, w, m) for m in srv.messages(rid)})))
    return tuple(out)


def _message_parts(n: _Names, w: World, m: Any) -> tuple[int, int]:
    """(kid, secret of the legitimate key that opens it) of a message whose key is still named."""
    if m.content is None:
        return (-2, -2)
    kid = n.known(str(m.content.get("kid")))
    for (rid, _), (key, _) in w.d.ledger.keys.items():
        if rid != m.rid:
            continue
        try:
            w.d.backend.decrypt_message(m.content, key)
        except ProtocolError:
            continue
        return kid, n.known(_secret(key))
    return kid, -3


# ---------------------------------------------------------------------------- snapshots and replay


class _Reducers(dict[type, Callable[[Any], Any]]):
    """A pickler's dispatch table: protocol dataclasses rebuilt through their ``__init__`` (the
    generated ``__setstate__`` of slotted dataclasses is several times slower)."""

    def __missing__(self, cls: type) -> Callable[[Any], Any]:
        if cls is random.Random:  # Random() would first seed itself from the OS
            reducer: Callable[[Any], Any] = _reduce_rng
        elif dataclasses.is_dataclass(cls) and all(f.init for f in dataclasses.fields(cls)):
            names = tuple(f.name for f in dataclasses.fields(cls))
            if hasattr(cls, "__post_init__"):  # validated once already: skip the validation
                reducer = lambda obj: (_build, (cls, names, tuple(getattr(obj, n) for n in names)))  # noqa: E731
            else:
                reducer = lambda obj: (cls, tuple(getattr(obj, n) for n in names))  # noqa: E731
        else:
            raise KeyError(cls)
        self[cls] = reducer
        return reducer


_REDUCERS = _Reducers()


def _build(cls: type, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    obj: Any = object.__new__(cls)
    for name, value in zip(names, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


def _reduce_rng(rng: random.Random) -> tuple[Any, ...]:
    # the Mersenne Twister's 625 words as one bytes object, not 625 pickled ints
    version, words, gauss = rng.getstate()
    return _rng, (version, array.array("I", words).tobytes(), gauss)


def _rng(version: int, words: bytes, gauss: float | None) -> random.Random:
    rng = random.Random.__new__(random.Random)
    rng.setstate((version, tuple(array.array("I", words)), gauss))
    return rng


def _dump(w: World) -> bytes:
    """A snapshot of ``w``, entropy sources included: a state is a function of its trace."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(w)
    return buf.getvalue()


def _load(data: bytes) -> World:
    w: World = pickle.loads(data)
    return w


# ---------------------------------------------------------------------------------------- explorer


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What :func:`explore` found, with the statistics ``keysim check`` prints."""

    users: int
    rooms: int
    depth: int
    policy: str
    states: int
    transitions: int
    elapsed_s: float
    #: the deepest level fully expanded (``depth`` unless capped or nothing new remained)
    depth_done: int
    #: whether ``max_states`` stopped the search before ``depth``
    capped: bool
    #: the violations of the shortest failing trace (empty: none found)
    violations: tuple[str, ...] = ()
    #: that trace, as readable steps (start, operations, and the settle suffix if any)
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
            f"  depth completed  {self.depth_done}",
        ]
        if self.capped:
            lines.append(f"  stopped at --max-states ({self.states:,}): the search is incomplete")
        if self.ok:
            lines.append("no violation found")
            return "\n".join(lines)
        lines.append("VIOLATION")
        lines += [f"  {v}" for v in self.violations]
        lines.append(f"shortest trace ({len(self.trace) - 1} steps):")
        lines += [f"  {k}. {step}" for k, step in enumerate(self.trace)]
        return "\n".join(lines)


def _start_text(w: World) -> str:
    rooms = []
    for rid in w.rooms:
        members = ", ".join(w.names[u] for u in w.d.server.room(rid).subscriptions)
        rooms.append(f"{w.names[rid]} ({members})")
    users = ", ".join(f"{w.names[u]}{' (TOTP)' if u in w.totp_secret else ''}" for u in w.users)
    return f"start: {users} log in; rooms {'; '.join(rooms)}"


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
    """Breadth-first search of every interleaving of :data:`OPERATIONS` up to ``depth`` steps."""
    if policy not in POLICIES:
        raise ValueError(f"policy: must be one of {list(POLICIES)}, got {policy!r}")
    if depth < 0 or users > 6:
        raise ValueError("depth must be >= 0 and users at most 6")
    started = time.perf_counter()
    root = World(users, rooms, policy, seed=seed)
    root_bytes = _dump(root)
    start_text = _start_text(root)
    seen = _Seen()
    seen.add(root)
    transitions = 0
    level = 0

    def result(
        capped: bool = False, found: Sequence[Violation] = (), trace: Sequence[str] = ()
    ) -> CheckResult:
        elapsed = time.perf_counter() - started
        violations = tuple(root.name(str(v)) for v in found)
        return CheckResult(
            users,
            rooms,
            depth,
            policy,
            seen.count,
            transitions,
            elapsed,
            level,
            capped,
            violations,
            (start_text, *(root.name(t) for t in trace)),
        )

    def eventual(w: World, trace: tuple[Op, ...]) -> CheckResult | None:
        try:
            found, suffix = check_eventually(w)
        except Exception as exc:  # a crash of the protocol is a finding, not an accident
            found, suffix = [Violation("operation_failed", f"{type(exc).__name__}: {exc}")], ["settle"]
        return result(False, found, [describe(w, op) for op in trace] + suffix) if found else None

    found = check_state(root)
    if found:
        return result(False, found)
    if eventually and (failed := eventual(_load(root_bytes), ())):
        return failed
    frontier: list[tuple[Op, ...]] = [()]
    for level in range(depth):
        following: list[tuple[Op, ...]] = []
        for trace in frontier:
            parent = _rebuild(root_bytes, trace)
            parent_bytes = _dump(parent)
            for op in enabled_ops(parent):
                transitions += 1
                child = _load(parent_bytes)
                child_trace = (*trace, op)
                new = False
                try:
                    found = apply(child, op)
                    new = not found and seen.add(child)
                    if new:
                        found = check_state(child)
                except Exception as exc:  # a crash of the protocol is a finding, not an accident
                    found = [Violation("operation_failed", f"{type(exc).__name__}: {exc}")]
                if found:
                    return result(False, found, [describe(child, o) for o in child_trace])
                if not new:
                    continue
                following.append(child_trace)
                if eventually and (failed := eventual(child, child_trace)):  # the child is spent
                    return failed
                if max_states is not None and seen.count >= max_states:
                    return result(True)
        frontier = following
        if not frontier:
            level += 1
            return result()
    level = depth
    return result()


class _Seen:
    """The states seen so far, as 64-bit hashes of their walks under every symmetry.

    A state is new iff none of its walks was seen.  The identity walk is tried first, so a
    repeated state costs one walk.  Hashes instead of walks keep memory flat; a collision (odds
    about 1e-9 at a million states) would merge two states.
    """

    def __init__(self) -> None:
        self._walks: set[int] = set()
        self.count = 0

    def add(self, w: World) -> bool:
        (ident, *others) = w.symmetries
        first = hash(_walk(w, *ident))
        if first in self._walks:
            return False
        rest = [hash(_walk(w, *sym)) for sym in others]
        if any(h in self._walks for h in rest):
            return False
        self._walks.add(first)
        self._walks.update(rest)
        self.count += 1
        return True


def _rebuild(root_bytes: bytes, trace: tuple[Op, ...]) -> World:
    """Replay ``trace`` from the initial world (entropy sources included, so exactly)."""
    w = _load(root_bytes)
    for op in trace:
        apply(w, op)
    return w
