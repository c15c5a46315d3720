"""The users' devices in a run: 2FA codes, logging in and out, delivering the server's pushes
(through the faulty network, if any), and server restarts.

A device is a real :class:`protocol.Client`, made on the user's first login and dropped when
nobody follows the user any more; a login types the account password, the authenticator's code if
the user has TOTP, and the remembered E2EE password, and may have to wait for a fresh code
(:class:`~sim.engine.records.Wait`).  At the 2FA gate of a reset, a user without TOTP types its
password (RC's password fallback, ``apps/meteor/app/2fa/server/code/PasswordCheckFallback.ts``).

Everybody has a web client (the browser or the desktop app), logged out at the end of each
presence session: RC's ``stopClient`` wipes its keys, and the next login types the E2E password
again.  With ``devices.phone_fraction`` some people also have a phone running Rocket.Chat's
mobile app, with a presence of its own (the app's openings).  The app stays logged in between
openings and keeps the private key in its storage (Rocket.Chat.ReactNative,
``app/lib/encryption/encryption.ts``, ``persistKeys``), so while its session lasts the phone holds
the person's key even when the person forgot the password.  A key reset logs out every session
(``resetUserE2EKey.ts``: ``user.forceLogout``, ``Users.unsetLoginTokens``), the phone's too; it
signs in again at its first opening after the person's new keys exist.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from protocol import Client, E2EEState, Server
from protocol import totp as totp_lib
from protocol.crypto import CryptoBackend
from protocol.escrow import Vault
from protocol.ledger import KeyLedger
from protocol.room_server import SubscriptionChanged
from protocol.transport import Transport
from protocol.trust import KeyDirectory, Mitigations

from ..inputs.churn import PresenceModel
from ..inputs.streams import poisson, stream, stream_seed
from .clock import Clock
from .records import Device, Wait

__all__ = ["Devices"]


class Devices:
    """Every user's device and what the person behind it remembers (passwords, authenticator,
    recovery key).  ``devices[u]`` is user ``u``'s :class:`~sim.engine.records.Device`."""

    def __init__(
        self,
        clock: Clock,
        server: Server,
        presence: PresenceModel,
        user_ids: list[str],
        index: dict[str, int],
        *,
        seed: int,
        backend: CryptoBackend,
        ledger: KeyLedger,
        mitigations: Mitigations,
        directory: KeyDirectory,
    ) -> None:
        self.clock = clock
        self.server = server
        self.presence = presence
        #: the roster (read only here)
        self.user_ids = user_ids
        self.index = index
        self.seed = seed
        self.backend = backend
        self.ledger = ledger
        self.mitigations = mitigations
        self.directory = directory
        self._devices: list[Device] = []
        #: the E2E password each person remembers (None: it has none, or reset its key)
        self.e2e_password: list[str | None] = []
        #: the TOTP secret in each enrolled person's authenticator ("" while enrolling)
        self.totp_secret: dict[int, str] = {}
        self._last_step: dict[int, int] = {}
        #: the recovery key each person kept (server-side key backup)
        self.recovery_keys: dict[int, Any] = {}
        #: policy escrow: the PIN vault (set by the simulation), and each person's PIN
        self.vault: Vault | None = None
        self.escrow_pin: dict[int, str] = {}
        self._rng_pins = stream(seed, "escrow-pins")
        #: policy contacts: recovery contacts per person (0: the policy is off), and the people
        #: who forgot their E2E password and wait for a contact's answer
        self.contacts_per_user = 0
        self.forgotten: set[int] = set()
        self._rng_contacts = stream(seed, "contacts")
        #: set once every user has its first key pair (contacts need their contacts' keys)
        self.established = False
        self._client_seed = stream_seed(seed, "clients")
        #: the faulty network, from the moment the deployment is set up (None: a perfect one)
        self.transport: Transport | None = None
        self._delivery_at: float | None = None
        self.logins = 0
        self.server_restarts = 0
        #: policy dehydrated: each set-up person's recovery secret, when its current dehydrated
        #: device was made, and how often a client replaces it (days)
        self.dehydration_secret: dict[int, str] = {}
        self.dehydrated_at: dict[int, float] = {}
        self.dehydration_days = 7.0
        #: told when ``u``'s dehydrated device is due for replacement (Following)
        self.on_dehydration_due: Callable[[int], None] | None = None
        self._rng_secrets = stream(seed, "recovery-secrets")
        #: the phones, by owner, and when their apps are open (None: nobody has one)
        self.phones: dict[int, Device] = {}
        self.phone_presence: PresenceModel | None = None
        self.phone_logins = 0
        #: told when ``u`` made new keys (Following: its phone signs in again at its next opening)
        self.on_new_keys: Callable[[int], None] | None = None

    def __getitem__(self, u: int) -> Device:
        return self._devices[u]

    def __iter__(self) -> Iterator[Device]:
        return iter(self._devices)

    def __len__(self) -> int:
        return len(self._devices)

    def add(self, u: int, *, twofa: bool) -> None:
        """User ``u`` gets its device (no client yet); ``twofa``: it enrols TOTP once it has keys."""
        assert u == len(self._devices)
        self._devices.append(Device())
        self.e2e_password.append(None)
        if twofa:
            self.totp_secret[u] = ""

    def enrol_totp(self, u: int, now: float) -> None:
        uid = self.user_ids[u]
        enrollment = self.server.totp_enable(uid, now=now)
        self.server.totp_validate_temp_token(uid, totp_lib.totp(enrollment.secret, now), now=now)
        self.totp_secret[u] = enrollment.secret
        self._last_step[u] = 0

    def lose_authenticator(self, u: int) -> bool:
        """The person loses its authenticator; False if it had none (left)."""
        if u not in self.totp_secret:
            return False
        self.totp_secret.pop(u, None)
        self._last_step.pop(u, None)
        return True

    # -- codes

    def add_phone(self, u: int) -> None:
        """``u`` also has a phone (its client is made at its first login)."""
        self.phones[u] = Device()

    def _new_client(self, u: int, *, phone: bool = False) -> Client:
        # the n-th client of user u draws from its own stream: what other concerns do (traffic,
        # other users' logins) never shifts it
        dev = self.phones[u] if phone else self._devices[u]
        dev.clients_made += 1
        label = f"u{u}/phone/{dev.clients_made}" if phone else f"u{u}/{dev.clients_made}"
        entropy = random.Random(stream_seed(self._client_seed, label))
        client = Client(
            self.server,
            self.user_ids[u],
            self.backend,
            entropy=entropy,
            ledger=self.ledger,
            mitigations=self.mitigations,
            directory=self.directory,
            app="mobile" if phone else "web",
        )
        client.transport = self.transport
        return client

    def _totp(self, u: int, now: float) -> str | None:
        """The authenticator's code.  A person whose code of this step was already used waits
        for the next one (the hardened profile refuses a replay); the wait of at most 30 s is
        not simulated, the next step's code is accepted inside the window."""
        secret = self.totp_secret.get(u)
        if not secret:
            return None
        step = totp_lib.time_step(now)
        if self.server.profile.reject_replay:
            step = max(step, self._last_step.get(u, -1) + 1)
        self._last_step[u] = step
        return totp_lib.hotp(secret, step)

    def code_ready_at(self, u: int, now: float) -> float:
        """When the person next has an unused code inside the window (hardened: T-1..T+1)."""
        if not self.totp_secret.get(u) or not self.server.profile.reject_replay:
            return now
        return max(now, float(self._last_step.get(u, -1)) * 30.0)

    def code(self, u: int, now: float) -> str | None:
        """What the person types at a 2FA prompt: its authenticator's code, else (RC's password
        fallback) its account password."""
        code = self._totp(u, now)
        return code if code is not None else f"pw-u{u}"

    # -- logging in and out

    def login(self, u: int, now: float, *, unlock: bool = True, fresh: bool = False) -> Client:
        """Log user ``u`` in on its device; unlock E2EE with the remembered password.

        Under the hardened profile a person who already used this step's and the next step's
        codes must wait for a fresh one: :class:`~sim.engine.records.Wait` says until when.
        """
        dev = self._devices[u]
        if dev.client is None:
            dev.client = self._new_client(u)
        client = dev.client
        if client.online:
            return client
        if now < dev.locked_until:  # locked out (lost authenticator) until an admin acts
            raise Wait(dev.locked_until)
        ready = self.code_ready_at(u, now)
        if ready > now:
            raise Wait(ready)
        self.logins += 1
        client.login(f"pw-u{u}", now=now, code=self._totp(u, now))
        if client.state == E2EEState.SAVE_PASSWORD:
            self.e2e_password[u] = client.random_password
            if self.vault is not None:  # a new password: the person escrows it behind a new PIN
                pin = f"{self._rng_pins.randrange(10**6):06d}"
                client.escrow_password(self.vault, pin)
                self.escrow_pin[u] = pin
            if self.contacts_per_user and self.established:
                self.enrol_contacts(u, client.random_password or "")
            client.confirm_password_saved()
            assert client.public_key is not None  # new keys: the person shares the fingerprint
            self.directory.publish(self.user_ids[u], self.backend.fingerprint(client.public_key))
            if client.recovery_key is not None:
                self.recovery_keys[u] = client.recovery_key
            if u in self.phones and self.on_new_keys is not None:
                self.on_new_keys(u)
            if u in self.dehydration_secret and u not in self.dehydrated_at:  # its first keys
                self.dehydrate(u, client, now)
        elif client.state == E2EEState.ENTER_PASSWORD and unlock and u not in self.forgotten:
            password = self.e2e_password[u]
            if password is None or not client.enter_password(password, now=now):
                raise RuntimeError(f"u{u} cannot unlock its keys")
        # The distribution loop's phase comes from when the device really logged in: now for a
        # fresh login (a relogin after a reset), else the start of the presence session the
        # simulator joins late (RC runs the first tick at login, then every 10 s)
        dev.login_at = (
            now if fresh or not self.presence.is_online(u, now) else self.presence.session_start(u, now)
        )
        return client

    def set_up_dehydration(self, u: int) -> None:
        """Policy dehydrated: ``u`` sets up recovery (a new recovery secret)."""
        self.dehydration_secret[u] = f"recovery-u{u}-{self._rng_secrets.getrandbits(64):016x}"

    def dehydrate(self, u: int, client: Client, now: float) -> None:
        """``u``'s client makes a new dehydrated device (replacing the old one); the next is
        due ``dehydration_days`` later."""
        client.dehydrate(self.dehydration_secret[u], now=now)
        self.made_dehydrated(u, now)

    def made_dehydrated(self, u: int, now: float) -> None:
        """``u``'s current dehydrated device was made now (by :meth:`dehydrate`, or by a
        rehydration, which makes the next one)."""
        self.dehydrated_at[u] = now
        due = now + self.dehydration_days * 86400.0
        if due < self.clock.horizon:
            self.clock.at(due, self._dehydration_due, u, now)

    def _dehydration_due(self, u: int, made: float) -> None:
        if self.dehydrated_at.get(u) == made and self.on_dehydration_due is not None:
            self.on_dehydration_due(u)

    def dehydration_due(self, u: int, client: Client, now: float) -> None:
        """A client replaces its dehydrated device once it is ``dehydration_days`` old
        (matrix-js-sdk ``DEHYDRATION_INTERVAL``: on a timer while the client runs; keysim logs
        the person in at its first online moment after that, and replaces it then)."""
        made = self.dehydrated_at.get(u)
        if made is not None and now - made >= self.dehydration_days * 86400.0 - 1e-6 and client.functional:
            self.dehydrate(u, client, now)

    def protect_changed_password(self, u: int, password: str) -> None:
        """``u`` changed its E2E password: under policy escrow it escrows the new one behind a
        new PIN, under policy contacts it shares it with its contacts again (the old shares
        open a password that no longer unlocks anything)."""
        if self.vault is not None:
            pin = f"{self._rng_pins.randrange(10**6):06d}"
            self.vault.enrol(self.user_ids[u], pin, password)
            self.escrow_pin[u] = pin
        if self.contacts_per_user:
            self.enrol_contacts(u, password)

    def login_phone(self, u: int, now: float) -> Client | None:
        """``u``'s phone app opens: logged in still, or it signs in again (after a reset logged
        it out) with the password of the person's current keys.  None: it cannot, as nobody
        has made new keys yet, or the person forgot the password (it opens again after the next
        new keys)."""
        dev = self.phones[u]
        client = dev.client
        if client is not None and client.online:
            return client
        password = self.e2e_password[u]
        if password is None or u in self.forgotten or not self.server.user(self.user_ids[u]).e2e_public_key:
            return None
        if now < self._devices[u].locked_until:
            raise Wait(self._devices[u].locked_until)
        ready = self.code_ready_at(u, now)
        if ready > now:
            raise Wait(ready)
        client = dev.client = self._new_client(u, phone=True)
        self.phone_logins += 1
        client.login(f"pw-u{u}", now=now, code=self._totp(u, now))
        if client.state != E2EEState.ENTER_PASSWORD or not client.enter_password(password, now=now):
            raise RuntimeError(f"u{u}'s phone cannot unlock its keys")
        dev.login_at = now
        return client

    def phone_holds_key(self, u: int) -> bool:
        """Whether ``u``'s phone is logged in with the person's private key."""
        dev = self.phones.get(u)
        return dev is not None and dev.client is not None and dev.client.functional

    def reachable(self, u: int, now: float) -> bool:
        """Whether ``u`` is online now on any of its devices (the phone only while logged in)."""
        if self.presence.is_online(u, now):
            return True
        return (
            self.phone_presence is not None
            and self.phone_holds_key(u)
            and self.phone_presence.is_online(u, now)
        )

    def enrol_contacts(self, u: int, password: str) -> list[str]:
        """Policy contacts: ``u`` names its recovery contacts, people it shares rooms with first
        (in a random order), then anybody, and shares its E2E password with them."""
        uid, server = self.user_ids[u], self.server
        client = self._devices[u].client
        assert client is not None
        peers = list(dict.fromkeys(m for rid in server.rooms_of(uid) for m in server.room(rid).subscriptions))
        peers = [m for m in peers if m != uid]
        rng, k = self._rng_contacts, min(self.contacts_per_user, len(self.user_ids) - 1)
        rng.shuffle(peers)
        chosen = peers[:k]
        while len(chosen) < k:
            other = self.user_ids[rng.randrange(len(self.user_ids))]
            if other != uid and other not in chosen:
                chosen.append(other)
        return client.enrol_recovery_contacts(chosen, password)

    def logout(self, u: int, now: float) -> None:
        dev = self._devices[u]
        if dev.client is not None and dev.client.online:
            dev.client.logout()
        dev.online_until = -1.0
        dev.ticking = False
        self.pump(now)

    def online(self, u: int) -> bool:
        client = self._devices[u].client
        return client is not None and client.online

    def signed_out(self, u: int) -> None:
        """``u``'s key was reset by an admin: its login tokens are gone, the device is dropped."""
        dev = self._devices[u]
        if dev.client is not None and dev.client.online:
            dev.client.logout()
        dev.client = None
        self._phone_signed_out(u)

    def key_gone(self, u: int, now: float) -> None:
        """``u``'s key pair is gone (and with it the E2E password it remembered): its device is
        signed out."""
        self.e2e_password[u] = None
        dev = self._devices[u]
        dev.online_until = -1.0
        dev.ticking = False
        self._phone_signed_out(u)
        self.pump(now)

    def _phone_signed_out(self, u: int) -> None:
        """The reset logged ``u``'s phone out with every other session: its app's keys are gone."""
        phone = self.phones.get(u)
        if phone is not None:
            if phone.client is not None and phone.client.login_token is not None:
                phone.client.logout()  # the server ended its session: the app wipes its keys
            phone.connected = phone.ticking = False
            phone.online_until = -1.0

    # -- the network

    def pump(self, now: float) -> None:
        """Deliver the server's pushes to the devices online now (through the faulty network, if
        any); traffic it holds back is delivered by a later event."""
        transport = self.transport
        for _ in range(1000):
            if transport is None:
                pending = self.server.drain_notifications()
            else:
                pending = transport.deliver(now) + transport.pushes(now)
            if not pending:
                break
            for note in pending:
                u = self.index[note.recipient_id]
                for client in self._clients_reached(u):
                    if (
                        transport is not None
                        and isinstance(note, SubscriptionChanged)
                        and transport.crashes()
                    ):
                        client.crash()  # the device dies before handling the push
                        continue
                    client.notify(note, now=now)
        else:
            raise RuntimeError("pushes did not settle")
        if transport is not None and transport.next_due is not None:
            due = transport.next_due
            if self._delivery_at is None or due < self._delivery_at:
                self._delivery_at = due
                self.clock.at(due, self._deliver_held)

    def _clients_reached(self, u: int) -> list[Client]:
        """``u``'s clients a push reaches now: the logged-in web client, and the phone while its
        app is open."""
        out = []
        client = self._devices[u].client
        if client is not None and client.online:
            out.append(client)
        phone = self.phones.get(u)
        if phone is not None and phone.connected and phone.client is not None and phone.client.online:
            out.append(phone.client)
        return out

    def _deliver_held(self) -> None:
        self._delivery_at = None
        self.pump(self.clock.now)

    def schedule_restarts(self, rate_per_day: float) -> None:
        rng = stream(self.seed, "restarts")
        horizon = self.clock.horizon
        count = poisson(rng, rate_per_day * horizon / 86400.0)
        for t in sorted(rng.uniform(0, horizon) for _ in range(count)):
            self.clock.at(t, self._restart_server)

    def _restart_server(self) -> None:
        """The server restarts from its documents; connected devices reconnect and resync."""
        self.server_restarts += 1
        self.server.restart()
        now = self.clock.now
        for u in range(len(self._devices)):
            for client in self._clients_reached(u):
                client.sync(now=now)
        self.pump(now)
