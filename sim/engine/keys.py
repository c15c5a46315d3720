"""Who holds a room's current key, read off the server's subscriptions (nothing cached)."""

from __future__ import annotations

from protocol import ProtocolError, Server
from protocol.crypto import CryptoBackend

__all__ = ["KeyView"]


class KeyView:
    """Reads the server: a member holds a room's key when its subscription's wrapped key carries
    the room's current kid."""

    def __init__(self, server: Server, backend: CryptoBackend, index: dict[str, int]) -> None:
        self.server = server
        self.backend = backend
        #: user id -> user number (filled as the deployment is established; read only here)
        self.index = index

    def holds(self, room_id: str, user_id: str) -> bool:
        room = self.server.room(room_id)
        sub = room.subscriptions.get(user_id)
        if sub is None or sub.e2e_key is None or room.e2e_key_id is None:
            return False
        try:
            return self.backend.wrapped_kid(sub.e2e_key) == room.e2e_key_id
        except ProtocolError:
            return False

    def holders_ids(self, room_id: str) -> list[str]:
        """The members (ids) holding the room's current key, in subscription order."""
        return [uid for uid in self.server.room(room_id).subscriptions if self.holds(room_id, uid)]

    def holders(self, room_id: str, exclude: str | None = None) -> list[int]:
        """The members (numbers) holding the room's current key, in subscription order."""
        room = self.server.room(room_id)
        return [self.index[uid] for uid in room.subscriptions if uid != exclude and self.holds(room_id, uid)]
