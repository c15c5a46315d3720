"""Dehydrated devices, server side (policy ``dehydrated``; beyond Rocket.Chat).

Theory of operation.  Matrix's dehydrated devices (MSC3814; matrix-js-sdk
``src/rust-crypto/DehydratedDeviceManager.ts``) give a user a device that lives on the server
while none of the user's real devices is online:

* the user's client makes a key pair for the device and uploads the public half with the private
  half sealed under a key kept in the user's secret storage, so it needs recovery set up (the
  recovery key or passphrase): :meth:`e2e_dehydrated_put`.  A new device replaces the old one,
  and what was sent to the old one is gone with it;
* the device is a device like any other: whoever shares a room key with the room's members'
  devices shares it with their dehydrated devices too, as a to-device message the server keeps
  (:meth:`e2e_dehydrated_lacking`, :meth:`e2e_dehydrated_send`).  Only keys shared after the
  device exists are in it;
* a person who lost every device logs in anew, opens the device with its recovery key, reads
  what was sent to it (:meth:`e2e_dehydrated_fetch`) and makes a new device.  A client also
  replaces its dehydrated device every week (``DEHYDRATION_INTERVAL``).

In keysim a room has one current key at a time (``e2eKeyId``), not one megolm session per sender,
and a holder shares it with the dehydrated devices that lack it when it sends a message, or makes
a new key (the room's first, a room-key reset, a rejoin): what a Matrix sender does with its
outbound session.  A megolm session shared at ratchet index i opens only the messages from i on;
a keysim room key opens every message sent under it, so the history counted for a rehydrated room
is an upper bound of Matrix's.  The server keeps only sealed and wrapped material.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .accounts import new_id
from .errors import E2EError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from .accounts import User
    from .entropy import Entropy
    from .policies import Mechanisms
    from .rooms import Room, Subscription

__all__ = ["DehydratedDevice", "DehydratedServerMixin"]


@dataclass(slots=True)
class DehydratedDevice:
    """One user's dehydrated device: its keys, and the room keys sent to it."""

    device_id: str
    public_key: str
    #: the private key, sealed under the user's dehydration key (never readable by the server)
    sealed: str
    created_at: float
    #: (room id, kid) -> sender -> the room key wrapped for the device's public key (to-device
    #: messages are kept per sender: one member's message never stands for another's)
    inbox: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def messages(self) -> list[dict[str, str]]:
        """The inbox as documents: one per room, kid and sender."""
        return [
            {"rid": rid, "kid": kid, "sender": sender, "key": key}
            for (rid, kid), by_sender in self.inbox.items()
            for sender, key in by_sender.items()
        ]


class DehydratedServerMixin:
    # Supplied by protocol.Server.
    policy: str
    mechanisms: Mechanisms
    _users: dict[str, User]
    _dehydrated: dict[str, DehydratedDevice]
    entropy: Entropy

    if TYPE_CHECKING:

        def user(self, user_id: str) -> User: ...

        def room(self, room_id: str) -> Room: ...

        def _member(self, room_id: str, user_id: str) -> tuple[Room, Subscription]: ...

    def e2e_dehydrated_put(self, user_id: str, public_key: str, sealed: str, *, now: float) -> str:
        """Upload a new dehydrated device for ``user_id`` (MSC3814 ``PUT /dehydrated_device``):
        it replaces the old one, whose inbox is dropped.  Returns the device id."""
        self._require_dehydrated()
        self.user(user_id)
        for name, value in (("public_key", public_key), ("sealed", sealed)):
            if not isinstance(value, str) or not value:
                raise ValidationError(message=f"{name} must be a non-empty string")
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ValidationError(message="now must be a finite number")
        device = DehydratedDevice(new_id(self.entropy), public_key, sealed, float(now))
        self._dehydrated[user_id] = device
        return device.device_id

    def e2e_dehydrated_fetch(self, user_id: str) -> dict[str, Any]:
        """The user's dehydrated device (``GET /dehydrated_device`` and its ``/events``): its id,
        sealed private key, creation time and the room keys sent to it."""
        self._require_dehydrated()
        device = self._device(user_id)
        return {
            "deviceId": device.device_id,
            "sealed": device.sealed,
            "createdAt": device.created_at,
            "keys": device.messages(),
        }

    def e2e_dehydrated_lacking(self, user_id: str, room_id: str, key_id: str) -> dict[str, str]:
        """The members of ``room_id`` whose dehydrated device ``user_id`` has not sent
        ``key_id`` yet: member id -> the device's public key (what a sender's device list and
        its record of whom it shared with say)."""
        self._require_dehydrated()
        room, _ = self._member(room_id, user_id)
        _check_kid(key_id)
        out = {}
        for uid in room.subscriptions:
            device = self._dehydrated.get(uid)
            if device is not None and user_id not in device.inbox.get((room_id, key_id), {}):
                out[uid] = device.public_key
        return out

    def e2e_dehydrated_send(self, user_id: str, room_id: str, key_id: str, keys: Mapping[str, str]) -> None:
        """The room's current key ``key_id`` wrapped for members' dehydrated devices (to-device
        messages from ``user_id``, kept per sender); a member whose device is gone, or who is
        no member, is skipped.  Everything is checked before anything is stored."""
        self._require_dehydrated()
        room, _ = self._member(room_id, user_id)
        _check_kid(key_id)
        if key_id != room.e2e_key_id:
            raise ValidationError(message=f"{key_id!r} is not the current key of {room_id!r}")
        if not isinstance(keys, Mapping):
            raise ValidationError(message="keys must map member ids to wrapped keys")
        for uid, wrapped in keys.items():
            if not isinstance(uid, str) or not isinstance(wrapped, str) or not wrapped:
                raise ValidationError(message="keys must map member ids to non-empty wrapped keys")
        for uid, wrapped in keys.items():
            device = self._dehydrated.get(uid)
            if device is not None and uid in room.subscriptions:
                device.inbox.setdefault((room_id, key_id), {}).setdefault(user_id, wrapped)

    def _device(self, user_id: str) -> DehydratedDevice:
        self.user(user_id)
        device = self._dehydrated.get(user_id)
        if device is None:
            raise NotFoundError("error-dehydrated-device-not-found", f"{user_id!r} has no dehydrated device")
        return device

    def _require_dehydrated(self) -> None:
        if not self.mechanisms.dehydrated:
            raise E2EError(
                "error-not-allowed", f"dehydrated devices need policy 'dehydrated', not {self.policy!r}"
            )

    def _dehydrated_dump(self) -> list[dict[str, Any]]:
        return [
            {
                "userId": uid,
                "deviceId": d.device_id,
                "publicKey": d.public_key,
                "sealed": d.sealed,
                "createdAt": d.created_at,
                "inbox": d.messages(),
            }
            for uid, d in self._dehydrated.items()
        ]


def _check_kid(key_id: object) -> None:
    if not isinstance(key_id, str) or not key_id:
        raise ValidationError(message="key_id must be a non-empty string")
