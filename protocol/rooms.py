"""Rooms, subscriptions and messages: the documents of Rocket.Chat's ``rooms``, ``subscriptions``
and ``messages`` collections that end-to-end encryption reads and writes (spec section 2).

Field names in :meth:`to_document` are Rocket.Chat's, so a :meth:`protocol.Server.dump` can be
compared with a Rocket.Chat database.  Optional fields are absent from a document when unset, as
Rocket.Chat ``$unset``s them.

An encrypted message (``t = "e2e"``) carries its ciphertext in ``content``; one written by an old
client carries it in ``msg`` instead, as a v1 string (:meth:`Message.e2e_content` reads both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .crypto import codec

__all__ = [
    "MAX_OLD_ROOM_KEYS",
    "MAX_WAITING_USERS",
    "Message",
    "OldRoomKey",
    "Room",
    "Subscription",
    "WaitingUser",
]

#: ``usersWaitingForE2EKeys`` keeps the newest 50 (``$push`` with ``$slice: -50``).
MAX_WAITING_USERS = 50
#: ``oldRoomKeys`` keeps 10 (newest first).
MAX_OLD_ROOM_KEYS = 10


@dataclass(frozen=True, slots=True)
class OldRoomKey:
    """One entry of ``oldRoomKeys`` / ``suggestedOldRoomKeys``."""

    e2e_key_id: str
    ts: float
    e2e_key: str

    def to_document(self) -> dict[str, Any]:
        return {"e2eKeyId": self.e2e_key_id, "ts": self.ts, "E2EKey": self.e2e_key}


@dataclass(frozen=True, slots=True)
class WaitingUser:
    """One entry of ``usersWaitingForE2EKeys``."""

    user_id: str
    ts: float


@dataclass(slots=True)
class Subscription:
    room_id: str
    user_id: str
    roles: tuple[str, ...] = ()
    #: the current room key wrapped for this user's key pair
    e2e_key: str | None = None
    #: a key offered by another member, not yet accepted
    e2e_suggested_key: str | None = None
    old_room_keys: list[OldRoomKey] | None = None
    suggested_old_room_keys: list[OldRoomKey] | None = None
    #: keysim extension (mitigation ``signed_suggestions``): who signed the suggestion, and how
    suggestion_signer: str | None = None
    suggestion_signature: str | None = None
    #: when the user became a member (RC's subscription ``ts``)
    joined_at: float = 0.0
    #: keysim bookkeeping: where the join falls in the server's order of events (policy
    #: ``ratchet`` compares it with when each room key was made)
    joined_seq: int = 0

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"rid": self.room_id, "u": {"_id": self.user_id}}
        if self.roles:
            doc["roles"] = list(self.roles)
        if self.e2e_key is not None:
            doc["E2EKey"] = self.e2e_key
        if self.e2e_suggested_key is not None:
            doc["E2ESuggestedKey"] = self.e2e_suggested_key
        if self.old_room_keys is not None:
            doc["oldRoomKeys"] = [k.to_document() for k in self.old_room_keys]
        if self.suggested_old_room_keys is not None:
            doc["suggestedOldRoomKeys"] = [k.to_document() for k in self.suggested_old_room_keys]
        if self.suggestion_signature is not None:
            doc["E2ESuggestedKeySigner"] = self.suggestion_signer
            doc["E2ESuggestedKeySignature"] = self.suggestion_signature
        return doc


@dataclass(slots=True)
class Room:
    id: str
    #: ``p`` private group, ``d`` direct message
    t: str
    name: str
    encrypted: bool = False
    e2e_key_id: str | None = None
    #: ``usersWaitingForE2EKeys``; None when the field is absent (RC removes it when it empties)
    users_waiting: list[WaitingUser] | None = None
    #: member user id -> subscription, in joining order
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: ``e2e.resetRoomKey`` holds a per-room lock for 10 s
    reset_locked_until: float = float("-inf")
    #: keysim bookkeeping: kid -> where its making falls in the server's order of events
    #: (policy ``ratchet`` reads it)
    key_since: dict[str, int] = field(default_factory=dict)
    #: Matrix's ``m.room.history_visibility`` (policy ``bundle`` reads it; RC has no such setting)
    history_visibility: str = "shared"

    def is_last_owner(self, user_id: str) -> bool:
        """Whether ``user_id`` is the room's only owner (``leaveRoom``: it may not leave)."""
        sub = self.subscriptions.get(user_id)
        if sub is None or "owner" not in sub.roles:
            return False
        return sum("owner" in s.roles for s in self.subscriptions.values()) == 1

    def is_waiting(self, user_id: str) -> bool:
        return self.users_waiting is not None and any(w.user_id == user_id for w in self.users_waiting)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": self.id,
            "t": self.t,
            "name": self.name,
            "encrypted": self.encrypted,
            "usersCount": len(self.subscriptions),
        }
        if self.e2e_key_id is not None:
            doc["e2eKeyId"] = self.e2e_key_id
        if self.users_waiting is not None:
            doc["usersWaitingForE2EKeys"] = [{"userId": w.user_id, "ts": w.ts} for w in self.users_waiting]
        return doc


@dataclass(slots=True)
class Message:
    id: str
    rid: str
    user_id: str
    ts: float
    #: ``e2e`` for an encrypted message, None for a plain one
    t: str | None = None
    #: a plain message's text; in a legacy ``e2e`` message (no ``content``), its v1 ciphertext
    msg: str | None = None
    content: dict[str, Any] | None = None

    def e2e_content(self) -> dict[str, Any] | None:
        """The content object a client decrypts, or None for a message that is not encrypted.

        ``content`` when present; else a legacy ``e2e`` message's ``msg`` string read as the v1
        content it is.  RC's ``decryptMessage`` decrypts ``msg`` only when it is non-empty and
        the message has no encrypted content (client/lib/e2ee/rocketchat.e2e.room.ts,
        ``if (message.msg && !isEncryptedMessageContent(message))``).
        """
        if self.t != "e2e":
            return None
        if self.content is not None:
            return self.content
        return codec.legacy_content(self.msg) if self.msg else None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"_id": self.id, "rid": self.rid, "u": {"_id": self.user_id}, "ts": self.ts}
        if self.t is not None:
            doc["t"] = self.t
        if self.msg is not None:
            doc["msg"] = self.msg
        if self.content is not None:
            doc["content"] = self.content
        return doc
