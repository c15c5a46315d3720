"""The identity of a ``keysim check`` state: what makes two worlds the same state.

Theory of operation.  :func:`canonical` walks the server's documents, each client's device
state, the people and the key ledger in a fixed order, in which every random name (tokens, kids,
passwords, ids) becomes the order of its first appearance and every ciphertext is split into the
names it binds (a wrapped key: kid, recipient, room secret; a private-key blob: key pair,
password).  Left out, as they cannot change what happens next: timestamps, the order of a queue
(only its cap of 50 reads it), messages (each send is checked when it happens), and history
about keys nothing refers to any more.  Joining orders are kept: they order pushes (no symmetry
reduction).  :class:`Seen` keeps 64-bit hashes of these walks.

Symmetry reduction walks the state under renamings of users and rooms (:func:`symmetries`: those
that map the scope onto itself) and keeps the least walk, joining orders left out.  Walking
every renaming would cost N! x M! walks per state (144 at 4 users x 3 rooms, ``alike``); only
those that list the users' and rooms' :func:`signatures` (what no renaming changes) in their
least order are walked: on average 9 at 4 x 3, most of them at the shallow levels where many
users are still alike.

The walk only reads: it must not change the world it describes.  May import :mod:`protocol` and
:mod:`.world` only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from protocol import Client, ProtocolError
from protocol.crypto import RoomKey, SymbolicBackend, codec

from .world import World

__all__ = ["Seen", "Symmetry", "canonical", "exact_key", "identity_symmetry", "signatures", "symmetries"]

#: the symbolic backend's wrapped-key record starts so (protocol/crypto/symbolic.py)
_WRAP_MAGIC = b"KSYMWRAP"


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


#: a renaming of a world's users and rooms: user ``i`` becomes ``users[i]``, room ``r`` ``rooms[r]``
@dataclass(frozen=True, slots=True)
class Symmetry:
    users: tuple[int, ...]
    rooms: tuple[int, ...]

    def inverse(self) -> Symmetry:
        return Symmetry(_invert(self.users), _invert(self.rooms))

    def then(self, other: Symmetry) -> Symmetry:
        """This renaming, then ``other``."""
        return Symmetry(tuple(other.users[u] for u in self.users), tuple(other.rooms[r] for r in self.rooms))

    @property
    def trivial(self) -> bool:
        return self.users == tuple(range(len(self.users))) and self.rooms == tuple(range(len(self.rooms)))


def _invert(perm: tuple[int, ...]) -> tuple[int, ...]:
    out = [0] * len(perm)
    for i, j in enumerate(perm):
        out[j] = i
    return tuple(out)


def identity_symmetry(w: World) -> Symmetry:
    return Symmetry(tuple(range(len(w.users))), tuple(range(len(w.rooms))))


def symmetries(w: World) -> tuple[Symmetry, ...]:
    """The renamings of users and rooms that map the scope onto itself: a user goes to a user
    with the same second factor, and every room to a room of the same type with the renamed
    owner and members (the room plan of :mod:`.world`; the identity first).  Interchangeable
    users and rooms are what symmetry reduction merges."""
    srv = w.d.server

    def shape(rid: str, rename: tuple[int, ...]) -> tuple[Any, ...]:
        room = srv.room(rid)
        subs = room.subscriptions
        owners = frozenset(rename[w.users.index(u)] for u, s in subs.items() if "owner" in s.roles)
        return (room.t, owners, frozenset(rename[w.users.index(u)] for u in subs))

    totp = tuple((uid in w.totp_secret, w.phone(i) is not None) for i, uid in enumerate(w.users))
    plain = tuple(range(len(w.users)))
    shapes = [shape(rid, plain) for rid in w.rooms]
    out = []
    for perm in itertools.permutations(plain):
        if any(totp[i] != totp[j] for i, j in enumerate(perm)):
            continue
        renamed = [shape(rid, perm) for rid in w.rooms]
        for rooms in itertools.permutations(range(len(w.rooms))):
            if all(renamed[r] == shapes[rooms[r]] for r in range(len(w.rooms))):
                out.append(Symmetry(perm, rooms))
    return tuple(out)


def _walk(w: World, sym: Symmetry | None = None) -> tuple[Any, ...]:
    """The state as nested tuples of small ints, literals and enum values, with users and rooms
    renamed by ``sym``.  The order of the parts is part of the identity: a name is numbered by
    its first appearance."""
    n, srv = _Names(), w.d.server
    ordered = sym is None  # without reduction, joining orders are kept (they order pushes)
    if sym is None:
        uix = {uid: i for i, uid in enumerate(w.users)}
        rix = {rid: i for i, rid in enumerate(w.rooms)}
        users, rooms = w.users, w.rooms
    else:
        uix = {uid: sym.users[i] for i, uid in enumerate(w.users)}
        rix = {rid: sym.rooms[r] for r, rid in enumerate(w.rooms)}
        users, rooms = sorted(w.users, key=uix.__getitem__), sorted(w.rooms, key=rix.__getitem__)
    out: list[Any] = []
    for uid in users:
        out += _account(n, w, uid, rix)
    out += [_room(n, w, rid, uix, ordered) for rid in rooms]
    if srv.mechanisms.backup:
        out += _backups(n, w, uix, rix)
    for uid in users:
        out += _device(n, w, uid, rix, ordered)
    phones = [phone for uid in users for phone in w.d.other_devices.get(uid, ())]
    for phone in phones:
        out += _client(n, phone, rix, ordered)
    out += [_history(n, w, w.d.clients[uid], rix) for uid in users]
    out += [_history(n, w, phone, rix) for phone in phones]
    out.append(_ledger(n, w, rix))
    return tuple(out)


def _in_order(items: Iterable[tuple[str, Any]], uix: dict[str, int], ordered: bool) -> list[tuple[str, Any]]:
    """Subscriptions in joining order, or (reduced) by user index."""
    return list(items) if ordered else sorted(items, key=lambda item: uix[item[0]])


def _account(n: _Names, w: World, uid: str, rix: dict[str, int]) -> list[tuple[Any, ...]]:
    """The server's user document: key pair, backup key, login tokens; the rooms it is in."""
    srv = w.d.server
    user, client, person = srv.user(uid), w.d.clients[uid], w.d.people[uid]
    tokens = tuple((n(t), lt.two_factor_authorized_until is None) for t, lt in user.login_tokens.items())
    pair = n.blob(user.e2e_private_key, uid, (person.e2e_password, client.random_password))
    return [
        (n.pub(user.e2e_public_key), pair, n.pub(user.e2e_backup_public_key), tokens),
        (n.pub(w.previous_pub.get(uid)), tuple(sorted(rix[r] for r in srv.rooms_of(uid)))),
    ]


