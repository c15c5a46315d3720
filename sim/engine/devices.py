"""The users' devices in a run: 2FA codes, logging in and out, delivering the server's pushes
(through the faulty network, if any), and server restarts.

:class:`DevicesMixin` is part of :class:`sim.engine.simulation.Simulation`.  A device is a real
:class:`protocol.Client`, made on the user's first login and dropped when nobody follows the user
any more; a login types the account password, the authenticator's code if the user has TOTP, and
the remembered E2EE password, and may have to wait for a fresh code (:class:`Wait`).  At the 2FA
gate of a reset, a user without TOTP types its password (RC's password fallback).
"""

from __future__ import annotations

import random

from protocol import Client, E2EEState
from protocol import totp as totp_lib
from protocol.room_server import SubscriptionChanged

from ..inputs.streams import stream, stream_seed
from .records import Device, Wait
from .state import SimulationState
from .workload import _poisson

__all__ = ["DevicesMixin"]


class DevicesMixin(SimulationState):
    # ------------------------------------------------------------------ devices

    def _device(self, u: int) -> Device:
        return self.devices[u]

    def _new_client(self, u: int) -> Client:
        # the n-th client of user u draws from its own stream: what other concerns do (traffic,
        # other users' logins) never shifts it
        dev = self.devices[u]
        dev.clients_made += 1
        entropy = random.Random(stream_seed(self._client_seed, f"u{u}/{dev.clients_made}"))
        client = Client(
            self.server,
            self.user_ids[u],
            self.backend,
            entropy=entropy,
            ledger=self.ledger,
            mitigations=self.mitigations,
            directory=self.directory,
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

    def _code_ready_at(self, u: int, now: float) -> float:
        """When the person next has an unused code inside the window (hardened: T-1..T+1)."""
        if not self.totp_secret.get(u) or not self.server.profile.reject_replay:
            return now
        return max(now, float(self._last_step.get(u, -1)) * 30.0)

    def _code(self, u: int, now: float) -> str | None:
        """What the person types at a 2FA prompt: its authenticator's code, else (RC's password
        fallback) its account password."""
        code = self._totp(u, now)
        return code if code is not None else f"pw-u{u}"

    def _login_code(self, u: int, now: float) -> str | None:
        return self._totp(u, now)

    def _login(self, u: int, now: float, *, unlock: bool = True, fresh: bool = False) -> Client:
        """Log user ``u`` in on its device; unlock E2EE with the remembered password.

        Under the hardened profile a person who already used this step's and the next step's
        codes must wait for a fresh one: :class:`Wait` says until when.
        """
        dev = self.devices[u]
        if dev.client is None:
            dev.client = self._new_client(u)
        client = dev.client
        if client.online:
            return client
        if now < dev.locked_until:  # locked out (lost authenticator) until an admin acts
            raise Wait(dev.locked_until)
        ready = self._code_ready_at(u, now)
        if ready > now:
            raise Wait(ready)
        self.counters["logins"] += 1
        client.login(f"pw-u{u}", now=now, code=self._login_code(u, now))
        if client.state == E2EEState.SAVE_PASSWORD:
            self.e2e_password[u] = client.random_password
            client.confirm_password_saved()
            assert client.public_key is not None  # new keys: the person shares the fingerprint
            self.directory.publish(self.user_ids[u], self.backend.fingerprint(client.public_key))
            if client.recovery_key is not None:
                self.recovery_keys[u] = client.recovery_key
        elif client.state == E2EEState.ENTER_PASSWORD and unlock:
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

    def _logout(self, u: int, now: float) -> None:
        dev = self.devices[u]
        if dev.client is not None and dev.client.online:
            dev.client.logout()
        dev.online_until = -1.0
        dev.ticking = False
        self._pump(now)

    def _online(self, u: int) -> bool:
        client = self.devices[u].client
        return client is not None and client.online

    def _pump(self, now: float) -> None:
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
                client = self.devices[u].client
                if client is None or not client.online:
                    continue
                if transport is not None and isinstance(note, SubscriptionChanged) and transport.crashes():
                    client.crash()  # the device dies before handling the push
                    continue
                client.notify(note, now=now)
        else:
            raise RuntimeError("pushes did not settle")
        if transport is not None and transport.next_due is not None:
            due = transport.next_due
            if self._delivery_at is None or due < self._delivery_at:
                self._delivery_at = due
                self._at(due, self._deliver_held)

    def schedule_restarts(self) -> None:
        rate = float(self.sc.get("faults.server_restarts_per_day"))
        rng = stream(self.seed, "restarts")
        count = _poisson(rng, rate * self.horizon / 86400.0)
        for t in sorted(rng.uniform(0, self.horizon) for _ in range(count)):
            self._at(t, self._restart_server)

    def _restart_server(self) -> None:
        """The server restarts from its documents; connected devices reconnect and resync."""
        self.counters["server_restarts"] += 1
        self.server.restart()
        for dev in self.devices:
            if dev.client is not None and dev.client.online:
                dev.client.sync(now=self.now)
        self._pump(self.now)

    def _deliver_held(self) -> None:
        self._delivery_at = None
        self._pump(self.now)
