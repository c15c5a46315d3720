"""The world ``keysim check`` explores: a deployment, its names and clock, and its snapshots.

Theory of operation.  A :class:`World` is a :class:`protocol.Deployment` (symbolic crypto) with N
users, all logged in, and M rooms made at the start, by one of two room plans (:data:`PLANS`):

* ``mixed`` (the default): a group of everyone owned by u0, then DMs, then two-member groups;
  u0 has TOTP.  Owners, DMs and pairs make users play different parts.
* ``alike``: every room is a group of everyone, every user has TOTP and co-owns every room
  (RC's ``addRoomOwner``, so any owner may leave while another stays, ``leaveRoom``'s
  last-owner rule).  Users and rooms are interchangeable: the scope for symmetry reduction
  (:func:`.identity.symmetries` finds N! x M! renamings).

With ``phones`` K, users u0 to u{K-1} also have a phone (the mobile app: a second device of
the same account, ``Deployment.add_device``), logged in beside the web client: it fetches the
saved key pair and the user's own public key from the server (``e2e.fetchMyKeys``, spec 3.2)
and is logged out with every other device by a reset (spec 3.4).

Each operation advances ``now`` by :data:`STEP_S`; ``now`` is part of neither the state's
identity nor any property.

Every entropy source (the server's, which its 2FA engine shares; the deployment's; each
client's) is replaced by a splitmix64 generator with a one-word state, so a snapshot
(:func:`dump`, a pickle of the whole world) is a few kilobytes and a state is a function of the
operations applied to the initial world.  This module knows nothing of the operations, the
properties or the search: it may import :mod:`protocol` only.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import pickle
import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from protocol import Client, Deployment, totp

__all__ = ["MAX_USERS", "PLANS", "STEP_S", "T0", "World", "dump", "load", "totp_code"]

#: seconds per operation: longer than the room-key reset lock (10 s, ``e2e.resetRoomKey``)
STEP_S = 11.0
#: the first ``now`` (2026-01-01): TOTP codes are those of a realistic clock
T0 = 1_767_225_600.0
MAX_USERS = 6
#: the room plans a scope can have (see above)
PLANS = ("mixed", "alike")


class World:
    """A deployment plus what the explorer needs to drive it: names, the clock, a TOTP secret."""

    def __init__(
        self,
        users: int,
        rooms: int,
        policy: str,
        *,
        seed: int = 0,
        late_after_login: bool = False,
        plan: str = "mixed",
        phones: int = 0,
    ) -> None:
        if plan not in PLANS:
            raise ValueError(f"plan: must be one of {', '.join(PLANS)}, got {plan!r}")
        if not 0 <= phones <= users:
            raise ValueError(f"phones: must be between 0 and the {users} users, got {phones}")
        self.plan, self.phones = plan, phones
        layout = _room_plan(users, rooms) if plan == "mixed" else _alike_plan(users, rooms)
        #: whether a holder's late suggestion for a reset user's previous key pair may also arrive
        #: after that user logged in again (RC #32197's loop fetches keys, then posts: the post
        #: can land any time later); by default only before its next login, a smaller scope
        self.late_after_login = late_after_login
        self.d = Deployment(policy=policy, crypto="symbolic", seed=seed)
        self.users = [self.d.add_user(f"u{i}") for i in range(users)]
        self.now = T0
        # u0 (every user, ``alike``) has TOTP: Deployment's settings disable the password
        # fallback, so without a factor every reset would pass the 2FA gate unchecked.
        self.totp_secret: dict[str, str] = {}
        for uid in self.users if plan == "alike" else self.users[:1]:
            secret = self.d.server.totp_enable(uid, now=self.now).secret
            self.d.server.totp_validate_temp_token(uid, totp_code(secret, self.now), now=self.now)
            self.totp_secret[uid] = secret
        #: a reset user's previous public key, while a holder's late suggestion for it may arrive
        self.previous_pub: dict[str, str] = {}
        for uid in self.users:
            self.login(uid)
        for uid in self.users[:phones]:
            self.login(uid, device=self.d.add_device(uid))
        self.rooms: list[str] = []
        for owner, members in layout:
            ids = [self.users[i] for i in members]
            if owner is None:
                rid = self.d.server.create_direct_message(ids[0], ids[1], now=self.now)
            else:
                name = "team" if not self.rooms else f"g{len(self.rooms)}"
                rid = self.d.server.create_private_group(self.users[owner], name, ids, now=self.now)
                if plan == "alike":
                    for uid in ids:
                        self.d.server.add_room_owner(self.users[owner], rid, uid)
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
        generator, so its public hooks are reassigned here, once every user is added."""
        d = self.d
        d.server.entropy = _Entropy(seed * 1_000_003)  # the setter hands it to the 2FA engine too
        d.rng = _Entropy(seed)  # only add_user draws from it: never again, but it is snapshotted
        devices = [*d.clients.values(), *(c for more in d.other_devices.values() for c in more)]
        for k, client in enumerate(devices, 1):
            client.entropy = _Entropy(seed * 1_000_003 + k)

    def client(self, i: int) -> Client:
        return self.d.clients[self.users[i]]

    def phone(self, i: int) -> Client | None:
        """u{i}'s phone, if it has one."""
        more = self.d.other_devices.get(self.users[i])
        return more[0] if more else None

    def devices(self, uid: str) -> list[tuple[str, Client]]:
        """The user's web client, then its phone if any, each with how a violation names it."""
        return [(f"{uid}'s phone" if k else uid, c) for k, c in enumerate(self.d.devices_of(uid))]

    def login(self, uid: str, *, remember: bool = True, device: Client | None = None) -> None:
        """:meth:`Deployment.login` (on ``device``: the phone), with the TOTP code of a person
        who has one."""
        secret = self.totp_secret.get(uid)
        code = totp_code(secret, self.now) if secret is not None else None
        self.d.login(uid, now=self.now, remember_password=remember, code=code, device=device)

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


def totp_code(secret: str, now: float) -> str:
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


def _alike_plan(users: int, rooms: int) -> list[tuple[int | None, list[int]]]:
    """Every room a group of everyone (created by u0; every member is then made an owner)."""
    if not 2 <= users <= MAX_USERS:
        raise ValueError(f"users: must be between 2 and {MAX_USERS}, got {users}")
    if not 1 <= rooms <= 4:
        raise ValueError(f"rooms: must be between 1 and 4 for the alike plan, got {rooms}")
    return [(0, list(range(1, users))) for _ in range(rooms)]


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


def dump(w: World) -> bytes:
    """A snapshot of ``w``, entropy sources included."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(w)
    return buf.getvalue()


def load(data: bytes) -> World:
    """A fresh world from a :func:`dump`: loading twice gives two independent worlds."""
    w: World = pickle.loads(data)
    return w