def _room(n: _Names, w: World, rid: str, uix: dict[str, int], ordered: bool) -> tuple[Any, ...]:
    """The room document: its key id, its queue (as a set) and its subscriptions in order."""
    room = w.d.server.room(rid)
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
        for u, s in _in_order(room.subscriptions.items(), uix, ordered)
    )
    waiting = (
        None if room.users_waiting is None else tuple(sorted(uix[x.user_id] for x in room.users_waiting))
    )
    return (room.encrypted, n(room.e2e_key_id), waiting, subs)


def _backups(n: _Names, w: World, uix: dict[str, int], rix: dict[str, int]) -> list[tuple[Any, ...]]:
    """``backup``: which keys the backup store holds matters, and how many of them nothing else
    refers to."""
    return [
        (u, r, tuple(sorted(n.known(k) for k in keys)))
        for u, r, keys in sorted((uix[u], rix[r], keys) for (u, r), keys in w.d.server.backups.items())
    ]


def _device(n: _Names, w: World, uid: str, rix: dict[str, int], ordered: bool) -> list[tuple[Any, ...]]:
    """A user's web client and its person's secrets."""
    person = w.d.people[uid]
    return [
        *_client(n, w.d.clients[uid], rix, ordered),
        (n(person.e2e_password), n.priv(person.recovery_key)),
    ]


def _client(n: _Names, client: Client, rix: dict[str, int], ordered: bool) -> list[tuple[Any, ...]]:
    """A device's state: E2EE state, keys, room sessions, resets."""
    sessions = tuple(
        (
            rix[rid],
            s.state.value,
            n(s.key_id),
            n.key(s.key),
            None if s.old_keys is None else tuple((n(k), *n.key(v[0])) for k, v in s.old_keys.items()),
            s.ready_once,
        )
        for rid in (
            client.session_room_ids() if ordered else sorted(client.session_room_ids(), key=rix.__getitem__)
        )
        if (s := client.session(rid)) is not None
    )
    # the rooms regained since the latest reset (their first source was checked then)
    regained = (
        sorted({rix[a.room_id] for a in client.acquired[client.reset_marks[-1] :]}) if client.resets else ()
    )
    device = (n(client.login_token), n.priv(client.private_key), n.pub(client.public_key))
    return [
        (client.state.value, n(client.random_password), n.priv(client.recovery_key), device),
        (sessions, bool(client.resets), tuple(regained)),
    ]


def _history(n: _Names, w: World, client: Client, rix: dict[str, int]) -> tuple[Any, ...]:
    """A device's key records and the keys it backed up (walked after every document and device)."""
    # History, restricted to keys named above: a key that no document, device or backup refers
    # to any more can never be held again.  A key record matters for the keys a device holds
    # (each needs one) and, for the backup property, for the rooms' current keys.
    srv = w.d.server
    relevant = {(rid, kid) for rid in client.session_room_ids() for kid in client.held_keys(rid)}
    if srv.mechanisms.backup:
        relevant |= {(rid, srv.room(rid).e2e_key_id or "") for rid in w.rooms}
    records = {(rix[a.room_id], n.known(a.kid)) for a in client.acquired if (a.room_id, a.kid) in relevant}
    backed_up = {(rix[r], n.known(k)) for r, k in client.backed_up}  # not uploaded again
    return (tuple(sorted(records)), tuple(sorted(x for x in backed_up if x[1] >= 0)))


