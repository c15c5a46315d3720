"""Who holds a room's current key, read off the server's subscriptions (only the kid each wrapped
key carries is remembered: a wrapped key's text never changes, and reading its kid decodes it)."""

from __future__ import annotations

from protocol import ProtocolError, Server
from protocol.crypto import CryptoBackend

__all__ = ["KeyView"]

#: wrapped keys whose kid is remembered at most (then forgotten all at once)
_MAX_KIDS = 1 << 18


class KeyView:
    """Reads the server: a member holds a room's key when its subscription's wrapped key carries
    the room's current kid."""

    def __init__(self, server: Server, backend: CryptoBackend, index: dict[str, int]) -> None:
        self.server = server
        self.backend = backend
        #: user id -> user number (filled as the deployment is established; read only here)
        self.index = index
        #: wrapped key -> the kid it carries ("" when it carries none): a room of 5,000 members
        #: is scanned at every reset in it, and decoding each of its keys every time made that
        #: scan most of a large room's run
        self._kids: dict[str, str] = {}

    def holds(self, room_id: str, user_id: str) -> bool:
        room = self.server.room(room_id)
        sub = room.subscriptions.get(user_id)
        if sub is None or sub.e2e_key is None or room.e2e_key_id is None:
            return False
        kid = self._kids.get(sub.e2e_key)
        if kid is None:
            if len(self._kids) >= _MAX_KIDS:
                self._kids.clear()
            try:
                kid = self.backend.wrapped_kid(sub.e2e_key)
            except ProtocolError:
                kid = ""
            self._kids[sub.e2e_key] = kid
        return kid == room.e2e_key_id

    def holders_ids(self, room_id: str) -> list[str]:
        """The members (ids) holding the room's current key, in subscription order."""
        return [uid for uid in self.server.room(room_id).subscriptions if self.holds(room_id, uid)]

    def holders(self, room_id: str, exclude: str | None = None) -> list[int]:
        """The members (numbers) holding the room's current key, in subscription order."""
        room = self.server.room(room_id)
        return [self.index[uid] for uid in room.subscriptions if uid != exclude and self.holds(room_id, uid)]
