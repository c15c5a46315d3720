"""Who is in a ``keysim check`` room, who holds its current key, and who a legacy client serves.

Read-only questions about a :class:`~.world.World`, shared by the guards (:mod:`.operations`),
the actions (:mod:`.actions`), the checks made during a step (:mod:`.step_checks`) and the
properties (:mod:`.properties`).  May import :mod:`protocol` and :mod:`.world` only.
"""

from __future__ import annotations

from protocol import ProtocolError
from protocol.crypto import codec

from .world import World

__all__ = ["holder", "holds_key", "kid_of", "member", "needs_push"]


def kid_of(wrapped: str | None, *, unreadable: str | None = None) -> str | None:
    """The kid a wrapped room key names (its prefix); None when there is none, ``unreadable``
    when it has no kid prefix."""
    if not wrapped:
        return None
    try:
        return codec.split_prefixed(wrapped)[0]
    except ProtocolError:
        return unreadable


def member(w: World, i: int, r: int) -> bool:
    return w.users[i] in w.d.server.room(w.rooms[r]).subscriptions


def holds_key(w: World, uid: str, rid: str) -> bool:
    client = w.d.clients[uid]
    return client.functional and client.holds_current_key(rid)


def holder(w: World, r: int) -> int | None:
    """The functional member of least index holding room ``r``'s current key (not the first in
    joining order: that order is left out of a state's identity under symmetry reduction)."""
    rid = w.rooms[r]
    subs = w.d.server.room(rid).subscriptions
    return next((i for i, u in enumerate(w.users) if u in subs and holds_key(w, u, rid)), None)


def needs_push(w: World, rid: str) -> list[tuple[str, str]]:
    """(member, public key) of the members a legacy client would push the key to."""
    srv = w.d.server
    return [
        (u, key)
        for u, s in srv.room(rid).subscriptions.items()
        if s.e2e_key is None and s.e2e_suggested_key is None and (key := srv.user(u).e2e_public_key)
    ]
