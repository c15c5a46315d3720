"""What a joiner may read of a room's past, client side (policies ``ratchet`` and ``bundle``;
beyond Rocket.Chat).  The server side, and the sources, are in :mod:`protocol.history_server`.

:class:`HistoryMixin` is part of :class:`protocol.e2e_client.Client`:

* :meth:`~HistoryMixin.start_session` (``ratchet``): before its first message after a member
  joined, a sender makes a new room key and hands it to every member whose public key it trusts,
  as a Matrix sender shares a new megolm session with every device of the room;
* :meth:`~HistoryMixin.invite` (``bundle``): an inviter adds a member and leaves it a room key
  bundle of the keys it holds, when the room's history is shareable;
* :meth:`~HistoryMixin.import_bundles` (``bundle``): the invitee, once online, opens the bundles
  left for it and keeps their keys as old keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .crypto import CryptoBackend, RoomKey
from .e2e_states import E2ERoomState, LocalState, RoomSession
from .entropy import Entropy
from .errors import CryptoError
from .history_server import SHARED_HISTORY
from .ledger import KeyLedger

if TYPE_CHECKING:
    from .server import Server

__all__ = ["HistoryMixin"]

R = E2ERoomState


class HistoryMixin:
    server: Server
    user_id: str
    backend: CryptoBackend
    entropy: Entropy
    ledger: KeyLedger | None
    _local: LocalState

    if TYPE_CHECKING:

        def _require_functional(self) -> None: ...

        def _acquired(self, room_id: str, key: RoomKey, source: str, now: float) -> None: ...

        def _trusted(self, user_id: str, public_key: str) -> bool: ...

        def _exported_old_keys(self, room_id: str) -> list[tuple[str, float, RoomKey]]: ...

    def start_session(self, room_id: str, *, now: float) -> str:
        """Policy ``ratchet``: a new room key for every member whose public key this device
        trusts; this device keeps the key it had as an old key.  Returns the new kid."""
        self._require_functional()
        assert self._local.public_key is not None
        session = self._local.rooms.get(room_id)
        key = self.backend.generate_room_key(self.entropy)
        keys = {self.user_id: self.backend.wrap_room_key(key, self._local.public_key, self.entropy)}
        for uid in self.server.room(room_id).subscriptions:
            public_key = self.server.user(uid).e2e_public_key
            if uid != self.user_id and public_key and self._trusted(uid, public_key):
                keys[uid] = self.backend.wrap_room_key(key, public_key, self.entropy)
        self.server.e2e_new_session(self.user_id, room_id, key.kid, keys, now=now)
        if session is None:
            session = self._local.rooms[room_id] = RoomSession(room_id, state=R.READY)
        if session.key is not None and session.key_id is not None:
            session.old_keys = {**(session.old_keys or {}), session.key_id: (session.key, now)}
        session.key, session.key_id = key, key.kid
        self._acquired(room_id, key, "created", now)
        if self.ledger is not None:
            self.ledger.created(room_id, key, self.user_id, now)
        return key.kid

    def invite(self, room_id: str, user_id: str, *, now: float) -> int:
        """``addUserToRoom`` as an explicit invite.  Under ``bundle``, when the room's history is
        shareable (``shared`` or ``world_readable``) and this device trusts the invitee's public
        key, it first leaves the invitee a bundle of every key it holds for the room, the
        current one and the old ones its subscription keeps (matrix-js-sdk ``MatrixClient.invite`` with
        ``shareEncryptedHistory``).  Returns the number of keys bundled."""
        self._require_functional()
        self.server.add_user_to_room(self.user_id, room_id, user_id, now=now)
        room = self.server.room(room_id)
        if not self.server.mechanisms.bundle or room.history_visibility not in SHARED_HISTORY:
            return 0
        public_key = self.server.user(user_id).e2e_public_key
        session = self._local.rooms.get(room_id)
        if not public_key or not self._trusted(user_id, public_key) or session is None:
            return 0
        # exportOldRoomKeys(mySub.oldRoomKeys): what the subscription keeps, as a holder serves it
        held: dict[str, RoomKey] = {kid: key for kid, _, key in self._exported_old_keys(room_id)}
        if session.key is not None and session.key_id is not None:
            held[session.key_id] = session.key
        if not held:
            return 0
        wrapped = {
            kid: self.backend.wrap_room_key(key, public_key, self.entropy) for kid, key in held.items()
        }
        self.server.e2e_bundle_upload(self.user_id, room_id, user_id, wrapped, now=now)
        return len(wrapped)

    def import_bundles(self, *, now: float, room_ids: Iterable[str] | None = None) -> list[str]:
        """Policy ``bundle``: open the bundle left in each of this user's rooms and keep its keys
        (each whose kid matches what it opens to) as old keys: they open the room's past.  The
        room's current key among them opens the messages sent under it so far; the device holds
        the room's key only once a session is shared with it.  ``room_ids``: only these (default:
        every room of the user).  Returns the rooms imported."""
        if not self.server.mechanisms.bundle or self._local.private_key is None:
            return []
        assert self._local.public_key is not None
        imported = []
        for room_id in self.server.rooms_of(self.user_id) if room_ids is None else room_ids:
            bundle = self.server.e2e_bundle_fetch(self.user_id, room_id)
            if bundle is None:
                continue
            opened: dict[str, RoomKey] = {}
            for kid, wrapped in bundle["keys"].items():
                try:
                    key = self.backend.unwrap_room_key(wrapped, self._local.private_key)
                except CryptoError:
                    continue
                if key.kid == kid:
                    opened[kid] = key
            entries: list[dict[str, Any]] = [
                {
                    "e2eKeyId": kid,
                    "ts": now,
                    "E2EKey": self.backend.wrap_room_key(key, self._local.public_key, self.entropy),
                }
                for kid, key in opened.items()
            ]
            self.server.e2e_bundle_import(self.user_id, room_id, entries)
            session = self._local.rooms.get(room_id)
            if session is not None:
                session.old_keys = {**(session.old_keys or {}), **{k: (v, now) for k, v in opened.items()}}
            for key in opened.values():
                self._acquired(room_id, key, "bundle", now)
            imported.append(room_id)
        return imported
