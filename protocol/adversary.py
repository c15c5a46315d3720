"""A malicious server: Rocket.Chat's server as an attacker who runs it would change it.

Theory of operation.  :class:`AdversarialServer` is a :class:`~protocol.Server` whose operator
attacks the end-to-end encryption it hosts.  It holds a key pair of its own and may:

* ``substitute_public_keys`` (#42088): hand out its own public key in place of a waiting member's
  when a holder asks whom to serve.  The holder wraps the room key for the server, which opens it,
  keeps it, and re-wraps it for the member's real key so that nobody notices.
* ``plant_suggestions``: store, for a member who waits for a key, a room key of the server's own
  making under the room's current kid, wrapped for the member's real key.  Suggestions are
  unauthenticated, so the member accepts it; what it then sends the server can read.
* ``withhold_queue``: answer "nobody waits" to every holder, so the queue is never served.
* ``replay_suggestions``: store again, for a member who reset, the key it was served for its old
  key pair; the member cannot open it, rejects it and is queued again (once per old key).
* ``substitute_own_public_key``: answer ``e2e.fetchMyKeys`` with the server's public key beside
  the user's own private-key blob.  Rocket.Chat's client keeps that public key
  (``rocketchat.e2e.ts``: ``loadKeys({ public_key: this.db_public_key, ... })``, never checked
  against the decrypted private key) and wraps the room key for *itself* with it in
  ``createGroupKey`` (``e2e.updateGroupKey``) and ``resetRoomKey``; the server opens that wrap,
  keeps the key, and stores it re-wrapped for the user's real key, so nobody notices.
* ``swap_recovery_request_key`` (policy ``contacts``): store its own public key as the one-time
  key of a person's request to its recovery contacts.  The answering contact wraps the secret
  for the server, which opens it, then the sealed E2E password, then the person's private key
  (whose blob it stores), and so the room keys stored for the person then (current and old; it
  keeps the private key, so later ones too, which are not counted); it passes the secret on
  re-wrapped for the person's real one-time key, so the recovery succeeds and nobody notices.
  Apple has the contact confirm a request in person; the mitigation ``fingerprints`` stands for
  that: the contact answers only a one-time key whose fingerprint the person gave it out of band.

:class:`Attacker` records what the server obtained.  The opt-in client mitigations of
:mod:`protocol.trust` stop substitution (fingerprints) and planting (signed suggestions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .crypto import CryptoBackend, RoomKey
from .entropy import Entropy
from .errors import CryptoError, ProtocolError
from .profiles import Profile
from .server import Server
from .settings import Settings

__all__ = ["ATTACKS", "AdversarialServer", "Attacker", "Attacks"]

ATTACKS = (
    "substitute_public_keys",
    "plant_suggestions",
    "withhold_queue",
    "replay_suggestions",
    "substitute_own_public_key",
    "swap_recovery_request_key",
)


@dataclass(frozen=True, slots=True)
class Attacks:
    substitute_public_keys: bool = False
    plant_suggestions: bool = False
    withhold_queue: bool = False
    replay_suggestions: bool = False
    substitute_own_public_key: bool = False
    swap_recovery_request_key: bool = False

    @property
    def any(self) -> bool:
        return any(getattr(self, name) for name in ATTACKS)


@dataclass(slots=True)
class Attacker:
    """The server operator's key pair and loot."""

    backend: CryptoBackend
    public_key: str
    private_key: object
    #: (room id, kid) -> a room key the attacker opened (from a substituted wrap)
    stolen: dict[tuple[str, str], RoomKey] = field(default_factory=dict)
    #: (room id, user id) -> the planted wrapped key, and the key itself
    planted: dict[tuple[str, str], tuple[str, RoomKey]] = field(default_factory=dict)
    #: (room id, user id, old wrapped key) already replayed
    replayed: set[tuple[str, str, str]] = field(default_factory=set)
    #: user id -> the E2E password the attacker learnt (a swapped recovery request), and the
    #: private key it opened with it (it opens whatever is wrapped for that key later, too)
    passwords: dict[str, str] = field(default_factory=dict)
    private_keys: dict[str, object] = field(default_factory=dict)

    def rooms_obtained(self) -> set[str]:
        """Rooms for which the attacker holds a room key: stolen, or planted and accepted."""
        return {room_id for room_id, _ in self.stolen}


