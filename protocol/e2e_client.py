"""End-to-end encryption, client side: one device of one user.

Theory of operation.  A :class:`Client` is Rocket.Chat's web client E2EE module
(``apps/meteor/client/lib/e2ee/rocketchat.e2e.ts``) and its per-room machines
(``rocketchat.e2e.room.ts``), without I/O: it calls the :class:`~protocol.Server` directly, as a
transport would, and every call takes ``now``.  What the *person* knows (account password, E2E
password, 2FA codes, a recovery key) is passed in by the caller; what the *device* keeps (the
unlocked private key, room keys) is wiped at logout, as RC wipes it at every logout.

Two machines, both tables:

* the global :class:`E2EEState`, driven by :data:`GLOBAL_TRANSITIONS`, ``(state, event) -> state``;
  a miss raises :class:`~protocol.errors.E2EError` (``error-invalid-state``).  The client decrypts,
  creates and serves keys only in READY or SAVE_PASSWORD (RC ``isReady()``).
* one :class:`E2ERoomState` per room, moved through :data:`ROOM_MUTATIONS`, RC's
  ``permitedMutations`` copied exactly, with RC's ``filterMutation`` semantics: a state absent from
  the table may move anywhere, a refused move is ignored (RC logs it and carries on).

Server pushes (:class:`~protocol.e2e_server.SubscriptionChanged`, live
:class:`~protocol.e2e_server.KeyRequest`) reach a connected client through :meth:`Client.notify`.
The key-distribution loop is :meth:`Client.tick`, which a driver calls every 10 s while there is
work (RC PR #32197).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .crypto import CryptoBackend, PrivateKey, RoomKey, generate_passphrase
from .e2e_history import HistoryMixin
from .e2e_recovery import RecoveryMixin
from .e2e_rooms import RoomsMixin
from .e2e_states import (
    GLOBAL_TRANSITIONS,
    ROOM_MUTATIONS,
    ROOMS_PER_TICK,
    TICK_SECONDS,
    E2EEState,
    E2ERoomState,
    KeyAcquired,
    LocalState,
    RoomSession,
)
from .entropy import Entropy, default_entropy
from .errors import CryptoError, E2EError, ProtocolError, ValidationError
from .escrow import Vault
from .ledger import KeyLedger
from .rooms import Message
from .server import Server
from .transport import Transport
from .trust import KeyDirectory, Mitigations, recovery_request_id

R = E2ERoomState

__all__ = [
    "APPS",
    "GLOBAL_TRANSITIONS",
    "ROOMS_PER_TICK",
    "ROOM_MUTATIONS",
    "TICK_SECONDS",
    "Client",
    "E2EEState",
    "E2ERoomState",
    "KeyAcquired",
    "RoomSession",
]

#: the Rocket.Chat apps a device may run
APPS = ("web", "mobile")


class Client(RoomsMixin, RecoveryMixin, HistoryMixin):
    def __init__(
        self,
        server: Server,
        user_id: str,
        backend: CryptoBackend,
        *,
        entropy: Entropy | None = None,
        ledger: KeyLedger | None = None,
        mitigations: Mitigations | None = None,
        directory: KeyDirectory | None = None,
        app: str = "web",
    ) -> None:
        server.user(user_id)
        if app not in APPS:
            raise ValidationError(message=f"app must be one of {', '.join(APPS)}, got {app!r}")
        self.server = server
        self.user_id = user_id
        self.backend = backend
        self.entropy = entropy if entropy is not None else default_entropy()
        self.ledger = ledger
        #: the network to the server for fire-and-forget requests; None is a perfect one
        self.transport: Transport | None = None
        #: opt-in defences against a malicious server (:mod:`protocol.trust`); none by default
        self.mitigations = mitigations if mitigations is not None else Mitigations()
        self.directory = directory
        #: which Rocket.Chat app the device runs: ``"web"`` (browser or desktop app) or
        #: ``"mobile"`` (Rocket.Chat.ReactNative, which still answers live key requests)
        self.app = app
        self.state = E2EEState.NOT_STARTED
        self._local = LocalState()
        #: ``localStorage['e2e.randomPassword']``: the generated E2E password until the person
        #: confirms it was saved; it survives logout on this device (RC ``stopClient``).
        self.random_password: str | None = None
        #: policy ``backup``: the recovery key made with the first keys; the person must keep it.
        self.recovery_key: PrivateKey | None = None
        #: policy ``contacts``: the one-time key of an open request to recovery contacts; it
        #: survives logout on this device, like ``random_password``
        self.contact_request_key: PrivateKey | None = None
        #: every key this device obtained, in order
        self.acquired: list[KeyAcquired] = []
        #: (room id, message id, kid) of every message this device decrypted
        self.decrypted: list[tuple[str, str, str]] = []
        #: (room id, message id, plaintext) of every message this device sent
        self.sent: list[tuple[str, str, str]] = []
        #: when this user reset its key from this device, and how long ``acquired`` was then
        self.resets: list[float] = []
        self.reset_marks: list[int] = []
        self._backed_up: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ views

    @property
    def online(self) -> bool:
        token = self._local.login_token
        return token is not None and self.server.is_logged_in(self.user_id, token)

    @property
    def login_token(self) -> str | None:
        return self._local.login_token

    @property
    def functional(self) -> bool:
        """RC ``isReady()``: READY or SAVE_PASSWORD, and still logged in."""
        return self.state in (E2EEState.READY, E2EEState.SAVE_PASSWORD) and self.online

    @property
    def public_key(self) -> str | None:
        return self._local.public_key

    @property
    def private_key(self) -> PrivateKey | None:
        return self._local.private_key

    def session(self, room_id: str) -> RoomSession | None:
        return self._local.rooms.get(room_id)

    @property
    def backed_up(self) -> frozenset[tuple[str, str]]:
        """Policy ``backup``: the (room id, kid) pairs this device has stored in the backup."""
        return frozenset(self._backed_up)

    def session_room_ids(self) -> list[str]:
        """The rooms this device has a session for."""
        return list(self._local.rooms)

    def room_state(self, room_id: str) -> E2ERoomState | None:
        session = self._local.rooms.get(room_id)
        return session.state if session is not None else None

    def held_keys(self, room_id: str) -> dict[str, RoomKey]:
        """kid -> key for every key of ``room_id`` this device holds now."""
        session = self._local.rooms.get(room_id)
        if session is None:
            return {}
        out = {kid: key for kid, (key, _) in (session.old_keys or {}).items()}
        if session.key is not None and session.key_id is not None:
            out[session.key_id] = session.key
        return out

    def holds_current_key(self, room_id: str) -> bool:
        """Whether this device can read and write ``room_id`` under the room's current key."""
        session = self._local.rooms.get(room_id)
        room = self.server.room(room_id)
        kid = room.e2e_key_id
        return (
            self.user_id in room.subscriptions
            and session is not None
            and session.key is not None
            and kid is not None
            and session.key.kid == kid
            and session.state == E2ERoomState.READY
        )

    # ------------------------------------------------------------------ global machine

    def _fire(self, event: str) -> None:
        try:
            self.state = GLOBAL_TRANSITIONS[(self.state, event)]
        except KeyError:
            raise E2EError(
                "error-invalid-state", f"E2EE state {self.state.value} does not accept {event!r}"
            ) from None

    def login(self, password: str, *, now: float, code: str | None = None, method: str | None = None) -> None:
        """Log in (password and second factor) and start E2EE (``startClient``)."""
        if self.online:
            raise E2EError("error-invalid-state", "already logged in on this device")
        self._local = LocalState(
            login_token=self.server.login(self.user_id, password, now=now, code=code, method=method)
        )
        self.state = E2EEState.NOT_STARTED
        if not self.server.settings.e2e_enabled:
            self._fire("disable")
            return
        self._fire("start")
        keys = self.server.e2e_fetch_my_keys(self.user_id)
        if keys:
            self._local.public_key = keys["public_key"]
            self._fire("keys_found")
            return
        self._create_keys(now)

    def _create_keys(self, now: float) -> None:
        """``createAndLoadKeys`` + ``persistKeys``: a new pair and a new 12-word password."""
        pair = self.backend.generate_key_pair(self.entropy)
        password = generate_passphrase(self.entropy)
        blob = self.backend.encrypt_private_key(
            pair.private_key, user_id=self.user_id, password=password, entropy=self.entropy
        )
        try:
            self.server.e2e_set_user_public_and_private_keys(self.user_id, pair.public_key, blob, now=now)
        except ProtocolError:
            self._fire("upload_failed")
            raise
        self._local.private_key, self._local.public_key = pair.private_key, pair.public_key
        self.random_password = password
        if self.server.mechanisms.backup and self.server.user(self.user_id).e2e_backup_public_key is None:
            recovery = self.backend.generate_key_pair(self.entropy)
            self.server.e2e_backup_set_public_key(self.user_id, recovery.public_key)
            self.recovery_key = recovery.private_key
        self._fire("keys_created")
        self._on_ready(now)

    def enter_password(self, password: str, *, now: float) -> bool:
        """Unlock the stored private key; a wrong password leaves E2EE off (``ENTER_PASSWORD``)."""
        if self.state != E2EEState.ENTER_PASSWORD or not self.online:
            raise E2EError("error-invalid-state", f"no password is expected in state {self.state.value}")
        blob = self.server.e2e_fetch_my_keys(self.user_id).get("private_key")
        if blob is None:
            raise E2EError("error-invalid-state", "the server holds no private key for this user")
        try:
            private_key = self.backend.decrypt_private_key(blob, user_id=self.user_id, password=password)
        except CryptoError:
            self._fire("password_wrong")
            return False
        self._local.private_key = private_key
        # rocketchat.e2e.ts, decodePrivateKeyFlow: loadKeys({ public_key: this.db_public_key,
        # private_key }): the public key is the server's answer to e2e.fetchMyKeys, never checked
        # against the private key; under verify_fingerprints the client derives its own instead
        own = self.backend.public_key_text(private_key)
        fetched = self._local.public_key
        if self.mitigations.verify_fingerprints or not fetched:
            self._local.public_key = own
        self._fire("unlocked_unsaved" if self.random_password is not None else "unlocked")
        self._on_ready(now)
        return True

    def escrow_password(self, vault: Vault, pin: str) -> None:
        """Policy ``escrow``: put the E2E password just generated in ``vault`` behind ``pin``
        (before :meth:`confirm_password_saved`, while the client still shows it)."""
        if self.random_password is None:
            raise E2EError("error-invalid-state", "no newly generated E2E password to escrow")
        vault.enrol(self.user_id, pin, self.random_password)

    def unlock_from_escrow(self, vault: Vault, pin: str, *, now: float) -> bool:
        """Policy ``escrow``: a person who forgot its E2E password gets it back from ``vault``
        with its PIN and unlocks the same key pair (every room, history included).

        A wrong PIN raises :class:`~protocol.escrow.EscrowError` (one guess spent), a missing
        record ``error-escrow-not-found``; False if the released password does not open the
        stored private key (it was changed since it was escrowed)."""
        if self.state != E2EEState.ENTER_PASSWORD or not self.online:
            raise E2EError("error-invalid-state", f"no password is expected in state {self.state.value}")
        return self.enter_password(vault.recover(self.user_id, pin), now=now)

    def enrol_recovery_contacts(self, contact_ids: list[str], password: str) -> list[str]:
        """Policy ``contacts``: seal the E2E ``password`` (the person types it in the set-up
        dialog) under a fresh secret and wrap the secret for each contact with a key pair this
        device trusts; returns those contacts (none: nothing is stored).  The password is not
        checked against the stored private key here (a PBKDF2 run); a wrong one makes the
        recovery fail later.  See :mod:`protocol.contacts_server`."""
        self._require_functional()
        if not isinstance(password, str) or not password:
            raise ValidationError(message="password must be a non-empty string")
        secret = self.backend.generate_room_key(self.entropy)
        shares = {}
        for contact_id in contact_ids:
            public_key = self.server.user(contact_id).e2e_public_key
            if contact_id != self.user_id and public_key and self._trusted(contact_id, public_key):
                shares[contact_id] = self.backend.wrap_room_key(secret, public_key, self.entropy)
        if shares:
            sealed = self.backend.encrypt_message(secret, {"msg": password}, self.entropy)
            self.server.e2e_contacts_set(self.user_id, sealed, shares)
        return list(shares)

    def request_contact_recovery(self) -> None:
        """Policy ``contacts``: a person who forgot its E2E password asks its contacts from this
        device, with a one-time key pair the device keeps until it is answered."""
        if self.state != E2EEState.ENTER_PASSWORD or not self.online:
            raise E2EError("error-invalid-state", f"no password is expected in state {self.state.value}")
        pair = self.backend.generate_key_pair(self.entropy)
        if self.directory is not None:  # the person reads the key's fingerprint to its contacts
            self.directory.publish(
                recovery_request_id(self.user_id), self.backend.fingerprint(pair.public_key)
            )
        self.server.e2e_contacts_request(self.user_id, pair.public_key)
        self.contact_request_key = pair.private_key

    def answer_recovery_requests(self, *, now: float) -> list[str]:
        """Policy ``contacts``: as a contact, answer every open request this device can open a
        share of; returns the people answered."""
        self._require_functional()
        assert self._local.private_key is not None
        answered = []
        for request in self.server.e2e_contacts_pending(self.user_id):
            if self.mitigations.verify_fingerprints and not self._confirmed_request(request):
                continue  # mitigation: a one-time key the person did not confirm out of band
            try:
                secret = self.backend.unwrap_room_key(request["share"], self._local.private_key)
            except CryptoError:
                continue  # a share for a key pair this contact has reset since
            wrapped = self.backend.wrap_room_key(secret, request["publicKey"], self.entropy)
            self._post(now, "e2e_contacts_answer", self.user_id, request["userId"], wrapped)
            answered.append(request["userId"])
        return answered

    def _confirmed_request(self, request: Mapping[str, str]) -> bool:
        """Whether the person gave this contact the request's one-time key fingerprint out of
        band (the mitigation ``fingerprints``)."""
        if self.directory is None:
            return False
        try:
            fingerprint = self.backend.fingerprint(request["publicKey"])
        except CryptoError:
            return False
        return self.directory.vouches(recovery_request_id(request["userId"]), fingerprint)

    def unlock_from_contacts(self, *, now: float) -> str | None:
        """Policy ``contacts``: open a contact's answer with the one-time key, then the sealed
        password, and unlock the same key pair; returns the password (None while nobody has
        answered, or if what came back does not open the key)."""
        if self.state != E2EEState.ENTER_PASSWORD or not self.online:
            raise E2EError("error-invalid-state", f"no password is expected in state {self.state.value}")
        if self.contact_request_key is None:
            return None
        got = self.server.e2e_contacts_fetch(self.user_id)
        if got["answer"] is None:
            return None
        try:
            secret = self.backend.unwrap_room_key(got["answer"], self.contact_request_key)
            password = self.backend.decrypt_message(got["sealed"], secret)["msg"]
        except CryptoError:
            return None
        if not isinstance(password, str) or not self.enter_password(password, now=now):
            return None
        self.contact_request_key = None
        return password

    def confirm_password_saved(self) -> None:
        """The person confirms the generated password is saved (SaveE2EPasswordModal)."""
        self._fire("password_saved")
        self.random_password = None

    def change_password(self, new_password: str, *, now: float) -> None:
        """Re-wrap the same private key (always v2) and upload it with ``force``.

        Room keys are untouched; the server re-queues the user where it lacks an ``E2EKey``.
        """
        self._require_functional()
        assert self._local.private_key is not None and self._local.public_key is not None
        blob = self.backend.encrypt_private_key(
            self._local.private_key, user_id=self.user_id, password=new_password, entropy=self.entropy
        )
        self.server.e2e_set_user_public_and_private_keys(
            self.user_id, self._local.public_key, blob, force=True, now=now
        )
        if self.random_password is not None:
            self.random_password = new_password

    def reset_own_key(self, code: str | None, *, now: float, method: str | None = None) -> None:
        """``e2e.resetOwnE2EKey`` behind 2FA: the server forgets the key pair and logs the user out
        everywhere, this device included.  The next login makes new keys and a new password."""
        if not self.online:
            raise E2EError("error-invalid-state", "log in first")
        self.server.e2e_reset_own_key(
            self.user_id, code, now=now, login_token=self._local.login_token, method=method
        )
        self.random_password = None
        self.resets.append(now)
        self.reset_marks.append(len(self.acquired))
        self._wipe()

    def logout(self) -> None:
        """Log out; the device forgets its private key and room keys (RC ``stopClient``)."""
        token = self._local.login_token
        if token is not None:
            self.server.logout(self.user_id, token)
        self._wipe()

    def crash(self) -> None:
        """The device dies between two steps of a flow: it forgets everything and says nothing
        to the server, whose session stays open until it expires."""
        self._wipe()

    def _post(self, at: float, method: str, /, *args: Any, **kwargs: Any) -> None:
        """A fire-and-forget request, through the transport when there is one.  An error answer
        is only logged by RC's client (``.catch(log)``), so it changes nothing here either."""
        if self.transport is None:
            try:
                getattr(self.server, method)(*args, **kwargs)
            except ProtocolError:
                return
        else:
            self.transport.post(method, args, kwargs, now=at)

    def _wipe(self) -> None:
        self._local = LocalState()
        self._fire("logout")

    def _require_functional(self) -> None:
        if not self.functional:
            raise E2EError("error-invalid-state", f"E2EE is not ready (state {self.state.value})")

    # ------------------------------------------------------------------ messages

    def send(self, room_id: str, text: str, *, now: float) -> str:
        """Encrypt ``text`` under the room key and send it; returns the message id."""
        self._require_functional()
        session = self._local.rooms.get(room_id)
        if session is None or session.state != R.READY or session.key is None:
            raise E2EError("error-invalid-state", f"room {room_id!r} has no usable key on this device")
        if self.server.mechanisms.ratchet and self.server.e2e_session_due(self.user_id, room_id):
            self.start_session(room_id, now=now)  # a member joined: the next index is a new key
        key = self._current(session)
        self._share_with_dehydrated(room_id, key, now)
        content = self.backend.encrypt_message(key, {"msg": text}, self.entropy)
        message_id = self.server.send_message(self.user_id, room_id, content=content, now=now)
        self.sent.append((room_id, message_id, text))
        return message_id

    def decrypt(self, message: Message) -> dict[str, Any] | None:
        """The plaintext of ``message``, or None when this device cannot open it.

        ``retrieveDecryptionKey``: the old key with the message's kid, else the current key.  A
        legacy message (v1 ciphertext in ``msg``, no ``content``) is read as that v1 content
        (:meth:`~protocol.rooms.Message.e2e_content`), and an old client's body ``{text, ...}``
        becomes ``{msg, ...}`` as RC's ``decrypt`` returns it (rocketchat.e2e.room.ts).
        """
        content = message.e2e_content()
        if content is None:
            return {"msg": message.msg}
        session = self._local.rooms.get(message.rid)
        if not self.functional or session is None:
            return None
        try:
            kid = self.backend.message_kid(content)
        except ProtocolError:
            return None
        old = (session.old_keys or {}).get(kid)
        key = old[0] if old is not None else session.key
        if key is None:
            return None
        try:
            plaintext = self.backend.decrypt_message(content, key)
        except CryptoError:
            return None
        self.decrypted.append((message.rid, message.id, key.kid))
        if "msg" not in plaintext and isinstance(plaintext.get("text"), str):
            # RC decrypt: ``if ('text' in ret && ... && !('msg' in ret)) return { msg: text, ...rest }``
            text = plaintext.pop("text")
            plaintext = {"msg": text, **plaintext}
        return plaintext