def _ledger(n: _Names, w: World, rix: dict[str, int]) -> tuple[Any, ...]:
    """The key ledger, restricted to keys named above (walked last)."""
    ledger = {(rix[r], n.known(k), n.known(_secret(v[0]))) for (r, k), v in w.d.ledger.keys.items()}
    return tuple(sorted(x for x in ledger if x[1] >= 0))


def signatures(w: World) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Each user's and each room's signature: what the walk shows of it that no renaming (of
    users, rooms or random names) changes, as it sees it from the inside (rooms as a multiset,
    names only compared for equality).  Two users with different signatures are never
    renamed into each other; :meth:`Seen.key_and_symmetry` orders them by it."""
    srv = w.d.server
    member_of: dict[str, list[tuple[Any, ...]]] = {uid: [] for uid in w.users}
    rooms = []
    for rid in w.rooms:
        room = srv.room(rid)
        kid = room.e2e_key_id
        waiting = {x.user_id for x in room.users_waiting or ()}
        subs = []
        for uid, sub in room.subscriptions.items():
            client = w.d.clients[uid]
            session = client.session(rid)
            seat = (
                sub.roles,
                sub.e2e_key is not None,
                sub.e2e_suggested_key is not None,
                len(sub.old_room_keys or ()),
                uid in waiting,
                "" if session is None else session.state.value,
                session is not None and session.key is not None and session.key_id == kid,
            )
            subs.append(seat)
            member_of[uid].append(seat)
        rooms.append((room.encrypted, kid is None, room.users_waiting is None, tuple(sorted(subs))))
    users = []
    for uid in w.users:
        client, user = w.d.clients[uid], srv.user(uid)
        users.append(
            (
                client.state.value,
                client.login_token is None,
                client.private_key is None,
                user.e2e_public_key is None,
                user.e2e_private_key is None,
                len(user.login_tokens),
                uid in w.previous_pub,
                bool(client.resets),
                tuple(sorted(member_of[uid])),
                tuple(
                    (c.state.value, c.login_token is None, sum(map(c.holds_current_key, w.rooms)))
                    for c in w.d.other_devices.get(uid, ())
                ),
            )
        )
    return users, rooms


def exact_key(w: World) -> int:
    """``w``'s identity without renaming (joining orders left out): equal only for the same state."""
    return hash(_walk(w, identity_symmetry(w)))


class Seen:
    """The states seen, as 64-bit hashes of their walks: memory stays flat; a collision, about
    1e-9 likely at a million states, would merge two states.

    With ``symmetries`` (:func:`symmetries`; symmetry reduction), a state's identity is the
    least hash of its walks under every renaming, and joining orders are left out: states that
    differ by a renaming of interchangeable users and rooms, or by the order in which members
    joined, are one state."""

    def __init__(self, symmetries: tuple[Symmetry, ...] | None = None) -> None:
        self._walks: set[int] = set()
        self.count = 0
        self.symmetries = symmetries
        #: each renaming with the user and the room it puts at each position
        self._placed = [(sym, sym.inverse()) for sym in symmetries or ()]

    def key(self, w: World) -> int:
        """``w``'s identity as 64 bits."""
        return self.key_and_symmetry(w)[0]

    def key_and_symmetry(self, w: World) -> tuple[int, Symmetry | None]:
        """``w``'s identity, and the renaming whose walk gave it (None without reduction).

        Only the renamings that list the users' and rooms' :func:`signatures` in the least order
        are walked: the signatures do not depend on names, so a renamed state has the same
        least order, reached by the same renamings composed with the renaming; the least walk
        among them is then the same.  Most states have few such renamings (often one)."""
        if self.symmetries is None:
            return hash(_walk(w)), None
        if len(self._placed) == 1:
            return hash(_walk(w, self.symmetries[0])), self.symmetries[0]
        users, rooms = signatures(w)
        best: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
        tied: list[Symmetry] = []
        for sym, inv in self._placed:
            order = (tuple(users[u] for u in inv.users), tuple(rooms[r] for r in inv.rooms))
            if best is None or order < best:
                best, tied = order, [sym]
            elif order == best:
                tied.append(sym)
        return min(((hash(_walk(w, sym)), sym) for sym in tied), key=lambda hs: hs[0])

    def add(self, w: World) -> bool:
        """Whether ``w`` is new (and from now on seen)."""
        return self.add_key(self.key(w))

    def add_key(self, h: int) -> bool:
        """Whether the state of identity ``h`` (:meth:`key`) is new (and from now on seen)."""
        if h in self._walks:
            return False
        self._walks.add(h)
        self.count += 1
        return True