class AdversarialServer(Server):
    def __init__(
        self,
        settings: Settings | None = None,
        profile: str | Profile = "rocketchat",
        entropy: Entropy | None = None,
        *,
        policy: str = "queue",
        attacks: Attacks,
        backend: CryptoBackend,
    ) -> None:
        super().__init__(settings, profile, entropy, policy=policy)
        self.attacks = attacks
        pair = backend.generate_key_pair(self.entropy)
        self.attacker = Attacker(backend, pair.public_key, pair.private_key)
        #: (room id, user id) -> the last key served to that member, for replays
        self._served: dict[tuple[str, str], str] = {}
        #: (room id, member) whose public key the server replaced in an answer
        self._substituted: set[tuple[str, str]] = set()
        self._planted_for: set[tuple[str, str, str]] = set()
        #: user id -> the real one-time key of its recovery request (swapped for the server's)
        self._real_request_key: dict[str, str] = {}

    # -- recovery contacts: the one-time key of a request

    def e2e_contacts_request(self, user_id: str, public_key: str) -> None:
        super().e2e_contacts_request(user_id, public_key)  # every check first
        if self.attacks.swap_recovery_request_key:
            self._real_request_key[user_id] = public_key
            self._contacts[user_id].request_key = self.attacker.public_key

    def e2e_contacts_answer(self, contact_id: str, user_id: str, wrapped: str) -> None:
        real = self._real_request_key.get(user_id) if isinstance(user_id, str) else None
        if real is not None and isinstance(wrapped, str):
            wrapped = self._open_recovery_answer(user_id, real, wrapped)
        super().e2e_contacts_answer(contact_id, user_id, wrapped)

    def _open_recovery_answer(self, user_id: str, real_key: str, wrapped: str) -> str:
        """A contact's answer wrapped for the server: open the secret, the sealed password, the
        private key and the person's room keys; pass the secret on for the real one-time key."""
        backend = self.attacker.backend
        record = self._contacts.get(user_id)
        user = self._users.get(user_id)
        try:
            secret = backend.unwrap_room_key(wrapped, self.attacker.private_key)
        except (CryptoError, ProtocolError):
            return wrapped
        if record is not None and user is not None and user.e2e_private_key is not None:
            try:
                password = backend.decrypt_message(record.sealed, secret)["msg"]
                private_key = backend.decrypt_private_key(
                    user.e2e_private_key, user_id=user_id, password=password
                )
            except (CryptoError, ProtocolError, KeyError, TypeError):
                password = private_key = None
            if isinstance(password, str) and private_key is not None:
                self.attacker.passwords[user_id] = password
                self.attacker.private_keys[user_id] = private_key
                for room_id in self.rooms_of(user_id):
                    sub = self.room(room_id).subscriptions[user_id]
                    wrapped_keys = [sub.e2e_key, *(old.e2e_key for old in sub.old_room_keys or ())]
                    for wrapped_key in wrapped_keys:
                        if not wrapped_key:
                            continue
                        try:
                            key = backend.unwrap_room_key(wrapped_key, private_key)
                        except (CryptoError, ProtocolError):
                            continue
                        self.attacker.stolen[(room_id, key.kid)] = key
        return backend.wrap_room_key(secret, real_key, self.entropy)

    # -- the user's own public key

    def e2e_fetch_my_keys(self, user_id: str) -> dict[str, str]:
        keys = super().e2e_fetch_my_keys(user_id)
        if self.attacks.substitute_own_public_key and keys:
            keys = {**keys, "public_key": self.attacker.public_key}
        return keys

    def e2e_update_group_key(self, user_id: str, room_id: str, target_id: str, key: str) -> None:
        if target_id == user_id:
            key = self._open_own(room_id, user_id, key)
        super().e2e_update_group_key(user_id, room_id, target_id, key)

    def e2e_reset_room_key(
        self, user_id: str, room_id: str, e2e_key: str, e2e_key_id: str, *, now: float
    ) -> None:
        super().e2e_reset_room_key(
            user_id, room_id, self._open_own(room_id, user_id, e2e_key), e2e_key_id, now=now
        )

    def e2e_rejoin_room(
        self, user_id: str, room_id: str, e2e_key_id: str, keys: Mapping[str, str], *, now: float
    ) -> None:
        if isinstance(keys, Mapping) and isinstance(keys.get(user_id), str):
            keys = {**keys, user_id: self._open_own(room_id, user_id, keys[user_id])}
        super().e2e_rejoin_room(user_id, room_id, e2e_key_id, keys, now=now)

    def e2e_new_session(
        self, user_id: str, room_id: str, e2e_key_id: str, keys: Mapping[str, str], *, now: float
    ) -> None:
        if isinstance(keys, Mapping) and isinstance(keys.get(user_id), str):
            keys = {**keys, user_id: self._open_own(room_id, user_id, keys[user_id])}
        super().e2e_new_session(user_id, room_id, e2e_key_id, keys, now=now)

    def _open_own(self, room_id: str, user_id: str, wrapped: Any) -> Any:
        """A user's wrap for itself, made with the public key the server handed it: if it opens
        with the server's key, keep the room key and store it re-wrapped for the user's real key."""
        target = self._users.get(user_id) if isinstance(user_id, str) else None
        if not self.attacks.substitute_own_public_key or not isinstance(wrapped, str) or target is None:
            return wrapped
        backend = self.attacker.backend
        try:
            key = backend.unwrap_room_key(wrapped, self.attacker.private_key)
        except (CryptoError, ProtocolError):
            return wrapped
        self.attacker.stolen[(room_id, key.kid)] = key
        if target.e2e_public_key is None:
            return wrapped
        return backend.wrap_room_key(key, target.e2e_public_key, self.entropy)

    # -- key substitution and withholding: who waits, and with which key

    def e2e_get_users_of_room_without_key(self, user_id: str, room_id: str) -> list[dict[str, str]]:
        if self.attacks.withhold_queue:
            self._member(room_id, user_id)
            return []
        return self._substitute(room_id, super().e2e_get_users_of_room_without_key(user_id, room_id))

    def e2e_fetch_users_waiting_for_group_key(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, list[dict[str, str]]]:
        if self.attacks.withhold_queue:
            self.user(user_id)
            return {}
        found = super().e2e_fetch_users_waiting_for_group_key(user_id, room_ids)
        return {rid: self._substitute(rid, users) for rid, users in found.items()}

    def _substitute(self, room_id: str, users: list[dict[str, str]]) -> list[dict[str, str]]:
        if not self.attacks.substitute_public_keys:
            return users
        out = []
        for user in users:
            self._substituted.add((room_id, user["_id"]))
            out.append({"_id": user["_id"], "public_key": self.attacker.public_key})
        return out

    def e2e_provide_users_suggested_group_keys(
        self, user_id: str, keys: Mapping[str, Sequence[Mapping[str, Any]]], *, now: float
    ) -> None:
        if self.attacks.substitute_public_keys and isinstance(keys, Mapping):
            keys = {rid: [self._intercept(rid, e) for e in entries] for rid, entries in keys.items()}
        super().e2e_provide_users_suggested_group_keys(user_id, keys, now=now)
        if isinstance(keys, Mapping):
            for rid, entries in keys.items():
                for entry in entries:
                    if isinstance(entry, Mapping) and isinstance(entry.get("key"), str):
                        self._served[(rid, str(entry.get("_id")))] = entry["key"]

    def _intercept(self, room_id: str, entry: Any) -> Any:
        """Open a key wrapped for the attacker, keep it, re-wrap it for the real member."""
        if not isinstance(entry, Mapping) or (room_id, entry.get("_id")) not in self._substituted:
            return entry
        backend = self.attacker.backend
        target = self._users.get(str(entry.get("_id")))
        try:
            key = backend.unwrap_room_key(entry["key"], self.attacker.private_key)
        except (CryptoError, ProtocolError, KeyError):
            return entry
        self.attacker.stolen[(room_id, key.kid)] = key
        if target is None or target.e2e_public_key is None:
            return entry
        forged = dict(entry)
        forged["key"] = backend.wrap_room_key(key, target.e2e_public_key, self.entropy)
        old = []
        for item in entry.get("oldKeys") or []:
            try:
                old_key = backend.unwrap_room_key(item["E2EKey"], self.attacker.private_key)
            except (CryptoError, ProtocolError, KeyError, TypeError):
                continue
            self.attacker.stolen[(room_id, old_key.kid)] = old_key
            old.append(
                {**item, "E2EKey": backend.wrap_room_key(old_key, target.e2e_public_key, self.entropy)}
            )
        if entry.get("oldKeys"):
            forged["oldKeys"] = old
        return forged

    # -- planting and replaying: act whenever somebody is queued

    def _enqueue(self, room_ids: Any, user_id: str, now: float) -> None:
        room_ids = list(room_ids)
        super()._enqueue(room_ids, user_id, now)
        for rid in room_ids:
            room = self._rooms.get(rid)
            if room is None or not room.encrypted or user_id not in room.subscriptions:
                continue
            if self.attacks.plant_suggestions:
                self._plant(rid, user_id)
            if self.attacks.replay_suggestions:
                self._replay(rid, user_id)

    def _plant(self, room_id: str, user_id: str) -> None:
        room = self._rooms[room_id]
        public_key = self._users[user_id].e2e_public_key
        if room.e2e_key_id is None or public_key is None:
            return
        if (room_id, user_id, public_key) in self._planted_for:
            return  # once per key pair: a refused plant is not retried (it would loop)
        self._planted_for.add((room_id, user_id, public_key))
        backend = self.attacker.backend
        key = RoomKey(room.e2e_key_id, backend.generate_room_key(self.entropy).key)
        wrapped = backend.wrap_room_key(key, public_key, self.entropy)
        self.attacker.planted[(room_id, user_id)] = (wrapped, key)
        sub = room.subscriptions[user_id]
        sub.e2e_suggested_key = wrapped
        sub.suggestion_signer = sub.suggestion_signature = None
        self._notify(room_id, [user_id])

    def _replay(self, room_id: str, user_id: str) -> None:
        old = self._served.get((room_id, user_id))
        if old is None or (room_id, user_id, old) in self.attacker.replayed:
            return
        self.attacker.replayed.add((room_id, user_id, old))
        sub = self._rooms[room_id].subscriptions[user_id]
        sub.e2e_suggested_key = old
        sub.suggestion_signer = sub.suggestion_signature = None
        self._notify(room_id, [user_id])

    # -- what the attack achieved

    def planted_accepted(self) -> list[tuple[str, str]]:
        """(room, user) pairs whose ``E2EKey`` is the key the server planted."""
        out = []
        for (room_id, user_id), (wrapped, _) in self.attacker.planted.items():
            sub = self._rooms[room_id].subscriptions.get(user_id)
            if sub is not None and sub.e2e_key == wrapped:
                out.append((room_id, user_id))
        return out

    def readable_messages(self) -> int:
        """Messages the server can read with the keys it stole or planted."""
        backend = self.attacker.backend
        keys: dict[tuple[str, str], RoomKey] = dict(self.attacker.stolen)
        for (room_id, _), (_, key) in self.attacker.planted.items():
            keys.setdefault((room_id, key.kid), key)
        count = 0
        for room_id, messages in self._messages.items():
            for message in messages:
                content = message.e2e_content()  # legacy v1 ``msg`` strings included
                if content is None:
                    continue
                for (rid, _), key in keys.items():
                    if rid != room_id:
                        continue
                    try:
                        backend.decrypt_message(content, key)
                    except ProtocolError:
                        continue
                    count += 1
                    break
        return count
