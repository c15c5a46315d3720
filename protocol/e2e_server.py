"""End-to-end encryption, server side: the entry points of spec section 3 over the documents of
section 2, as Rocket.Chat's server implements them (``apps/meteor/app/e2e/server/``,
``apps/meteor/app/api/server/v1/e2e.ts``, ``apps/meteor/server/lib/resetUserE2EKey.ts``).

Theory of operation.  The server stores texts it cannot open: public keys, private-key blobs,
wrapped room keys, encrypted message contents.  It does no cryptography at all; it decides who is
queued for a room key, who may write which field, and who is told what.  :class:`E2EServerMixin`
is mixed into :class:`protocol.Server`, which supplies users, sessions, permissions and the 2FA
gate.

Recovery policies (``Server(policy=...)``) change the server only where Rocket.Chat's versions
differ:

* ``queue`` (current RC, PR #32197): ``usersWaitingForE2EKeys`` is kept and served by holders'
  clients asynchronously;
* ``live`` (legacy RC, and the user guide's wording): there is no queue; a member lacking a key
  broadcasts a request that reaches only members connected at that moment
  (:meth:`e2e_request_subscription_keys`, drained with :meth:`drain_notifications`);
* ``backup`` (beyond RC, in Matrix's manner): the queue as in ``queue``, plus a per-user store of
  room keys wrapped for a recovery key the user holds (:meth:`e2e_backup_upload`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import E2EError, NotFoundError, PermissionDenied, ValidationError
from .policies import POLICIES, Mechanisms
from .room_server import KeyRequest, Notification, RoomServerMixin, SubscriptionChanged
from .rooms import MAX_OLD_ROOM_KEYS, MAX_WAITING_USERS, OldRoomKey, Room, Subscription, WaitingUser
from .twofactor import EmailMessage

if TYPE_CHECKING:
    from .accounts import User
    from .twofactor import TwoFactor

__all__ = ["POLICIES", "E2EServerMixin", "KeyRequest", "Mechanisms", "Notification", "SubscriptionChanged"]


#: ``e2e.resetRoomKey``'s ``LockMap = new ExpiryMap(10000)``.
ROOM_KEY_RESET_LOCK_SECONDS = 10.0


class E2EServerMixin(RoomServerMixin):
    # Supplied by protocol.Server.
    twofactor: TwoFactor
    outbox: list[EmailMessage]
    _backups: dict[tuple[str, str], dict[str, str]]

    if TYPE_CHECKING:

        def _drop_contacts(self, user_id: str) -> None: ...

        def _key_made(self, room: Room, kid: str) -> None: ...

        def _entitled_to_wrapped(self, room: Room, sub: Subscription, wrapped: str) -> bool: ...

        def _new_epoch(
            self, room: Room, user_id: str, e2e_key_id: object, keys: object, now: float, event: str
        ) -> None: ...

    # ------------------------------------------------------------------ user keys

    def e2e_fetch_my_keys(self, user_id: str) -> dict[str, str]:
        """``e2e.fetchMyKeys``: ``{public_key, private_key}``, or ``{}`` when the user has none."""
        user = self.user(user_id)
        if user.e2e_public_key is None or user.e2e_private_key is None:
            return {}
        return {"public_key": user.e2e_public_key, "private_key": user.e2e_private_key}

    def e2e_set_user_public_and_private_keys(
        self, user_id: str, public_key: str, private_key: str, *, force: bool = False, now: float
    ) -> None:
        """``e2e.setUserPublicAndPrivateKeys``; then queue the user where it lacks an ``E2EKey``."""
        user = self.user(user_id)
        if (
            not isinstance(public_key, str)
            or not isinstance(private_key, str)
            or not public_key
            or not private_key
        ):
            raise E2EError("error-invalid-keys", "public_key and private_key must be non-empty strings")
        if not force and user.e2e_public_key is not None and user.e2e_private_key is not None:
            raise E2EError("error-keys-already-set", "the user already has keys")
        user.e2e_public_key, user.e2e_private_key = public_key, private_key
        # getSubscribedRoomIdsWithoutE2EKeys: encrypted rooms whose subscription has no E2EKey
        # (a pending suggestion or a room without e2eKeyId still counts).  Code reading: a mere
        # password change (force) re-queues the user too.
        lacking = [
            rid
            for rid in self._user_rooms.get(user_id, ())
            if self._rooms[rid].encrypted and self._rooms[rid].subscriptions[user_id].e2e_key is None
        ]
        self._enqueue(lacking, user_id, now)

    # ------------------------------------------------------------------ room keys

    def e2e_set_room_key_id(self, user_id: str, room_id: str, key_id: str) -> None:
        """``e2e.setRoomKeyID``: first writer wins (``setE2eKeyIdIfNotSet``)."""
        room, _ = self._member(room_id, user_id)
        if not isinstance(key_id, str) or not key_id:
            raise ValidationError("error-invalid-params", "key_id must be a non-empty string")
        if room.e2e_key_id is not None:
            raise E2EError("error-room-e2e-key-already-exists", "the room already has a key id")
        room.e2e_key_id = key_id
        self._key_made(room, key_id)

    def e2e_update_group_key(self, user_id: str, room_id: str, target_id: str, key: str) -> None:
        """``e2e.updateGroupKey``: own key directly; another member's as a suggestion.

        No check of the kid against the room's ``e2eKeyId`` (RC does none).  A caller without a
        subscription is a silent no-op, as in RC.
        """
        _check_wrapped(key)
        _check_id(user_id, "user_id")
        _check_id(target_id, "uid")
        room = self._rooms.get(room_id) if isinstance(room_id, str) else None
        if room is None or user_id not in room.subscriptions:
            return
        if target_id == user_id:
            room.subscriptions[user_id].e2e_key = key
            self._dequeue(room, [user_id])
            self._emit("stored", room_id, [user_id])
        elif (target := room.subscriptions.get(target_id)) is not None:
            if not self._entitled_to_wrapped(room, target, key):
                return  # policy ratchet: a joiner is handed a new session, not this key
            target.e2e_suggested_key = key
            target.suggestion_signer = target.suggestion_signature = None
            self._notify(room_id, [target_id])
            self._emit("suggested", room_id, [target_id])

    def e2e_get_users_of_room_without_key(self, user_id: str, room_id: str) -> list[dict[str, str]]:
        """``e2e.getUsersOfRoomWithoutKey``: members with no ``E2EKey`` who have a public key."""
        room, _ = self._member(room_id, user_id)
        out = []
        for uid, sub in room.subscriptions.items():
            public_key = self._users[uid].e2e_public_key
            if sub.e2e_key is None and public_key and self._entitled(room, sub, room.e2e_key_id):
                out.append({"_id": uid, "public_key": public_key})
        return out

    def e2e_fetch_users_waiting_for_group_key(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, list[dict[str, str]]]:
        """``e2e.fetchUsersWaitingForGroupKey``: per room, up to 50 members lacking both
        ``E2EKey`` and ``E2ESuggestedKey`` who have a public key (the caller excluded).

        It reads subscriptions, not the queue (``Subscriptions.findUsersWithPublicE2EKeyByRids``),
        and checks no membership of the caller (``apps/meteor/server/api/v1/e2e.ts``), unless
        ``e2e_fetch_checks_caller_access`` applies the open PR #41953: rooms the caller cannot
        access are dropped silently.
        """
        self.user(user_id)
        if not self.settings.e2e_enabled:
            return {}
        checks_access = self.settings.e2e_fetch_checks_caller_access
        out: dict[str, list[dict[str, str]]] = {}
        for rid in room_ids:
            room = self._rooms.get(rid) if isinstance(rid, str) else None
            if room is None:
                continue  # an unknown room yields nothing (the aggregate matches no subscription)
            if checks_access and user_id not in room.subscriptions:
                continue
            users = []
            for uid, sub in room.subscriptions.items():
                public_key = self._users[uid].e2e_public_key
                if (
                    uid != user_id
                    and sub.e2e_key is None
                    and sub.e2e_suggested_key is None
                    and public_key
                    and self._entitled(room, sub, room.e2e_key_id)
                ):
                    users.append({"_id": uid, "public_key": public_key})
                    if len(users) == MAX_WAITING_USERS:
                        break
            if users:
                out[rid] = users
        return out

    def e2e_provide_users_suggested_group_keys(
        self, user_id: str, keys: Mapping[str, Sequence[Mapping[str, Any]]], *, now: float
    ) -> None:
        """``e2e.provideUsersSuggestedGroupKeys``: store suggestions, dequeue the served users.

        ``keys`` maps a room id to entries ``{"_id", "key", "oldKeys"?}``; ``oldKeys`` is a list of
        ``{"e2eKeyId", "ts", "E2EKey"}``.  Rooms the caller cannot access are skipped; an existing
        suggestion (or even an existing ``E2EKey``) does not stop the write, as in RC.
        """
        self.user(user_id)
        if not self.settings.e2e_enabled:
            return
        if not isinstance(keys, Mapping):
            raise ValidationError("error-invalid-params", "keys must map room ids to lists")
        # Validate the whole request before writing anything (RC validates the body first).
        plan: list[tuple[Room, list[tuple[Subscription, str, list[OldRoomKey] | None, str | None]]]] = []
        for rid, entries in keys.items():
            if not isinstance(entries, list | tuple):
                raise ValidationError("error-invalid-params", f"keys[{rid!r}] must be a list")
            writes = []
            for entry in entries:
                if not isinstance(entry, Mapping):
                    raise ValidationError("error-invalid-params", "each key entry must be an object")
                target_id, key = entry.get("_id"), entry.get("key")
                _check_wrapped(key)
                assert isinstance(key, str)
                old = _old_keys(entry["oldKeys"]) if entry.get("oldKeys") is not None else None
                room = self._rooms.get(rid) if isinstance(rid, str) else None
                sub = (
                    room.subscriptions.get(target_id)
                    if room is not None and isinstance(target_id, str)
                    else None
                )
                signature = entry.get("signature")
                if signature is not None and not isinstance(signature, str):
                    raise ValidationError("error-invalid-params", "signature must be a string")
                if sub is not None and room is not None and self._entitled_to_wrapped(room, sub, key):
                    if old is not None and self.mechanisms.ratchet:  # only keys made since it joined
                        old = [k for k in old if self._entitled(room, sub, k.e2e_key_id)]
                    writes.append((sub, key, old, signature))
            room = self._rooms.get(rid) if isinstance(rid, str) else None
            if room is not None and user_id in room.subscriptions:  # canAccessRoom, else skip
                plan.append((room, writes))
        for room, writes in plan:
            for sub, key, old, signature in writes:
                sub.e2e_suggested_key = key
                if old is not None:
                    sub.suggested_old_room_keys = old
                # keysim extension: the server records who sent a signed suggestion
                sub.suggestion_signer = user_id if signature is not None else None
                sub.suggestion_signature = signature
            served = [w[0].user_id for w in writes]
            self._dequeue(room, served)
            self._notify(room.id, served)
            self._emit("suggested", room.id, served)

    def e2e_accept_suggested_group_key(self, user_id: str, room_id: str) -> None:
        """``e2e.acceptSuggestedGroupKey``: the suggestion becomes ``E2EKey``.

        The suggested old keys are copied only when ``oldRoomKeys`` is absent (an empty list
        counts as present), uncapped, exactly as RC.  Nothing is authenticated.
        """
        room, sub = self._suggestion(user_id, room_id)
        assert sub.e2e_suggested_key is not None
        sub.e2e_key = sub.e2e_suggested_key
        if sub.old_room_keys is None and sub.suggested_old_room_keys is not None:
            sub.old_room_keys = list(sub.suggested_old_room_keys)
        self._dequeue(room, [user_id])
        sub.e2e_suggested_key = sub.suggested_old_room_keys = None
        sub.suggestion_signer = sub.suggestion_signature = None
        self._emit("accepted", room_id, [user_id])

    def e2e_reject_suggested_group_key(self, user_id: str, room_id: str, *, now: float) -> None:
        """``e2e.rejectSuggestedGroupKey``: the suggestion is cleared and the user queued again."""
        _, sub = self._suggestion(user_id, room_id)
        self._enqueue([room_id], user_id, now)
        sub.e2e_suggested_key = sub.suggested_old_room_keys = None
        sub.suggestion_signer = sub.suggestion_signature = None

    def _suggestion(self, user_id: str, room_id: str) -> tuple[Room, Subscription]:
        self.user(user_id)
        room = self.room(room_id)
        sub = room.subscriptions.get(user_id)
        if sub is None:
            raise NotFoundError("error-subscription-not-found", f"{user_id!r} is not in {room_id!r}")
        suggested = (sub.e2e_suggested_key or "").strip()  # RC trims the suggestion
        if not suggested:
            raise E2EError("error-no-suggested-key-available", "no suggested key to handle")
        sub.e2e_suggested_key = suggested
        return room, sub

    def e2e_reset_room_key(
        self, user_id: str, room_id: str, e2e_key: str, e2e_key_id: str, *, now: float
    ) -> None:
        """``e2e.resetRoomKey`` (#33328): a new room key; every current ``E2EKey`` becomes an old key.

        Needs ``toggle-room-e2e-encryption``.  A per-room lock refuses a second reset while one is
        in progress; RC deletes it when the call ends, and only a call that fails the access
        check leaves it to expire after 10 s.  Every other member (holder or not, the first 50) is
        queued; the caller holds the new key at once.
        """
        room = self.room(room_id)
        self.user(user_id)
        if not self.has_permission(user_id, "toggle-room-e2e-encryption", room_id):
            raise PermissionDenied("error-not-allowed", "toggle-room-e2e-encryption is required")
        if now < room.reset_locked_until:
            raise E2EError("error-e2e-key-reset-in-progress", "a room key reset is in progress")
        if user_id not in room.subscriptions:
            room.reset_locked_until = now + ROOM_KEY_RESET_LOCK_SECONDS  # never released (RC)
            raise PermissionDenied("error-not-allowed", f"{user_id!r} cannot access {room_id!r}")
        caller = self._users[user_id]
        reason = None
        if caller.e2e_public_key is None or caller.e2e_private_key is None:
            reason = "error-user-has-no-keys"
        elif room.e2e_key_id is None:
            reason = "error-room-not-encrypted"
        elif not isinstance(e2e_key_id, str) or not e2e_key_id:
            reason = "error-invalid-params"
        if reason is not None:
            raise E2EError("error-e2e-key-reset-failed", reason)
        _check_wrapped(e2e_key)
        old_kid = room.e2e_key_id
        assert old_kid is not None
        queue: list[WaitingUser] = []
        for uid, sub in room.subscriptions.items():
            retire_key(sub, old_kid, now, keep=None if self.mechanisms.ratchet else MAX_OLD_ROOM_KEYS)
            sub.e2e_key = None
            if uid != user_id and len(queue) < MAX_WAITING_USERS:
                queue.append(WaitingUser(uid, now))
        room.e2e_key_id = e2e_key_id
        self._key_made(room, e2e_key_id)
        room.users_waiting = queue if self._queue_enabled else None
        room.subscriptions[user_id].e2e_key = e2e_key
        self._notify(room_id, list(room.subscriptions))
        self._emit("stored", room_id, [user_id])
        self._emit("queued", room_id, [w.user_id for w in queue])

    def e2e_rejoin_room(
        self, user_id: str, room_id: str, e2e_key_id: str, keys: Mapping[str, str], *, now: float
    ) -> None:
        """Policy ``rejoin`` (beyond RC): an MLS-style external commit.  A member that lost its
        key makes a new room key and hands it, wrapped, to itself and to every member whose public
        key it has (``keys``: user id -> wrapped key); the room moves to the new kid at once.

        MLS (RFC 9420 section 12.4.3.2, "Joining via External Commits") lets a client join or
        rejoin a group from its public GroupInfo without any member online; the new epoch's
        secret reaches the other members through the commit, which each processes when it next
        connects, and the rejoiner reads nothing sent before it.  Here each member's current
        ``E2EKey`` becomes an old key (its history stays readable), the key handed to it becomes its
        ``E2EKey``, and members handed nothing (no key pair yet) are queued.  Any member may do
        it (MLS's external-join policy), not only an owner as for ``e2e.resetRoomKey``.
        """
        if not self.mechanisms.rejoin:
            raise E2EError("error-not-allowed", f"rejoining needs policy 'rejoin', not {self.policy!r}")
        room, _ = self._member(room_id, user_id)
        caller = self.user(user_id)
        if caller.e2e_public_key is None or room.e2e_key_id is None:
            raise E2EError("error-e2e-key-reset-failed", "error-user-has-no-keys or not encrypted")
        self._new_epoch(room, user_id, e2e_key_id, keys, now, "rejoined")

    # ------------------------------------------------------------------ resetting a user's key

    def e2e_reset_own_key(
        self,
        user_id: str,
        code: str | None,
        *,
        now: float,
        login_token: str | None = None,
        method: str | None = None,
    ) -> None:
        """``e2e.resetOwnE2EKey``: behind the 2FA gate; see :meth:`_reset_user_e2e_key`."""
        self.twofactor.check(self.user(user_id), code, method=method, now=now, login_token=login_token)
        self._reset_user_e2e_key(user_id, now)

    def admin_reset_e2e_key(
        self, actor_id: str, user_id: str, code: str | None, *, now: float, login_token: str | None = None
    ) -> None:
        """``users.resetE2EKey`` (``apps/meteor/server/api/v1/users.ts``): 2FA of the caller (never
        remembered), and for another user the permission ``edit-other-user-e2ee``; since PR #29634
        (2023) not ``Enforce_Password_Fallback`` any more.  Resetting another user's key first
        e-mails its verified addresses (``sendResetNotification``: subject ``E2E_key_reset_email``,
        text ``Your_e2e_key_has_been_reset`` + ``E2E_Reset_Email_Content``; no setting turns it off,
        and RC aborts the reset if the mail cannot be sent, which keysim's outbox never refuses)."""
        actor = self.user(actor_id)
        target = self.user(user_id)
        self.twofactor.check(actor, code, now=now, login_token=login_token, disable_remember_me=True)
        if actor_id != user_id:
            if not self.has_permission(actor_id, "edit-other-user-e2ee"):
                raise PermissionDenied("error-not-allowed", "edit-other-user-e2ee is required")
            self._mail_notice(target, "E2E_key_reset_email", now)
        self._reset_user_e2e_key(user_id, now)

    def _mail_notice(self, target: User, subject: str, now: float) -> None:
        """A notice (no code) to ``target``'s verified addresses, if it has any."""
        if target.verified_emails:
            self.outbox.append(
                EmailMessage(
                    to=tuple(target.verified_emails), subject=subject, code="", sent_at=now, expires_at=now
                )
            )

    def _reset_user_e2e_key(self, user_id: str, now: float) -> None:
        """``resetUserE2EEncriptionKey`` (``apps/meteor/server/lib/resetUserE2EKey.ts``): forget
        the key pair, clear the user's room keys (``Subscriptions.resetUserE2EKey``: not
        ``suggestedOldRoomKeys``), take it off every room's queue (``Rooms.removeUserFromE2EEQueue``),
        and log it out everywhere.  Rooms are not re-keyed; other members keep their keys.  The
        user is queued again only when it uploads new keys
        (``e2e.setUserPublicAndPrivateKeys`` -> ``addUserIdToE2EEQueueByRoomIds``).  (The spec's
        section 3.4 queues it at the reset itself, as a review state of PR #32197 did; no
        released version has that.)
        """
        user = self.user(user_id)
        user.e2e_public_key = user.e2e_private_key = None
        mine = self.rooms_of(user_id)
        for rid in mine:
            sub = self._rooms[rid].subscriptions[user_id]
            sub.e2e_key = sub.e2e_suggested_key = None
            sub.old_room_keys = None
            sub.suggestion_signer = sub.suggestion_signature = None
        self._remove_from_every_queue(user_id)
        user.login_tokens.clear()
        self._drop_contacts(user_id)  # policy contacts: the sealed password opens nothing now
        self._forget_bundles(user_id)  # policy bundle: wrapped for the key pair just dropped

    # ------------------------------------------------------------------ live requests (legacy)

    def e2e_request_subscription_keys(self, user_id: str, room_id: str, *, now: float) -> list[KeyRequest]:
        """A legacy live key request for one room (``notify-room-users`` ``e2ekeyRequest``).

        It reaches only members connected at this moment (holding a session); nothing is stored.
        Returns the deliveries, which are also queued for :meth:`drain_notifications`.
        """
        room, sub = self._member(room_id, user_id)
        if not room.encrypted or room.e2e_key_id is None or sub.e2e_key is not None:
            return []
        if not self._entitled(room, sub, room.e2e_key_id):
            return []  # policy ratchet: nobody re-shares a session it never shared with a joiner
        deliveries = [
            KeyRequest(uid, room_id, user_id, room.e2e_key_id, now)
            for uid in room.subscriptions
            if uid != user_id and self._users[uid].login_tokens
        ]
        self._notifications.extend(deliveries)
        return deliveries

    # ------------------------------------------------------------------ key backup (policy "backup")

    def e2e_backup_set_public_key(self, user_id: str, public_key: str) -> None:
        """Register the public half of the user's recovery key (set once, like Matrix's backup
        version); the private half never reaches the server."""
        self._require_backup()
        user = self.user(user_id)
        if not isinstance(public_key, str) or not public_key:
            raise ValidationError("error-invalid-params", "public_key must be a non-empty string")
        if user.e2e_backup_public_key is not None:
            raise E2EError("error-keys-already-set", "the user already has a backup key")
        user.e2e_backup_public_key = public_key

    def e2e_backup_upload(self, user_id: str, room_id: str, key_id: str, wrapped: str) -> None:
        """Store one room key wrapped for the user's recovery key."""
        self._require_backup()
        self._member(room_id, user_id)
        _check_wrapped(wrapped)
        self._backups.setdefault((user_id, room_id), {})[key_id] = wrapped

    def e2e_backup_fetch(self, user_id: str, room_id: str) -> dict[str, str]:
        """The backed-up keys of one room: kid -> key wrapped for the recovery key."""
        self._require_backup()
        self._member(room_id, user_id)
        return dict(self._backups.get((user_id, room_id), {}))

    def _require_backup(self) -> None:
        if not self.mechanisms.backup:
            raise E2EError("error-not-allowed", f"key backup needs policy 'backup', not {self.policy!r}")

    def _e2e_dump(self) -> dict[str, list[dict[str, Any]]]:
        return {
            **self._rooms_dump(),
            "e2eKeyBackups": [
                {"userId": uid, "rid": rid, "keys": dict(keys)} for (uid, rid), keys in self._backups.items()
            ],
        }


def retire_key(sub: Subscription, old_kid: str, now: float, keep: int | None = MAX_OLD_ROOM_KEYS) -> None:
    """The room moved past ``old_kid``: ``sub``'s ``E2EKey`` joins its ``oldRoomKeys`` (newest
    first; ``keep`` of them, RC's 10, or all: Matrix keeps every session) and any pending
    suggestion is dropped."""
    if sub.e2e_key is not None:
        older = sorted(sub.old_room_keys or [], key=lambda k: k.ts, reverse=True)
        sub.old_room_keys = [OldRoomKey(old_kid, now, sub.e2e_key), *older][:keep]
    sub.e2e_suggested_key = sub.suggested_old_room_keys = None
    sub.suggestion_signer = sub.suggestion_signature = None


def _check_wrapped(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValidationError("error-invalid-params", "a wrapped key must be a non-empty string")


def _old_keys(value: object) -> list[OldRoomKey]:
    if not isinstance(value, list):
        raise ValidationError("error-invalid-params", "oldKeys must be a list")
    out = []
    for item in value:
        if not isinstance(item, Mapping):
            raise ValidationError("error-invalid-params", "each old key must be an object")
        kid, ts, key = item.get("e2eKeyId"), item.get("ts"), item.get("E2EKey")
        if not isinstance(kid, str) or not isinstance(ts, int | float) or isinstance(ts, bool):
            raise ValidationError("error-invalid-params", "old key needs e2eKeyId and ts")
        _check_wrapped(key)
        assert isinstance(key, str)
        out.append(OldRoomKey(kid, float(ts), key))
    return out


def _check_id(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise ValidationError("error-invalid-params", f"{name} must be a string")
