"""Ground truth for invariants: which room keys legitimate clients created.

The server never sees a room key; a :class:`KeyLedger` shared by the clients of one deployment
(tests, the simulator, ``keysim check``) records every room key a client generates, so that
:mod:`protocol.invariants` can tell a legitimately received key from a planted one.  It plays no
part in the protocol itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .crypto import RoomKey

__all__ = ["KeyLedger", "KeyOrigin"]


@dataclass(frozen=True, slots=True)
class KeyOrigin:
    room_id: str
    kid: str
    creator_id: str
    created_at: float


@dataclass(slots=True)
class KeyLedger:
    #: (room id, kid) -> the key and who made it
    keys: dict[tuple[str, str], tuple[RoomKey, KeyOrigin]] = field(default_factory=dict)

    def created(self, room_id: str, room_key: RoomKey, creator_id: str, now: float) -> None:
        self.keys[(room_id, room_key.kid)] = (room_key, KeyOrigin(room_id, room_key.kid, creator_id, now))

    def is_legitimate(self, room_id: str, kid: str, key: RoomKey) -> bool:
        """Whether ``key`` is the key a legitimate member created for ``room_id`` under ``kid``."""
        entry = self.keys.get((room_id, kid))
        return entry is not None and entry[0].key == key.key

    def current(self, room_id: str, kid: str | None) -> RoomKey | None:
        entry = self.keys.get((room_id, kid)) if kid is not None else None
        return entry[0] if entry is not None else None
