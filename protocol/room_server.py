"""Rooms, membership, messages and the server's pushes: the part of the server that end-to-end
encryption stands on (Rocket.Chat's ``Rooms``/``Subscriptions`` models and ``addUserToRoom``,
``removeUserFromRoom``, ``sendMessage``).

:class:`RoomServerMixin` keeps the ``rooms``, ``subscriptions`` and ``messages`` documents, the
waiting queue ``usersWaitingForE2EKeys`` (``addUserIdToE2EEQueueByRoomIds``,
``removeUsersFromE2EEQueueByRoomId``), and the pushes a connected client receives
(:class:`SubscriptionChanged`, live :class:`KeyRequest`), drained by the transport with
:meth:`RoomServerMixin.drain_notifications`.  Observers of key events (the simulator's
bookkeeping) register in ``listeners``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .accounts import User, new_id
from .errors import E2EError, NotFoundError, PermissionDenied, ValidationError
from .policies import Mechanisms
from .rooms import MAX_WAITING_USERS, Message, Room, Subscription, WaitingUser

if TYPE_CHECKING:
    from .entropy import Entropy
    from .settings import Settings

__all__ = ["MESSAGE_ALGORITHMS", "KeyRequest", "Notification", "RoomServerMixin", "SubscriptionChanged"]

MESSAGE_ALGORITHMS = ("rc.v2.aes-sha2", "rc.v1.aes-sha2")


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """A live key request (legacy ``e2ekeyRequest``) as delivered to one connected member."""

    recipient_id: str
    room_id: str
    requester_id: str
    key_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """The server pushed a change of one subscription (or its room) to a connected member, as
    Rocket.Chat's subscription stream does; the client reacts in ``onSubscriptionChanged``."""

    recipient_id: str
    room_id: str


Notification = KeyRequest | SubscriptionChanged


