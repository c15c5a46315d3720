"""A deployment: one server, one client per device, and the transport between them.

:class:`Deployment` is the harness that tests, the simulator and ``keysim check`` share.  It
creates users with their clients, remembers what each *person* knows (account password, E2E
password, recovery key), and delivers the server's pushes to the devices connected at that
moment (:meth:`Deployment.pump`), which is what makes the ``live`` policy depend on co-presence.
It is sans-IO like the rest of :mod:`protocol`: time is the ``now`` argument.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .adversary import AdversarialServer, Attacks
from .crypto import CryptoBackend, PrivateKey, get_backend
from .e2e_client import Client
from .ledger import KeyLedger
from .room_server import SubscriptionChanged
from .server import Server
from .settings import Settings
from .transport import FaultModel, Transport
from .trust import KeyDirectory, Mitigations

__all__ = ["Deployment", "Person"]


@dataclass(slots=True)
class Person:
    """What a human keeps outside any device."""

    username: str
    account_password: str
    e2e_password: str | None = None
    recovery_key: PrivateKey | None = None
    backup_codes: list[str] = field(default_factory=list)


class Deployment:
    def __init__(
        self,
        *,
        policy: str = "queue",
        crypto: str | CryptoBackend = "symbolic",
        seed: int = 0,
        settings: Settings | None = None,
        profile: str = "rocketchat",
        attacks: Attacks | None = None,
        mitigations: str | Mitigations = "none",
        faults: FaultModel | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(
                e2e_enabled=True,
                e2e_default_direct_rooms=True,
                e2e_default_private_rooms=True,
                email_auto_opt_in=False,
                enforce_password_fallback=False,
            )
        #: draws the seeds of the server, the network and every user added later
        self.rng: random.Random = random.Random(seed)
        self.backend = crypto if isinstance(crypto, CryptoBackend) else get_backend(crypto)
        server_entropy = random.Random(self.rng.getrandbits(64))
        self.server: Server
        if attacks is not None and attacks.any:
            self.server = AdversarialServer(
                settings,
                profile=profile,
                entropy=server_entropy,
                policy=policy,
                attacks=attacks,
                backend=self.backend,
            )
        else:
            self.server = Server(settings, profile=profile, entropy=server_entropy, policy=policy)
        self.mitigations = (
            mitigations if isinstance(mitigations, Mitigations) else Mitigations.named(mitigations)
        )
        #: fingerprints the people vouch for out of band (used by the mitigations)
        self.directory = KeyDirectory()
        #: the network with faults, or None for a perfect one
        self.transport: Transport | None = None
        if faults is not None and faults.any:
            self.transport = Transport(self.server, faults, random.Random(self.rng.getrandbits(64)))
        self.ledger = KeyLedger()
        self.clients: dict[str, Client] = {}
        #: further devices of a person (``add_device``): a phone besides the web client
        self.other_devices: dict[str, list[Client]] = {}
        self.people: dict[str, Person] = {}

    def add_user(self, username: str, *, roles: tuple[str, ...] = ("user",)) -> str:
        password = f"pw-{username}"
        user_id = self.server.create_user(username, password, roles=roles)
        self.people[user_id] = Person(username, password)
        self.clients[user_id] = self._new_client(user_id, "web")
        return user_id

    def add_device(self, user_id: str, *, app: str = "mobile") -> Client:
        """Another device of the person (logged out; log it in with ``login(..., device=)``)."""
        client = self._new_client(user_id, app)
        self.other_devices.setdefault(user_id, []).append(client)
        return client

    def _new_client(self, user_id: str, app: str) -> Client:
        client = Client(
            self.server,
            user_id,
            self.backend,
            entropy=random.Random(self.rng.getrandbits(64)),
            ledger=self.ledger,
            mitigations=self.mitigations,
            directory=self.directory,
            app=app,
        )
        client.transport = self.transport
        return client

    def client(self, user_id: str) -> Client:
        return self.clients[user_id]

    def devices_of(self, user_id: str) -> list[Client]:
        """The person's devices: its first one, then those of ``add_device``."""
        return [self.clients[user_id], *self.other_devices.get(user_id, ())]

    def login(
        self,
        user_id: str,
        *,
        now: float,
        remember_password: bool = True,
        code: str | None = None,
        device: Client | None = None,
    ) -> Client:
        """Log the person in on its device (``device``: another of its devices) and unlock E2EE
        the way a person would: save a newly generated password, or type the remembered one.
        ``code`` is its second factor, if any."""
        client, person = device or self.clients[user_id], self.people[user_id]
        client.login(person.account_password, now=now, code=code)
        if client.random_password is not None and client.state.value == "SAVE_PASSWORD":
            person.e2e_password = client.random_password
            assert client.public_key is not None  # new keys: the person shares the fingerprint
            self.directory.publish(user_id, self.backend.fingerprint(client.public_key))
            client.confirm_password_saved()
            if client.recovery_key is not None:
                person.recovery_key = client.recovery_key
        elif client.state.value == "ENTER_PASSWORD" and remember_password and person.e2e_password:
            client.enter_password(person.e2e_password, now=now)
        self.pump(now)
        return client

    def logout(self, user_id: str, *, now: float) -> None:
        self.clients[user_id].logout()
        self.pump(now)

    def reset(self, user_id: str, *, now: float, code: str | None = None) -> None:
        """The person resets its E2E key (2FA code if needed); every device is logged out."""
        self.clients[user_id].reset_own_key(code, now=now)
        self.people[user_id].e2e_password = None
        for client in self.devices_of(user_id):
            if client.login_token is not None:  # signed out by the server: the app wipes its keys
                client.logout()
        self.pump(now)

    def tick(self, user_id: str, *, now: float) -> int:
        served = self.clients[user_id].tick(now=now)
        self.pump(now)
        return served

    def tick_all(self, *, now: float) -> int:
        """One distribution round: every connected device ticks once, in user order."""
        served = 0
        for user_id, client in self.clients.items():
            if client.functional:
                served += self.tick(user_id, now=now)
            for other in self.other_devices.get(user_id, ()):
                if other.functional:
                    served += other.tick(now=now)
                    self.pump(now)
        return served

    def pump(self, now: float) -> int:
        """Deliver the server's pending pushes (and, with a faulty network, whatever held traffic
        is due) to the devices connected now; returns how many were delivered.  Pushes to a user
        with no connected device are lost, as in RC."""
        delivered = 0
        transport = self.transport
        for _ in range(10_000):  # handling a push can cause more pushes; bounded
            if transport is None:
                pending = self.server.drain_notifications()
            else:
                pending = transport.deliver(now) + transport.pushes(now)
            if not pending:
                return delivered
            for note in pending:
                if note.recipient_id not in self.clients:
                    continue
                for client in self.devices_of(note.recipient_id):  # every connected device
                    if not client.online:
                        continue
                    if (
                        transport is not None
                        and isinstance(note, SubscriptionChanged)
                        and transport.crashes()
                    ):
                        client.crash()
                        continue
                    client.notify(note, now=now)
                    delivered += 1
        raise RuntimeError("notification storm: pushes did not settle")
