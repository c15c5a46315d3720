"""The Rocket.Chat client's recovery paths: serving the queue, resetting a room key, key backup.

:class:`RecoveryMixin` is part of :class:`protocol.e2e_client.Client`:

* the key-distribution loop (:meth:`~RecoveryMixin.tick`, RC PR #32197): every 10 s a READY
  device samples up to 10 rooms with a waiting queue whose key it holds, fetches up to 50 members
  per room who lack a key, and posts the current key and the old keys it can open, wrapped for
  each;
* the room-key reset (:meth:`~RecoveryMixin.reset_room_key`, #33328): a new key, no history;
* the key backup of policy ``backup`` (beyond RC): every key the device obtains is also stored
  wrapped for the user's recovery key, and :meth:`~RecoveryMixin.restore_from_backup` opens it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .crypto import CryptoBackend, PrivateKey, RoomKey
from .e2e_states import ROOMS_PER_TICK, SAMPLE_DRAWS, E2ERoomState, KeyAcquired, LocalState, RoomSession
from .entropy import Entropy
from .errors import CryptoError, ValidationError
from .ledger import KeyLedger
from .trust import Mitigations, suggestion_payload

if TYPE_CHECKING:
    from .server import Server

__all__ = ["RecoveryMixin"]

R = E2ERoomState


class RecoveryMixin:
    server: Server
    user_id: str
    backend: CryptoBackend
    entropy: Entropy
    ledger: KeyLedger | None
    acquired: list[KeyAcquired]
    mitigations: Mitigations
    _backed_up: set[tuple[str, str]]
    _local: LocalState

    if TYPE_CHECKING:

        @property
        def functional(self) -> bool: ...

        @property
        def public_key(self) -> str | None: ...

        def session(self, room_id: str) -> RoomSession | None: ...

        def _require_functional(self) -> None: ...

        def _instance(self, room_id: str, now: float) -> RoomSession | None: ...

        def _move(self, session: RoomSession, new: E2ERoomState, now: float) -> bool: ...

        def _exported_old_keys(self, room_id: str) -> list[tuple[str, float, RoomKey]]: ...

        def _wrap_for(
            self,
            session: RoomSession,
            user_id: str,
            public_key: str,
            old_keys: list[tuple[str, float, RoomKey]],
        ) -> dict[str, Any] | None: ...

        def _import_group_key(self, session: RoomSession, wrapped: str, source: str, now: float) -> bool: ...

        def _key_received(self, session: RoomSession, now: float) -> None: ...

        def _handle_suggestion(self, room_id: str, now: float, source: str = "suggestion") -> None: ...

        def _trusted(self, user_id: str, public_key: str) -> bool: ...

        def _post(self, at: float, method: str, /, *args: Any, **kwargs: Any) -> None: ...

    # ------------------------------------------------------------------ distribution loop (queue)

    def distribution_candidates(self) -> list[str]:
        """Rooms with a waiting queue in which this user does not wait (RC's room filter)."""
        out = []
        for room_id in self.server.rooms_of(self.user_id):
            room = self.server.room(room_id)
            if room.users_waiting is not None and not room.is_waiting(self.user_id):
                out.append(room_id)
        return out

    def has_distribution_work(self) -> bool:
        """Whether a tick now could serve anyone: functional, and a queued room whose key it holds."""
        if not self.functional:
            return False
        for room_id in self.distribution_candidates():
            session = self._local.rooms.get(room_id)
            if session is not None and session.key is not None:
                return True
        return False

    def tick(self, *, now: float) -> int:
        """One run of the key-distribution loop; returns how many users it served."""
        if not self.functional:
            return 0
        sample = self._sample(self.distribution_candidates(), now)
        if not sample:
            return 0
        waiting = self.server.e2e_fetch_users_waiting_for_group_key(self.user_id, sample)
        keys: dict[str, list[dict[str, Any]]] = {}
        for room_id, users in waiting.items():
            session = self._local.rooms.get(room_id)
            if session is None or session.state != R.READY or session.key is None:
                continue  # encryptGroupKeyForParticipantsWaitingForTheKeys: READY only
            old_keys = self._exported_old_keys(room_id)
            trusted = [u for u in users if self._trusted(u["_id"], u["public_key"])]
            entries = [self._wrap_for(session, u["_id"], u["public_key"], old_keys) for u in trusted]
            keys[room_id] = [e for e in entries if e is not None]
        if not any(keys.values()):
            return 0
        self._post(now, "e2e_provide_users_suggested_group_keys", self.user_id, keys, now=now)
        return sum(len(v) for v in keys.values())

    def _sample(self, room_ids: list[str], now: float) -> list[str]:
        """``getSample``: up to 10 random rooms whose key this device holds; 3 draws at most."""
        for _ in range(SAMPLE_DRAWS):
            draw = self.entropy.sample(room_ids, min(ROOMS_PER_TICK, len(room_ids)))
            kept = []
            for room_id in draw:
                session = self._instance(room_id, now)
                if session is not None and session.key is not None:
                    kept.append(room_id)
            if kept:
                return kept
        return []

    # ------------------------------------------------------------------ room-key reset

    def reset_room_key(self, room_id: str, *, now: float) -> str:
        """``E2ERoom.resetRoomKey`` + ``e2e.resetRoomKey``: a new key, no history; returns the kid."""
        self._require_functional()
        assert self._local.public_key is not None
        key = self.backend.generate_room_key(self.entropy)
        wrapped = self.backend.wrap_room_key(key, self._local.public_key, self.entropy)
        self.server.e2e_reset_room_key(self.user_id, room_id, wrapped, key.kid, now=now)
        session = self._local.rooms.get(room_id)
        if session is None:
            session = self._local.rooms[room_id] = RoomSession(room_id, state=R.ESTABLISHING)
        # E2ERoom.resetRoomKey: setState('CREATING_KEYS') then setState('READY'); the table refuses
        # both from WAITING_KEYS, ERROR or NOT_STARTED, and the room then becomes READY when the
        # caller's own subscription push arrives (keyReceived -> handshake)
        self._move(session, R.CREATING_KEYS, now)
        session.key, session.key_id = key, key.kid
        self._acquired(room_id, key, "created", now)
        if self.ledger is not None:
            self.ledger.created(room_id, key, self.user_id, now)
        self._move(session, R.READY, now)
        return key.kid

    def rejoin_room(self, room_id: str, *, now: float) -> str:
        """Policy ``rejoin``: a new room key for every member whose public key this device trusts
        (:meth:`~protocol.e2e_server.E2EServerMixin.e2e_rejoin_room`); returns the kid.  This
        device holds the new key at once and none of the room's earlier keys."""
        self._require_functional()
        assert self._local.public_key is not None
        key = self.backend.generate_room_key(self.entropy)
        keys = {self.user_id: self.backend.wrap_room_key(key, self._local.public_key, self.entropy)}
        room = self.server.room(room_id)
        for uid in room.subscriptions:
            public_key = self.server.user(uid).e2e_public_key
            if uid != self.user_id and public_key and self._trusted(uid, public_key):
                keys[uid] = self.backend.wrap_room_key(key, public_key, self.entropy)
        self.server.e2e_rejoin_room(self.user_id, room_id, key.kid, keys, now=now)
        session = self._local.rooms.get(room_id)
        if session is None:
            session = self._local.rooms[room_id] = RoomSession(room_id, state=R.ESTABLISHING)
        # beyond RC, so beyond its mutation table: the device makes the key whatever the room's
        # state (a reset user's rooms wait in WAITING_KEYS), and is READY at once
        session.state = R.CREATING_KEYS
        session.key, session.key_id, session.old_keys = key, key.kid, None
        self._acquired(room_id, key, "rejoined", now)
        if self.ledger is not None:
            self.ledger.created(room_id, key, self.user_id, now)
        self._move(session, R.READY, now)
        return key.kid

    # ------------------------------------------------------------------ key backup (policy backup)

    def _acquired(self, room_id: str, key: RoomKey, source: str, now: float) -> None:
        self.acquired.append(KeyAcquired(room_id, key.kid, source, now))
        if source in ("created", "rejoined"):  # a new room key: its maker shares it
            self._share_with_dehydrated(room_id, key, now)
        if not self.server.mechanisms.backup or (room_id, key.kid) in self._backed_up:
            return
        backup_public = self.server.user(self.user_id).e2e_backup_public_key
        if backup_public is None:
            return
        wrapped = self.backend.wrap_room_key(key, backup_public, self.entropy)
        self._post(now, "e2e_backup_upload", self.user_id, room_id, key.kid, wrapped)
        self._backed_up.add((room_id, key.kid))

    def restore_from_backup(self, recovery_key: PrivateKey, *, now: float) -> list[str]:
        """Open the server-side backup with the recovery key the person kept; returns the rooms
        whose current key came back.  Each restored key reaches this device as a suggestion to
        itself, so the ordinary accept path stores it (with the old keys, as history)."""
        self._require_functional()
        assert self._local.public_key is not None
        restored = []
        for room_id in self.server.rooms_of(self.user_id):
            room = self.server.room(room_id)
            sub = room.subscriptions[self.user_id]
            if not room.encrypted or sub.e2e_key or room.e2e_key_id is None:
                continue
            opened: dict[str, RoomKey] = {}
            for kid, wrapped in self.server.e2e_backup_fetch(self.user_id, room_id).items():
                try:
                    opened[kid] = self.backend.unwrap_room_key(wrapped, recovery_key)
                except CryptoError:
                    continue
            current = opened.pop(room.e2e_key_id, None)
            if current is None:
                continue
            for key in opened.values():
                self._backed_up.add((room_id, key.kid))
            self._backed_up.add((room_id, current.kid))
            self._restore_to_self(room_id, current, opened, "backup", now)
            restored.append(room_id)
        return restored

    def _restore_to_self(
        self, room_id: str, current: RoomKey, older: Mapping[str, RoomKey], source: str, now: float
    ) -> None:
        """Hand this device ``current`` (with ``older`` as old keys) as a suggestion to itself,
        so that the ordinary accept path stores it; ``source`` names where it came from."""
        assert self._local.public_key is not None
        wrapped = self.backend.wrap_room_key(current, self._local.public_key, self.entropy)
        entry: dict[str, Any] = {
            "_id": self.user_id,
            "key": wrapped,
            "oldKeys": [
                {
                    "e2eKeyId": kid,
                    "ts": now,
                    "E2EKey": self.backend.wrap_room_key(k, self._local.public_key, self.entropy),
                }
                for kid, k in older.items()
            ],
        }
        if self.mitigations.signed_suggestions:
            assert self._local.private_key is not None
            entry["signer"] = self.user_id
            entry["signature"] = self.backend.sign(
                self._local.private_key, suggestion_payload(room_id, self.user_id, wrapped)
            )
        self.server.e2e_provide_users_suggested_group_keys(self.user_id, {room_id: [entry]}, now=now)
        self._handle_suggestion(room_id, now, source=source)

    # ------------------------------------------------------------------ dehydrated device (policy dehydrated)

    def dehydrate(self, secret: str, *, now: float) -> str:
        """Policy ``dehydrated``: make a new dehydrated device, its private key sealed under
        ``secret`` (the person's recovery key or passphrase), replacing the old one; returns
        its id.  Only room keys shared from now on reach it."""
        self._require_functional()
        if not isinstance(secret, str) or not secret:
            raise ValidationError(message="secret must be a non-empty string")
        pair = self.backend.generate_key_pair(self.entropy)
        sealed = self.backend.encrypt_private_key(
            pair.private_key, user_id=self.user_id, password=secret, entropy=self.entropy
        )
        return self.server.e2e_dehydrated_put(self.user_id, pair.public_key, sealed, now=now)

    def rehydrate(self, secret: str, *, now: float) -> list[str]:
        """Policy ``dehydrated``: open the person's dehydrated device with ``secret``, take the
        room keys sent to it (rooms whose current key is among them come back, the others as
        history), then make a new device (``DehydratedDeviceManager.startDehydration``: rehydrate,
        then dehydrate anew).  Returns the rooms whose current key came back; a wrong secret
        restores nothing and leaves the device as it is."""
        self._require_functional()
        device = self.server.e2e_dehydrated_fetch(self.user_id)
        try:
            private_key = self.backend.decrypt_private_key(
                device["sealed"], user_id=self.user_id, password=secret
            )
        except CryptoError:
            return []
        received: dict[str, dict[str, RoomKey]] = {}
        for item in device["keys"]:  # one entry per sender: the first that opens, for each kid
            if item["kid"] in received.get(item["rid"], {}):
                continue
            try:
                key = self.backend.unwrap_room_key(item["key"], private_key)
            except CryptoError:
                continue
            if key.kid == item["kid"]:
                received.setdefault(item["rid"], {})[item["kid"]] = key
        restored = []
        for room_id in self.server.rooms_of(self.user_id):
            room = self.server.room(room_id)
            sub = room.subscriptions[self.user_id]
            keys = received.get(room_id, {})
            if not room.encrypted or sub.e2e_key or room.e2e_key_id is None or room.e2e_key_id not in keys:
                continue
            current = keys.pop(room.e2e_key_id)
            self._restore_to_self(room_id, current, keys, "dehydrated", now)
            restored.append(room_id)
        self.dehydrate(secret, now=now)
        return restored

    def _share_with_dehydrated(self, room_id: str, key: RoomKey, now: float) -> None:
        """Policy ``dehydrated``: wrap ``key`` for the members' dehydrated devices that lack it
        (a Matrix sender shares its session with every device of the room's members)."""
        if not self.server.mechanisms.dehydrated:
            return
        lacking = self.server.e2e_dehydrated_lacking(self.user_id, room_id, key.kid)
        if lacking:
            keys = {uid: self.backend.wrap_room_key(key, pk, self.entropy) for uid, pk in lacking.items()}
            self._post(now, "e2e_dehydrated_send", self.user_id, room_id, key.kid, keys)
