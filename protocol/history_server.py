"""What a joiner may read of a room's past, server side: Matrix's semantics (policies ``ratchet``
and ``bundle``; beyond Rocket.Chat).

Theory of operation.  Under Rocket.Chat a member added to a room is queued like any member
without the key, and the holder that serves it hands over the current key and every old key it
has (``provideUsersSuggestedGroupKeys`` with ``oldKeys``): a joiner reads the room's whole
history, whoever added it and however.  Matrix does otherwise:

* **ratchet** (megolm, the Matrix spec's ``m.megolm.v1.aes-sha2``): a sender shares its outbound
  session with a new member's devices at the session's current ratchet index, so the joiner
  opens what is sent after it joined and nothing before; and a client re-shares a session only
  with devices it shared it with before (matrix-rust-sdk's key-request policy), so nobody else
  hands the joiner older keys.  In keysim a room has one key at a time, not a session per
  sender, and a key opens every message sent under it: the ratchet index is modelled by a new
  room key at the first message after a join, which its sender hands, wrapped, to every member
  whose public key it has (:meth:`e2e_new_session`, the same step as a rejoin).  Until then the
  joiner is *not entitled* to the room's key: it is not queued, holders' loops and live
  requests pass it over, and old keys older than its membership are not passed on to it.
* **bundle** (MSC4268, "Sharing room keys for past messages"; matrix-js-sdk
  ``CryptoApi.shareRoomHistoryWithUser`` and ``MatrixClient.invite(..., {shareEncryptedHistory})``):
  an inviter about to invite someone uploads a *room key bundle*, the room keys it holds whose
  sessions were marked ``shared_history`` (made while the room's history visibility was
  ``shared`` or ``world_readable``), wrapped for the invitee, and the invitee imports it when it
  accepts the invite.  A member who joins on its own (through a space, or a team's auto-join
  rooms) has no inviter and gets no bundle.  In keysim a room's visibility does not change, so
  a room's keys are all ``shared_history`` or none is.

The server keeps only wrapped keys; which keys a member is entitled to is bookkeeping the honest
server does (:meth:`_entitled`), not something a malicious one must respect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .crypto import codec
from .e2e_server import _old_keys, retire_key
from .errors import E2EError, NotFoundError, PermissionDenied, ProtocolError, ValidationError
from .rooms import MAX_OLD_ROOM_KEYS, MAX_WAITING_USERS, WaitingUser

if TYPE_CHECKING:
    from .accounts import User
    from .policies import Mechanisms
    from .rooms import Room, Subscription

__all__ = ["HISTORY_VISIBILITIES", "SHARED_HISTORY", "HistoryServerMixin", "KeyBundle"]

#: Matrix's ``m.room.history_visibility`` values
HISTORY_VISIBILITIES = ("world_readable", "shared", "invited", "joined")
#: the visibilities under which a session is marked ``shared_history`` (MSC4268)
SHARED_HISTORY = frozenset({"world_readable", "shared"})


@dataclass(frozen=True, slots=True)
class KeyBundle:
    """One room key bundle: who sent it, when, and the keys (kid -> wrapped for the invitee)."""

    sender: str
    ts: float
    keys: Mapping[str, str]


class HistoryServerMixin:
    # Supplied by protocol.Server.
    policy: str
    mechanisms: Mechanisms
    _users: dict[str, User]
    _bundles: dict[tuple[str, str], KeyBundle]
    #: the server's order of events (joins and new keys), for :meth:`_entitled`
    _seq: int

    if TYPE_CHECKING:

        def user(self, user_id: str) -> User: ...

        def room(self, room_id: str) -> Room: ...

        def _member(self, room_id: str, user_id: str) -> tuple[Room, Subscription]: ...

        def _notify(self, room_id: str, user_ids: list[str]) -> None: ...

        def _emit(self, event: str, room_id: str, user_ids: list[str]) -> None: ...

        @property
        def _queue_enabled(self) -> bool: ...

    # ------------------------------------------------------------------ ratchet

    def _entitled(self, room: Room, sub: Subscription, kid: str | None) -> bool:
        """Whether ``sub``'s member may be handed the room key ``kid``: always, except under
        ``ratchet``, where only keys made after it joined are (an unknown kid is not; a room
        with no key yet gets its first for every member).  "After" is in the server's order of
        events, not in time: a key made at the instant of a join, before it, is not."""
        if not self.mechanisms.ratchet or kid is None:
            return True
        made = room.key_since.get(kid)
        return made is not None and made > sub.joined_seq

    def _entitled_to_wrapped(self, room: Room, sub: Subscription, wrapped: str) -> bool:
        """Under ``ratchet``: ``wrapped`` names (its kid prefix) the room's current key, which
        the member is entitled to; a wrapped key computed before the room moved on is not."""
        if not self.mechanisms.ratchet:
            return True
        try:
            kid, _ = codec.split_prefixed(wrapped)
        except ProtocolError:
            return False
        return kid == room.e2e_key_id and self._entitled(room, sub, kid)

    def _key_made(self, room: Room, kid: str) -> None:
        """``kid`` became ``room``'s key now (the next number in the server's order)."""
        room.key_since[kid] = self._next_seq()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _forget_bundles(self, user_id: str, room_id: str | None = None) -> None:
        """A member left ``room_id`` (every room: its key was reset): the bundles left for it
        there can never be accepted, and a later join must not find them."""
        for key in [k for k in self._bundles if k[0] == user_id and room_id in (None, k[1])]:
            del self._bundles[key]

    def waits_for_session(self, room_id: str, user_id: str) -> bool:
        """Policy ``ratchet``: whether member ``user_id`` joined after the room's current key
        was made, so that it waits for the next sender's new session (not for this key)."""
        room = self.room(room_id)
        sub = room.subscriptions.get(user_id)
        return sub is not None and not self._entitled(room, sub, room.e2e_key_id)

    def e2e_session_due(self, user_id: str, room_id: str) -> bool:
        """Policy ``ratchet``: whether a member joined since the room's current key was made, so
        that a sender starts a new session before its next message."""
        room, _ = self._member(room_id, user_id)
        if not self.mechanisms.ratchet or not room.encrypted or room.e2e_key_id is None:
            return False
        return any(not self._entitled(room, sub, room.e2e_key_id) for sub in room.subscriptions.values())

    def e2e_new_session(
        self, user_id: str, room_id: str, e2e_key_id: str, keys: Mapping[str, str], *, now: float
    ) -> None:
        """Policy ``ratchet``: a member starts a new session, a new room key handed, wrapped, to
        itself and to every member whose public key it has (``keys``: user id -> wrapped key).
        Every member's current key becomes an old key; members handed nothing are queued."""
        if not self.mechanisms.ratchet:
            raise E2EError("error-not-allowed", f"new sessions need policy 'ratchet', not {self.policy!r}")
        room, _ = self._member(room_id, user_id)
        if room.e2e_key_id is None or not room.encrypted:
            raise E2EError("error-room-not-encrypted", f"{room_id!r} has no room key")
        self._new_epoch(room, user_id, e2e_key_id, keys, now, "session")

    def _new_epoch(
        self, room: Room, user_id: str, e2e_key_id: object, keys: object, now: float, event: str
    ) -> None:
        """A new room key handed directly to the members in ``keys`` (a rejoin, a new session):
        checked whole before anything is written."""
        if not isinstance(e2e_key_id, str) or not e2e_key_id:
            raise ValidationError("error-invalid-params", "e2e_key_id must be a non-empty string")
        if not isinstance(keys, Mapping) or user_id not in keys:
            raise ValidationError(message="keys must map user ids to wrapped keys, the caller's included")
        for uid, wrapped in keys.items():
            if uid not in room.subscriptions:
                raise PermissionDenied("error-not-allowed", f"{uid!r} is not a member of {room.id!r}")
            if not isinstance(wrapped, str) or not wrapped:
                raise ValidationError("error-invalid-params", "a wrapped key must be a non-empty string")
        old_kid = room.e2e_key_id
        assert old_kid is not None
        queue: list[WaitingUser] = []
        for uid, sub in room.subscriptions.items():
            retire_key(sub, old_kid, now, keep=None if self.mechanisms.ratchet else MAX_OLD_ROOM_KEYS)
            sub.e2e_key = keys.get(uid)
            if sub.e2e_key is None and len(queue) < MAX_WAITING_USERS:
                queue.append(WaitingUser(uid, now))
        room.e2e_key_id = e2e_key_id
        self._key_made(room, e2e_key_id)
        room.users_waiting = queue if self._queue_enabled else None
        self._notify(room.id, list(room.subscriptions))
        self._emit(event, room.id, list(keys))
        self._emit("queued", room.id, [w.user_id for w in queue])

    # ------------------------------------------------------------------ key bundles (MSC4268)

    def set_room_history_visibility(self, user_id: str, room_id: str, visibility: str) -> None:
        """``m.room.history_visibility``: a member sets who may read the room's past."""
        room, _ = self._member(room_id, user_id)
        if visibility not in HISTORY_VISIBILITIES:
            raise ValidationError(
                "error-invalid-params", f"history visibility must be one of {HISTORY_VISIBILITIES}"
            )
        room.history_visibility = visibility

    def e2e_bundle_upload(
        self, user_id: str, room_id: str, invitee_id: str, keys: Mapping[str, str], *, now: float
    ) -> None:
        """Policy ``bundle``: ``user_id`` leaves ``invitee_id`` a room key bundle for
        ``room_id`` (the upload and the ``m.room_key_bundle`` to-device message in one): kid ->
        key wrapped for the invitee.  A later bundle for the same room replaces it."""
        self._require_bundle()
        room, _ = self._member(room_id, user_id)
        self.user(invitee_id)
        if invitee_id not in room.subscriptions:
            raise PermissionDenied("error-not-allowed", f"{invitee_id!r} is not invited to {room_id!r}")
        if not isinstance(keys, Mapping) or not keys:
            raise ValidationError("error-invalid-params", "keys must map kids to wrapped keys")
        for kid, wrapped in keys.items():
            if not isinstance(kid, str) or not kid or not isinstance(wrapped, str) or not wrapped:
                raise ValidationError("error-invalid-params", "keys must map kids to wrapped keys")
        self._bundles[(invitee_id, room_id)] = KeyBundle(user_id, float(now), dict(keys))
        self._notify(room_id, [invitee_id])

    def e2e_bundle_fetch(self, user_id: str, room_id: str) -> dict[str, Any] | None:
        """The bundle left for ``user_id`` in ``room_id`` (``sender``, ``ts``, ``keys``), or None."""
        self._require_bundle()
        self._member(room_id, user_id)
        bundle = self._bundles.get((user_id, room_id))
        if bundle is None:
            return None
        return {"sender": bundle.sender, "ts": bundle.ts, "keys": dict(bundle.keys)}

    def e2e_bundle_import(self, user_id: str, room_id: str, old_keys: Sequence[Mapping[str, Any]]) -> None:
        """The invitee keeps the bundle's keys as old keys (``{e2eKeyId, ts, E2EKey}``, wrapped
        for its own key pair; kids it has already are skipped) and the bundle is done.  The room's
        current key among them is kept as an old key too: it opens the past, while the member's
        ``E2EKey`` stays what a session shared with it makes it."""
        self._require_bundle()
        _, sub = self._member(room_id, user_id)
        if (user_id, room_id) not in self._bundles:
            raise NotFoundError("error-bundle-not-found", f"no key bundle for {user_id!r} in {room_id!r}")
        entries = _old_keys(list(old_keys))
        have = {k.e2e_key_id for k in sub.old_room_keys or []}
        added = [k for k in entries if k.e2e_key_id not in have]
        if added:
            sub.old_room_keys = [*(sub.old_room_keys or []), *added]
        del self._bundles[(user_id, room_id)]

    def _require_bundle(self) -> None:
        if not self.mechanisms.bundle:
            raise E2EError("error-not-allowed", f"key bundles need policy 'bundle', not {self.policy!r}")

    def _bundles_dump(self) -> list[dict[str, Any]]:
        return [
            {"userId": uid, "rid": rid, "sender": b.sender, "ts": b.ts, "keys": dict(b.keys)}
            for (uid, rid), b in self._bundles.items()
        ]
