"""The Rocket.Chat client's per-room machine: handshake, group keys, suggestions, server pushes.

:class:`RoomsMixin` is part of :class:`protocol.e2e_client.Client`; it mirrors RC's per-room
machines (``apps/meteor/client/lib/e2ee/rocketchat.e2e.room.ts``) and the room half of
``rocketchat.e2e.ts``:

* one :class:`~protocol.e2e_states.RoomSession` per encrypted ``p``/``d`` room
  (``getInstanceByRoomId``), moved through RC's ``permitedMutations`` (:meth:`~RoomsMixin._move`);
* the handshake (:meth:`~RoomsMixin.handshake`, ``E2ERoom.handshake``): use the stored ``E2EKey``,
  create the room's first key (``createGroupKey``, first writer wins) and give it to every member
  without one (``encryptKeyForOtherParticipants``), or wait; once READY, ``decryptOldRoomKeys``;
* suggestions (``onSubscriptionChanged``, ``importGroupKey``): accepted if they open, else rejected;
* server pushes (:meth:`~RoomsMixin.notify`), the legacy live ``provideKeyToUser``, and
  :meth:`~RoomsMixin.sync` for drivers that do not deliver each push;
* the opt-in mitigations of :mod:`protocol.trust` (``verify_fingerprints``, ``signed_suggestions``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .crypto import CryptoBackend, RoomKey
from .e2e_server import KeyRequest, Notification, SubscriptionChanged
from .e2e_states import E2ERoomState, LocalState, RoomSession, room_move_allowed
from .entropy import Entropy
from .errors import CryptoError, E2EError, ProtocolError
from .ledger import KeyLedger
from .transport import Transport
from .trust import KeyDirectory, Mitigations, suggestion_payload

if TYPE_CHECKING:
    from .server import Server

__all__ = ["RoomsMixin"]

R = E2ERoomState


class RoomsMixin:
    server: Server
    user_id: str
    backend: CryptoBackend
    entropy: Entropy
    ledger: KeyLedger | None
    transport: Transport | None
    mitigations: Mitigations
    directory: KeyDirectory | None
    app: str
    _local: LocalState

    if TYPE_CHECKING:

        @property
        def functional(self) -> bool: ...

        def _post(self, at: float, method: str, /, *args: Any, **kwargs: Any) -> None: ...

        def _acquired(self, room_id: str, key: RoomKey, source: str, now: float) -> None: ...

        def import_bundles(self, *, now: float, room_ids: Iterable[str] | None = None) -> list[str]: ...

    # ------------------------------------------------------------------ rooms

    def _on_ready(self, now: float) -> None:
        """``onE2EEReady``: handshake every room, then handle pending suggestions."""
        for room_id in self.server.rooms_of(self.user_id):
            self._instance(room_id, now)
        for room_id in self.server.rooms_of(self.user_id):
            sub = self.server.room(room_id).subscriptions[self.user_id]
            if sub.e2e_suggested_key and not sub.e2e_key:
                self._handle_suggestion(room_id, now)
        self.import_bundles(now=now)  # policy bundle: the invites accepted at this login

    def _instance(self, room_id: str, now: float) -> RoomSession | None:
        """``getInstanceByRoomId``: only encrypted ``p``/``d`` rooms; a changed kid means the room
        key was reset (``onRoomKeyReset``)."""
        room = self.server.room(room_id)
        if room.t not in ("p", "d") or not room.encrypted or self.user_id not in room.subscriptions:
            return None
        session = self._local.rooms.get(room_id)
        if session is None:
            session = self._local.rooms[room_id] = RoomSession(room_id)
            self.handshake(room_id, now=now)
        elif session.key_id is not None and room.e2e_key_id is not None and session.key_id != room.e2e_key_id:
            self._move(session, R.WAITING_KEYS, now)
            session.key_id, session.key, session.old_keys = room.e2e_key_id, None, None
        return session

    def _move(self, session: RoomSession, new: E2ERoomState, now: float) -> bool:
        if not room_move_allowed(session.state, new):
            return False
        session.state = new
        if new == R.READY and not session.ready_once:
            session.ready_once = True  # once('READY', decryptOldRoomKeys)
            self._load_old_keys(session, now)
        return True

    def handshake(self, room_id: str, *, now: float) -> None:
        """``E2ERoom.handshake``: use the stored key, create the room's first key, or wait."""
        session = self._local.rooms.get(room_id)
        if not self.functional or session is None:
            return
        if session.state not in (R.NOT_STARTED, R.KEYS_RECEIVED):
            return
        self._move(session, R.ESTABLISHING, now)
        room = self.server.room(room_id)
        sub = room.subscriptions[self.user_id]
        if sub.e2e_key:
            # importGroupKey returns false on failure without throwing: the room still goes
            # READY, with no usable key (code reading, rocketchat.e2e.room.ts).
            self._import_group_key(session, sub.e2e_key, "E2EKey", now)
            self._move(session, R.READY, now)
        elif room.e2e_key_id is None:
            self._move(session, R.CREATING_KEYS, now)
            if self._create_group_key(session, now):
                self._move(session, R.READY, now)
            else:
                self._move(session, R.ERROR, now)
        else:
            self._move(session, R.WAITING_KEYS, now)
            if self.server.mechanisms.live:
                self.server.e2e_request_subscription_keys(self.user_id, room_id, now=now)

    def _create_group_key(self, session: RoomSession, now: float) -> bool:
        """``createGroupKey``: a new key, ``setRoomKeyID`` (first writer wins), own ``E2EKey``,
        then a suggestion for every member without a key (creator push)."""
        key = self.backend.generate_room_key(self.entropy)
        try:
            self.server.e2e_set_room_key_id(self.user_id, session.room_id, key.kid)
        except E2EError:
            return False
        assert self._local.public_key is not None
        session.key, session.key_id = key, key.kid
        self._acquired(session.room_id, key, "created", now)
        if self.ledger is not None:
            self.ledger.created(session.room_id, key, self.user_id, now)
        wrapped = self.backend.wrap_room_key(key, self._local.public_key, self.entropy)
        try:
            # createGroupKey awaits this POST: if it fails the handshake throws and the room goes
            # to ERROR before any other member is given the key
            if self.transport is None:
                self.server.e2e_update_group_key(self.user_id, session.room_id, self.user_id, wrapped)
            else:
                self.transport.call(
                    "e2e_update_group_key", (self.user_id, session.room_id, self.user_id, wrapped), {}
                )
        except ProtocolError:
            return False
        self._encrypt_key_for_other_participants(session, now)
        return True

    def _encrypt_key_for_other_participants(self, session: RoomSession, now: float) -> None:
        users = self.server.e2e_get_users_of_room_without_key(self.user_id, session.room_id)
        old_keys = self._exported_old_keys(session.room_id) if users else []
        entries = []
        for user in users:
            if not self._trusted(user["_id"], user["public_key"]):
                continue  # mitigation: never wrap for a key nobody vouched for
            entry = self._wrap_for(session, user["_id"], user["public_key"], old_keys)
            if entry is None:
                return  # RC: one failed wrap and nothing at all is sent
            entries.append(entry)
        if entries:
            self._post(
                now,
                "e2e_provide_users_suggested_group_keys",
                self.user_id,
                {session.room_id: entries},
                now=now,
            )

    def _exported_old_keys(self, room_id: str) -> list[tuple[str, float, RoomKey]]:
        """``exportOldRoomKeys(mySub.oldRoomKeys)``: read from the subscription each time (not
        from the instance's memory), failures skipped."""
        sub = self.server.room(room_id).subscriptions.get(self.user_id)
        if sub is None or not sub.old_room_keys or self._local.private_key is None:
            return []
        out = []
        for old in sub.old_room_keys:
            try:
                out.append(
                    (
                        old.e2e_key_id,
                        old.ts,
                        self.backend.unwrap_room_key(old.e2e_key, self._local.private_key),
                    )
                )
            except CryptoError:
                continue
        return out

    def _wrap_for(
        self, session: RoomSession, user_id: str, public_key: str, old_keys: list[tuple[str, float, RoomKey]]
    ) -> dict[str, Any] | None:
        assert session.key is not None
        try:
            entry: dict[str, Any] = {
                "_id": user_id,
                "key": self.backend.wrap_room_key(self._current(session), public_key, self.entropy),
            }
            if old_keys:
                entry["oldKeys"] = [
                    {
                        "e2eKeyId": kid,
                        "ts": ts,
                        "E2EKey": self.backend.wrap_room_key(key, public_key, self.entropy),
                    }
                    for kid, ts, key in old_keys
                ]
            if self.mitigations.signed_suggestions:
                assert self._local.private_key is not None
                payload = suggestion_payload(session.room_id, user_id, entry["key"])
                entry["signer"] = self.user_id
                entry["signature"] = self.backend.sign(self._local.private_key, payload)
        except CryptoError:
            return None
        return entry

    def _current(self, session: RoomSession) -> RoomKey:
        # Messages and wraps carry the instance's keyID, which importGroupKey does not update
        # once set (code reading): normally the same as the key's own kid.
        assert session.key is not None and session.key_id is not None
        if session.key.kid == session.key_id:
            return session.key
        return RoomKey(session.key_id, session.key.key)

    def _import_group_key(self, session: RoomSession, wrapped: str, source: str, now: float) -> bool:
        """``importGroupKey``: unwrap with the private key; False when it does not open."""
        try:
            kid = self.backend.wrapped_kid(wrapped)
        except (CryptoError, ProtocolError):
            return False
        if session.key_id == kid and session.key is not None:
            return True
        assert self._local.private_key is not None
        try:
            key = self.backend.unwrap_room_key(wrapped, self._local.private_key)
        except CryptoError:
            return False
        session.key = key
        if session.key_id is None:
            session.key_id = kid
        self._acquired(session.room_id, key, source, now)
        return True

    def _load_old_keys(self, session: RoomSession, now: float) -> None:
        """``decryptOldRoomKeys``: open every ``oldRoomKeys`` entry with the current private key."""
        sub = self.server.room(session.room_id).subscriptions.get(self.user_id)
        if sub is None or not sub.old_room_keys or self._local.private_key is None:
            return
        opened: dict[str, tuple[RoomKey, float]] = {}
        for old in sub.old_room_keys:
            try:
                key = self.backend.unwrap_room_key(old.e2e_key, self._local.private_key)
            except CryptoError:
                continue
            opened[old.e2e_key_id] = (key, old.ts)
            self._acquired(session.room_id, key, "old", now)
        session.old_keys = opened

    def _trusted(self, user_id: str, public_key: str) -> bool:
        """Mitigation ``verify_fingerprints``: is ``public_key`` one ``user_id`` vouched for?"""
        if not self.mitigations.verify_fingerprints or self.directory is None:
            return True
        try:
            fingerprint = self.backend.fingerprint(public_key)
        except ProtocolError:
            return False
        return self.directory.vouches(user_id, fingerprint)

    def _signature_ok(self, room_id: str, wrapped: str, signer: str | None, signature: str | None) -> bool:
        """Mitigation ``signed_suggestions``: a member signed exactly this suggestion for us."""
        if not self.mitigations.signed_suggestions:
            return True
        room = self.server.room(room_id)
        if signer is None or signature is None or signer not in room.subscriptions:
            return False
        signer_key = self.server.user(signer).e2e_public_key
        if signer_key is None or not self._trusted(signer, signer_key):
            return False
        return self.backend.verify(signer_key, suggestion_payload(room_id, self.user_id, wrapped), signature)

    def _handle_suggestion(self, room_id: str, now: float, source: str = "suggestion") -> None:
        """Import the stored suggestion: accept it if it opens, else reject (re-queued)."""
        session = self._instance(room_id, now)
        sub = self.server.room(room_id).subscriptions[self.user_id]
        if session is None or not sub.e2e_suggested_key:
            return
        signed = self._signature_ok(
            room_id, sub.e2e_suggested_key, sub.suggestion_signer, sub.suggestion_signature
        )
        if signed and self._import_group_key(session, sub.e2e_suggested_key, source, now):
            self._post(now, "e2e_accept_suggested_group_key", self.user_id, room_id)
            self._key_received(session, now)
        else:
            self._post(now, "e2e_reject_suggested_group_key", self.user_id, room_id, now=now)

    def _key_received(self, session: RoomSession, now: float) -> None:
        if self._move(session, R.KEYS_RECEIVED, now):
            self.handshake(session.room_id, now=now)

    def notify(self, notification: Notification, *, now: float) -> None:
        """A server push reached this device (only while it is connected)."""
        if not self.functional or notification.recipient_id != self.user_id:
            return
        if isinstance(notification, SubscriptionChanged):
            self._on_subscription_changed(notification.room_id, now)
        elif isinstance(notification, KeyRequest):
            self._provide_key_to_user(notification, now)

    def _on_subscription_changed(self, room_id: str, now: float) -> None:
        """``onSubscriptionChanged``: take a suggestion (even over an existing key: suggestions
        are unauthenticated), or finish waiting when an ``E2EKey`` arrived."""
        room = self.server.room(room_id)
        sub = room.subscriptions.get(self.user_id)
        if sub is None or (not room.encrypted and not sub.e2e_key):
            self._local.rooms.pop(room_id, None)
            return
        session = self._instance(room_id, now)
        if session is None:
            return
        if sub.e2e_suggested_key:
            self._handle_suggestion(room_id, now)
        if sub.e2e_key and session.state == R.WAITING_KEYS:
            self._key_received(session, now)
        if self.server.mechanisms.bundle:
            self.import_bundles(now=now, room_ids=[room_id])

    def sync(self, *, now: float) -> None:
        """Process every room as a fresh subscription observer would (for drivers that do not
        deliver each push)."""
        if not self.functional:
            return
        for room_id in self.server.rooms_of(self.user_id):
            self._on_subscription_changed(room_id, now)

    def _provide_key_to_user(self, request: KeyRequest, now: float) -> None:
        """``provideKeyToUser``: answer a live request if this device has that key.  The mobile
        app answers (``provideRoomKeyToUser``); the current web client has no listener for the
        request, so a web device answers only under a policy with ``live_web``."""
        if self.app == "web" and not self.server.mechanisms.live_web:
            return
        session = self._instance(request.room_id, now)
        if session is None or session.key_id != request.key_id or session.key is None:
            return
        self._encrypt_key_for_other_participants(session, now)
        self._move(session, R.READY, now)