class RoomServerMixin:
    # Supplied by protocol.Server.
    settings: Settings
    entropy: Entropy
    policy: str
    mechanisms: Mechanisms
    _users: dict[str, User]
    _rooms: dict[str, Room]
    _messages: dict[str, list[Message]]
    _notifications: list[Notification]
    _user_rooms: dict[str, dict[str, None]]
    #: observers of key events, called as ``listener(event, room_id, user_id)``; see :meth:`_emit`
    listeners: list[Callable[[str, str, str], None]]

    if TYPE_CHECKING:

        def user(self, user_id: str) -> User: ...

        def has_permission(self, user_id: str, permission: str, room_id: str | None = None) -> bool: ...

        def _entitled(self, room: Room, sub: Subscription, kid: str | None) -> bool: ...

        def _next_seq(self) -> int: ...

        def _forget_bundles(self, user_id: str, room_id: str | None = None) -> None: ...

    # ------------------------------------------------------------------ lookups

    def room(self, room_id: str) -> Room:
        try:
            return self._rooms[room_id]
        except (KeyError, TypeError):
            raise NotFoundError("error-invalid-room", f"unknown room {room_id!r}") from None

    def subscription(self, room_id: str, user_id: str) -> Subscription:
        sub = self.room(room_id).subscriptions.get(user_id)
        if sub is None:
            raise NotFoundError("error-subscription-not-found", f"{user_id!r} is not in {room_id!r}")
        return sub

    @property
    def room_ids(self) -> list[str]:
        return list(self._rooms)

    def rooms_of(self, user_id: str) -> list[str]:
        """The rooms ``user_id`` is subscribed to, in joining order."""
        return list(self._user_rooms.get(user_id, ()))

    def messages(self, room_id: str) -> list[Message]:
        self.room(room_id)
        return list(self._messages.get(room_id, ()))

    def _member(self, room_id: str, user_id: str) -> tuple[Room, Subscription]:
        room = self.room(room_id)
        self.user(user_id)
        sub = room.subscriptions.get(user_id)
        if sub is None:  # canAccessRoom
            raise PermissionDenied("error-invalid-room", f"{user_id!r} cannot access {room_id!r}")
        return room, sub

    @property
    def _queue_enabled(self) -> bool:
        return self.mechanisms.queue

    # ------------------------------------------------------------------ the queue (Rooms model)

    def _enqueue(self, room_ids: Iterable[str], user_id: str, now: float) -> None:
        """``addUserIdToE2EEQueueByRoomIds``: encrypted rooms only; already queued: no change."""
        if not self._queue_enabled:
            return
        for rid in room_ids:
            room = self._rooms[rid]
            if not room.encrypted or room.is_waiting(user_id):
                continue
            if not self._entitled(room, room.subscriptions[user_id], room.e2e_key_id):
                continue  # policy ratchet: a joiner waits for a new session, not in the queue
            waiting = room.users_waiting if room.users_waiting is not None else []
            waiting.append(WaitingUser(user_id, now))
            room.users_waiting = waiting[-MAX_WAITING_USERS:]  # $slice: -50 keeps the newest
            self._emit("queued", rid, [user_id])

    def _dequeue(self, room: Room, user_ids: Iterable[str]) -> None:
        """``removeUsersFromE2EEQueueByRoomId``; the field is removed when it empties."""
        if room.users_waiting is None or not room.encrypted:
            return
        gone = set(user_ids)
        room.users_waiting = [w for w in room.users_waiting if w.user_id not in gone] or None

    def _remove_from_every_queue(self, user_id: str) -> None:
        """``Rooms.removeUserFromE2EEQueue(uid)``: ``$pull`` from every encrypted room's queue.
        Unlike :meth:`_dequeue` it leaves an emptied queue as ``[]``, which holders' loops still
        take for a room to serve (``'usersWaitingForE2EKeys' in record``)."""
        for rid in self._user_rooms.get(user_id, {}):
            room = self._rooms[rid]
            if room.encrypted and room.users_waiting is not None:
                room.users_waiting = [w for w in room.users_waiting if w.user_id != user_id]

    # ------------------------------------------------------------------ rooms and membership

    def create_private_group(
        self,
        owner_id: str,
        name: str,
        members: Sequence[str] = (),
        *,
        encrypted: bool | None = None,
        now: float,
    ) -> str:
        """A private group (``t = "p"``); encrypted by default per ``E2E_Enabled_Default_PrivateRooms``."""
        if encrypted is None:
            encrypted = self.settings.e2e_enabled and self.settings.e2e_default_private_rooms
        return self._create_room("p", name, owner_id, members, encrypted, now)

    def create_direct_message(
        self, user_id: str, other_id: str, *, encrypted: bool | None = None, now: float
    ) -> str:
        """A direct message between two users; encrypted per ``E2E_Enabled_Default_DirectRooms``.

        An existing DM between the two is returned as it is (RC ``createDirectRoom``)."""
        if not isinstance(user_id, str) or not isinstance(other_id, str):
            raise ValidationError("error-invalid-params", "user ids must be strings")
        if user_id == other_id:
            raise ValidationError("error-invalid-params", "a DM needs two different users")
        self.user(other_id)
        for rid in self.rooms_of(user_id):
            room = self._rooms[rid]
            if room.t == "d" and other_id in room.subscriptions:
                return rid
        if encrypted is None:
            encrypted = self.settings.e2e_enabled and self.settings.e2e_default_direct_rooms
        names = sorted((self.user(user_id).username, self.user(other_id).username))
        return self._create_room("d", "+".join(names), user_id, [other_id], encrypted, now)

    def _create_room(
        self, t: str, name: str, owner_id: str, members: Sequence[str], encrypted: bool, now: float
    ) -> str:
        if not isinstance(name, str) or not name:
            raise ValidationError("error-invalid-name", f"invalid room name {name!r}")
        if not isinstance(encrypted, bool):
            raise ValidationError("error-invalid-params", "encrypted must be a bool")
        self.user(owner_id)
        for uid in members:
            self.user(uid)
        room = Room(id=new_id(self.entropy), t=t, name=name, encrypted=encrypted)
        self._rooms[room.id] = room
        self._subscribe(room, owner_id, ("owner",) if t == "p" else (), now)
        for uid in members:
            if uid not in room.subscriptions:
                self._subscribe(room, uid, (), now)
        self._notify(room.id, list(room.subscriptions))
        return room.id

    def _subscribe(self, room: Room, user_id: str, roles: tuple[str, ...], now: float) -> None:
        room.subscriptions[user_id] = Subscription(
            room.id, user_id, roles=roles, joined_at=float(now), joined_seq=self._next_seq()
        )
        self._user_rooms.setdefault(user_id, {})[room.id] = None

    def set_room_encrypted(self, user_id: str, room_id: str, encrypted: bool = True) -> None:
        """Switch a room's E2EE on or off: ``toggle-room-e2e-encryption``, DMs exempt."""
        room, _ = self._member(room_id, user_id)
        if room.t != "d" and not self.has_permission(user_id, "toggle-room-e2e-encryption", room_id):
            raise PermissionDenied("error-action-not-allowed", "toggle-room-e2e-encryption is required")
        room.encrypted = bool(encrypted)
        self._notify(room_id, list(room.subscriptions))

    def add_user_to_room(self, actor_id: str, room_id: str, user_id: str, *, now: float) -> None:
        """``addUserToRoom``: a member adds another; a new member with a public key is queued."""
        room, _ = self._member(room_id, actor_id)
        if room.t == "d":
            raise E2EError("error-not-allowed", "a direct message has exactly two members")
        user = self.user(user_id)
        if user_id in room.subscriptions:
            return
        self._subscribe(room, user_id, (), now)
        if room.encrypted and self.settings.e2e_enabled and user.e2e_public_key:
            self._enqueue([room_id], user_id, now)
        self._notify(room_id, [user_id])

    def add_room_owner(self, actor_id: str, room_id: str, user_id: str) -> None:
        """``addRoomOwner`` (apps/meteor/server/methods/addRoomOwner.ts): an owner makes another
        member an owner too (``set-owner``: owners and admins)."""
        room, actor = self._member(room_id, actor_id)
        if "owner" not in actor.roles and "admin" not in self.user(actor_id).roles:
            raise PermissionDenied("error-not-allowed", "set-owner is required")
        sub = room.subscriptions.get(user_id)
        if sub is None:
            raise NotFoundError("error-user-not-in-room", "User is not in this room")
        if "owner" in sub.roles:
            raise ValidationError("error-user-already-owner", "User is already an owner")
        sub.roles = (*sub.roles, "owner")
        self._notify(room_id, [user_id])

    def leave_room(self, user_id: str, room_id: str) -> None:
        """``removeUserFromRoom``: no re-keying (no forward secrecy); the leaver leaves the queue.
        The last owner of a room cannot leave it (apps/meteor/app/lib/server/methods/leaveRoom.ts:
        ``error-you-are-last-owner``)."""
        room, _ = self._member(room_id, user_id)
        if room.is_last_owner(user_id):
            raise ValidationError(
                "error-you-are-last-owner", "You are the last owner. Set a new owner before leaving."
            )
        del room.subscriptions[user_id]
        del self._user_rooms[user_id][room_id]
        self._dequeue(room, [user_id])
        self._forget_bundles(user_id, room_id)
        self._notify(room_id, [user_id])

    def send_message(
        self,
        user_id: str,
        room_id: str,
        *,
        now: float,
        msg: str | None = None,
        content: Mapping[str, Any] | None = None,
    ) -> str:
        """Store a message: ``content`` (``t = "e2e"``) or a plain ``msg``.

        A plain message in an encrypted room is refused unless ``E2E_Allow_Unencrypted_Messages``.
        """
        room, _ = self._member(room_id, user_id)
        if (msg is None) == (content is None):
            raise ValidationError("error-invalid-params", "give exactly one of msg and content")
        if content is not None:
            if not isinstance(content, Mapping) or content.get("algorithm") not in MESSAGE_ALGORITHMS:
                raise ValidationError("error-invalid-params", "content is not an E2E message content")
            try:
                json.dumps(content)
            except (TypeError, ValueError):
                raise ValidationError("error-invalid-params", "content must be JSON") from None
            message = Message(new_id(self.entropy), room_id, user_id, now, t="e2e", content=dict(content))
        else:
            if not isinstance(msg, str):
                raise ValidationError("error-invalid-params", "msg must be a string")
            if room.encrypted and not self.settings.e2e_allow_unencrypted_messages:
                raise E2EError("error-not-allowed", "unencrypted messages are not allowed in this room")
            message = Message(new_id(self.entropy), room_id, user_id, now, msg=msg)
        self._messages.setdefault(room_id, []).append(message)
        return message.id

    def send_legacy_message(self, user_id: str, room_id: str, msg: str, *, now: float) -> str:
        """LEGACY writer: store an encrypted message as an old client wrote it, ``t = "e2e"``
        with its v1 ciphertext ``kid(12) + b64(iv[16] || ct)`` in ``msg`` and no ``content``.

        Current clients never write this shape (they send ``content`` through
        :meth:`send_message`); it is here to seed rooms with history from before ``content``
        (tests, simulated pre-upgrade rooms), as ``encrypt_private_key_v1`` seeds old key blobs.
        Make ``msg`` with a backend's ``encrypt_message_v1(...)["ciphertext"]``.  As for a
        content, the server does not parse the ciphertext: a bad one fails when a client reads it.
        """
        self._member(room_id, user_id)
        if not isinstance(msg, str) or not msg:
            raise ValidationError("error-invalid-params", "msg must be a non-empty string")
        message = Message(new_id(self.entropy), room_id, user_id, now, t="e2e", msg=msg)
        self._messages.setdefault(room_id, []).append(message)
        return message.id

    def _emit(self, event: str, room_id: str, user_ids: Iterable[str]) -> None:
        """Tell observers (the simulator's bookkeeping) about a key event: ``suggested`` (a key
        was stored for the user), ``accepted`` (the user made a suggestion its ``E2EKey``),
        ``stored`` (the user set its own ``E2EKey``), ``queued``.  Observers must not call back."""
        for listener in self.listeners:
            for uid in user_ids:
                listener(event, room_id, uid)

    def _notify(self, room_id: str, user_ids: Iterable[str]) -> None:
        """Push a subscription change to those of ``user_ids`` who are connected."""
        for uid in user_ids:
            if self._users[uid].login_tokens:
                self._notifications.append(SubscriptionChanged(uid, room_id))

    def drain_notifications(self) -> list[Notification]:
        """Take the notifications produced since the last drain, oldest first (for the transport).

        A notification is only ever addressed to a member connected when it was produced; one
        who is offline learns the state at its next login instead.
        """
        out, self._notifications[:] = list(self._notifications), []
        return out

    # ------------------------------------------------------------------ state

    def _rooms_dump(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "rooms": [room.to_document() for room in self._rooms.values()],
            "subscriptions": [
                {"_id": f"{rid}:{uid}", **sub.to_document()}
                for rid, room in self._rooms.items()
                for uid, sub in room.subscriptions.items()
            ],
            "messages": [m.to_document() for msgs in self._messages.values() for m in msgs],
        }
