"""The simulator: SimPy time, the real protocol, presence generated only where it matters.

Theory of operation
-------------------
One :class:`protocol.Server` and one :class:`protocol.Client` per user device are driven through
simulated time (seconds from 0) by a SimPy environment.  There is no second, simplified model of
the protocol: a reset is ``Client.reset_own_key``, a key reaches a member through the server's
queue and a holder's ``Client.tick``, a live request through ``Server.drain_notifications``.

At time 0 the deployment is *established* through the protocol itself: every user logs in and
creates its key pair, every room is created and its first member's client makes the room key and
pushes it to the others, who accept it.  Then every device logs out and presence takes over.

Presence is an alternating renewal process per user (:mod:`sim.churn`), in its stationary state at
time 0.  It is never toggled for everybody: a user's device is *followed* (logged in at each
online start, out at each end) only while that user matters:

* a user who reset, until all its rooms are restored or the horizon;
* a member who holds a room's current key while somebody waits in that room's queue
  (policies ``queue`` and ``backup``), until the queue no longer needs it;
* under ``live``, every member online at the moment a waiting member logs in (its request reaches
  exactly those);
* a member picked to send a message, for the rest of that session.

A followed holder's distribution loop runs only while it is online and has work, every
``tick_seconds`` from its login (RC runs the first tick at once, then every 10 s; login times are
continuous, so the phase is uniform).  Scheduling is done with plain timeout callbacks: one SimPy
event per login, logout, tick, reset or message, and nothing for users nobody asks about.

The run returns tidy rows (:class:`RunResult`); writing files is :mod:`sim.outputs`' job.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from typing import Any

import simpy

from protocol import Client, E2EEState, ProtocolError, Server, Settings
from protocol import totp as totp_lib
from protocol.adversary import ATTACKS, AdversarialServer, Attacks
from protocol.crypto import CryptoBackend, get_backend
from protocol.ledger import KeyLedger
from protocol.profiles import get_profile
from protocol.room_server import SubscriptionChanged
from protocol.transport import FaultModel, Transport
from protocol.trust import KeyDirectory, Mitigations

from .churn import ChurnParams, Presence, PresenceModel, TracePresence
from .collect import collect, snapshot
from .records import OUTCOME_COLUMNS, ROOM_COLUMNS, Device, Outcome, RoomStats, RunResult, Wait
from .scenario import Scenario, ScenarioError
from .streams import stream, stream_seed
from .topology import RoomSpec, TopologyParams, generate_rooms
from .workload import WorkloadMixin, _poisson

__all__ = [
    "OUTCOME_COLUMNS",
    "ROOM_COLUMNS",
    "SIM_BACKUP_SCRYPT_N",
    "RunResult",
    "Simulation",
    "run_scenario",
]

#: scrypt's cost N for backup codes under the hardened profile, in a run.  Nobody in a run ever
#: types a backup code (a person who lost its authenticator has none), so N changes nothing a run
#: measures: the salt is drawn from the same stream whatever N is, and the outcome tables are
#: identical (tests/test_sim_profiles.py).  The profile's own 2**14 costs about 0.25 s per
#: enrolment, 25 s for 100 users on TOTP; pass ``backup_scrypt_n=None`` to keep it.
SIM_BACKUP_SCRYPT_N = 2


class Simulation(WorkloadMixin):
    """One run of one scenario with one seed."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        progress: Callable[[float], None] | None = None,
        check_invariants: bool = False,
        backup_scrypt_n: int | None = SIM_BACKUP_SCRYPT_N,
    ) -> None:
        self.sc = scenario
        self.seed = scenario.seed
        self.policy: str = scenario.get("simulation.policy")
        self.horizon = scenario.horizon_s
        self.tick_s = float(scenario.get("simulation.tick_seconds"))
        self.n = scenario.users
        self.run_id = f"{scenario.name}-{self.seed}"
        self.progress = progress
        self.check_invariants = check_invariants
        self.env = simpy.Environment()
        #: the exact time of the action being run (see :meth:`_fire`)
        self.now = 0.0
        self.backend: CryptoBackend = get_backend(scenario.get("simulation.crypto"))
        self.ledger = KeyLedger()
        settings = Settings(
            e2e_enabled=True,
            e2e_default_direct_rooms=True,
            e2e_default_private_rooms=True,
            email_auto_opt_in=False,
        )
        profile = get_profile(scenario.get("simulation.profile"))
        if backup_scrypt_n is not None and profile.backup_hash == "scrypt":
            profile = dataclasses.replace(profile, backup_scrypt_n=backup_scrypt_n)
        adversary = scenario.values["adversary"]
        self.attacks = Attacks(**{name: bool(adversary[name]) for name in ATTACKS})
        self.mitigations = Mitigations.named(adversary["mitigation"])
        self.directory = KeyDirectory()
        f = scenario.values["faults"]
        self.faults = FaultModel(
            request_loss=f["request_loss"],
            request_duplicate=f["request_duplicate"],
            request_delay=f["request_delay"],
            push_loss=f["push_loss"],
            push_duplicate=f["push_duplicate"],
            push_delay=f["push_delay"],
            delay_mean_s=f["delay_mean_seconds"],
            crash_on_push=f["crash_on_push"],
        )
        self.transport: Transport | None = None
        self._delivery_at: float | None = None
        self.server: Server
        if self.attacks.any:
            # an honest server while the deployment is set up; the operator turns at time 0
            self.server = AdversarialServer(
                settings,
                profile=profile,
                entropy=stream(self.seed, "server"),
                policy=self.policy,
                attacks=Attacks(),
                backend=self.backend,
            )
        else:
            self.server = Server(
                settings,
                profile=profile,
                entropy=stream(self.seed, "server"),
                policy=self.policy,
            )
        self.server.listeners.append(self._on_key_event)
        self.presence: PresenceModel = self._make_presence()
        self.user_ids: list[str] = []
        self.index: dict[str, int] = {}
        self.e2e_password: list[str | None] = []
        self.totp_secret: dict[int, str] = {}
        self._last_step: dict[int, int] = {}
        self.devices: list[Device] = []
        self.room_ids: list[str] = []
        self.specs: dict[str, RoomSpec] = {}
        self.room_stats: dict[str, RoomStats] = {}
        self.outcomes: list[Outcome] = []
        self.open: dict[tuple[int, str], Outcome] = {}
        #: rows of users reset while offline, who log in again at their next online start
        self.awaiting_relogin: dict[int, list[Outcome]] = {}
        self.lost_count = 0
        self.lost_rooms: set[str] = set()
        self.lost_timeline: list[tuple[float, int]] = [(0.0, 0)]
        self.reset_counter = 0
        self.counters = {
            "events": 0,
            "logins": 0,
            "ticks": 0,
            "resets": 0,
            "resets_absorbed": 0,
            "messages": 0,
            "server_restarts": 0,
        }
        self._rng_resets = stream(self.seed, "resets")
        self._rng_traffic = stream(self.seed, "traffic")
        self._rng_membership = stream(self.seed, "membership")
        self._rng_recovery = stream(self.seed, "recovery")
        self._client_seed = stream_seed(self.seed, "clients")

    # ------------------------------------------------------------------ set-up

    def _churn_params(self) -> list[ChurnParams] | Callable[[int], ChurnParams]:
        c = self.sc.values["churn"]

        def params(model: str, on_min: float, off_min: float, shape: float) -> ChurnParams:
            return ChurnParams(
                model=model,
                mean_online_s=on_min * 60.0,
                mean_offline_s=off_min * 60.0,
                shape=shape,
                sigma=c["sigma"],
                rhythm=c["rhythm"],
                rhythm_amplitude=c["rhythm_amplitude"],
                rhythm_peak_hour=c["rhythm_peak_hour"],
            )

        base = params(c["model"], c["mean_online_minutes"], c["mean_offline_minutes"], c["shape"])
        if not self.sc.classes:
            return lambda _user: base
        # users are assigned to classes in contiguous blocks by fraction (deterministic)
        bounds: list[tuple[int, ChurnParams]] = []
        acc = 0.0
        for cls in self.sc.classes:
            acc += cls.fraction
            bounds.append(
                (
                    round(acc * self.n),
                    params(cls.model, cls.mean_online_minutes, cls.mean_offline_minutes, cls.shape),
                )
            )
        table = []
        start = 0
        for end, p in bounds:
            table += [p] * (end - start)
            start = end
        table += [bounds[-1][1]] * (self.n - len(table))
        return table

    def _make_presence(self) -> PresenceModel:
        c = self.sc.values["churn"]
        try:
            if c["model"] == "trace":
                names = {f"u{i}": i for i in range(self.n)}
                return TracePresence.from_csv(self.sc.resolve(c["trace"]), names)
            presence = Presence(self.seed, self._churn_params(), self.n)
            presence.params(0)
        except ValueError as exc:
            raise ScenarioError("churn.trace" if c["model"] == "trace" else "churn", str(exc)) from None
        p = presence.params(0)
        if not self.sc.classes:
            self.stationary_online: float | None = p.stationary_online
        return presence

    def _device(self, u: int) -> Device:
        return self.devices[u]

    def _new_client(self, u: int) -> Client:
        entropy = random.Random(
            self._client_seed ^ (u * 0x9E3779B97F4A7C15 & (2**64 - 1)) ^ self.counters["logins"]
        )
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

    def establish(self) -> None:
        """Time 0: users with key pairs, rooms whose members all hold the room key."""
        sc = self.sc
        twofa = float(sc.get("resets.twofa_fraction"))
        rng_2fa = stream(self.seed, "twofa")
        for u in range(self.n):
            uid = self.server.create_user(f"u{u}", f"pw-u{u}")
            self.user_ids.append(uid)
            self.index[uid] = u
            self.devices.append(Device())
            self.e2e_password.append(None)
            if twofa and rng_2fa.random() < twofa:
                self.totp_secret[u] = ""  # enrolled once the keys exist, below
        # every user creates its keys through the client
        for u in range(self.n):
            self._login(u, 0.0, unlock=True)
        rooms = self._room_specs()
        for spec in rooms:
            owner = self.user_ids[spec.members[0]]
            others = [self.user_ids[m] for m in spec.members[1:]]
            if spec.t == "d":
                rid = self.server.create_direct_message(owner, others[0], encrypted=spec.encrypted, now=0.0)
            else:
                rid = self.server.create_private_group(
                    owner, f"group-{len(self.room_ids)}", others, encrypted=spec.encrypted, now=0.0
                )
            self.room_ids.append(rid)
            self.specs[rid] = spec
            self.room_stats[rid] = RoomStats()
            self._pump(0.0)
        # everybody settles, then logs out; presence takes over
        for u in range(self.n):
            client = self.devices[u].client
            assert client is not None
            client.sync(now=0.0)
        self._pump(0.0)
        for room_id in self.room_ids:
            room = self.server.room(room_id)
            if room.encrypted and room.users_waiting:
                raise RuntimeError(f"establishment left {room_id} with a queue")
        for u in range(self.n):
            self._logout(u, 0.0)
            self.devices[u].client = None
        for u in sorted(self.totp_secret):
            uid = self.user_ids[u]
            enrollment = self.server.totp_enable(uid, now=0.0)
            self.server.totp_validate_temp_token(uid, totp_lib.totp(enrollment.secret, 0.0), now=0.0)
            self.totp_secret[u] = enrollment.secret
            self._last_step[u] = 0
        self.lost_count = 0

    def _room_specs(self) -> list[RoomSpec]:
        r = self.sc.values["rooms"]
        params = TopologyParams(
            generator=r["generator"],
            dms=r["dms"],
            groups=r["groups"],
            group_size=r["group_size"],
            group_size_dist=r["group_size_dist"],
            group_size_max=r["group_size_max"],
            unencrypted_fraction=r["unencrypted_fraction"],
            communities=r["communities"],
            p_in=r["p_in"],
            p_out=r["p_out"],
            ba_m=r["ba_m"],
            ws_k=r["ws_k"],
            ws_p=r["ws_p"],
            file=str(self.sc.resolve(r["file"])) if r["file"] else None,
        )
        explicit = [
            RoomSpec(t=e.type, members=e.members, encrypted=e.encrypted, owner=e.members[0])
            for e in self.sc.explicit_rooms
        ]
        try:
            return generate_rooms(params, self.n, stream(self.seed, "topology"), explicit=explicit)
        except ValueError as exc:
            # topology's messages start with the parameter's name ("dms: ...")
            name = str(exc).split(":", 1)[0].strip()
            key = f"rooms.{name}" if name in self.sc.values["rooms"] else "rooms"
            raise ScenarioError(key, str(exc).split(":", 1)[-1].strip()) from None

    # ------------------------------------------------------------------ devices

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

    recovery_keys: dict[int, Any]

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

    def _at(self, t: float, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)`` at time ``t`` (now if ``t`` is not in the future)."""
        if t >= self.horizon:
            return
        when = max(t, self.now)
        self.counters["events"] += 1
        event = self.env.timeout(max(0.0, when - self.env.now))
        event.callbacks.append(lambda _ev: self._fire(when, action, args))

    def _fire(self, when: float, action: Callable[..., None], args: tuple[Any, ...]) -> None:
        # SimPy reaches now + (when - now), which can miss ``when`` by one ulp; actions read the
        # exact intended time, so "online at its session start" stays true.
        self.now = when
        action(*args)

    # -- following a user's presence

    def follow(self, u: int) -> None:
        """Make sure ``u``'s device is logged in whenever ``u`` is online, from now on."""
        dev = self.devices[u]
        now = self.now
        if self._online(u) or dev.pending_login is not None:
            return
        start = self.presence.next_online_start(u, now)
        if start is None or start >= self.horizon:
            return
        if start <= now:
            self._session_start(u)
        else:
            dev.pending_login = start
            self._at(start, self._session_start, u)

    def _session_start(self, u: int) -> None:
        dev = self.devices[u]
        dev.pending_login = None
        now = self.now
        if u in self.awaiting_relogin and now >= dev.locked_until and self.presence.is_online(u, now):
            self._relogin(u, self.awaiting_relogin.pop(u))  # reset while offline: back now
            return
        if self._online(u) or now < dev.locked_until or not self.presence.is_online(u, now):
            if not self._online(u) and now < dev.locked_until:
                self._at(dev.locked_until, self._resume_after_lock, u)
            elif u in self.awaiting_relogin:  # a stale start (a login that had to wait): the next
                self.follow(u)
            return
        if self.policy == "live":
            self._co_present_members(u, now)
        try:
            self._login(u, now)
        except Wait as wait:
            dev.pending_login = wait.until
            self._at(wait.until, self._session_start, u)
            return
        dev.online_until = self.presence.session_end(u, now)
        self._at(dev.online_until, self._session_end, u)
        self._after_login(u, now)

    def _resume_after_lock(self, u: int) -> None:
        self.follow(u)

    def _session_end(self, u: int) -> None:
        now = self.now
        dev = self.devices[u]
        if dev.online_until > now + 1e-9 or not self._online(u):
            return  # a later session superseded this end
        self._logout(u, now)
        if self._relevant(u):
            self.follow(u)
        else:
            dev.client = None  # nothing more to keep: the device's state was wiped at logout

    def _relevant(self, u: int) -> bool:
        uid = self.user_ids[u]
        if any(key[0] == u for key in self.open):
            return True
        for rid in self.server.rooms_of(uid):  # a key waits for it to accept
            if self.server.room(rid).subscriptions[uid].e2e_suggested_key:
                return True
        if self.policy == "live":
            return False
        for rid in self.server.rooms_of(uid):
            room = self.server.room(rid)
            # only a waiting member with a key pair can be served (a user reset by an admin gets
            # one when it logs in again, and wakes the holders then)
            if (
                room.users_waiting
                and not room.is_waiting(uid)
                and self._holds(rid, uid)
                and any(self.server.user(w.user_id).e2e_public_key for w in room.users_waiting)
            ):
                return True
        return False

    def _holds(self, room_id: str, user_id: str) -> bool:
        room = self.server.room(room_id)
        sub = room.subscriptions.get(user_id)
        if sub is None or sub.e2e_key is None or room.e2e_key_id is None:
            return False
        try:
            return self.backend.wrapped_kid(sub.e2e_key) == room.e2e_key_id
        except ProtocolError:
            return False

    def _holders(self, room_id: str, exclude: str | None = None) -> list[int]:
        room = self.server.room(room_id)
        return [self.index[uid] for uid in room.subscriptions if uid != exclude and self._holds(room_id, uid)]

    def _co_present_members(self, u: int, now: float) -> None:
        """Live policy: log in every holder online at ``now`` in ``u``'s rooms that lack a key,
        so that ``u``'s request reaches exactly the members connected at this moment."""
        uid = self.user_ids[u]
        for rid in self.server.rooms_of(uid):
            room = self.server.room(rid)
            if not room.encrypted or self._holds(rid, uid):
                continue
            for m in self._holders(rid, exclude=uid):
                if (
                    not self._online(m)
                    and self.presence.is_online(m, now)
                    and now >= self.devices[m].locked_until
                ):
                    try:
                        self._login(m, now)
                    except Wait:
                        continue  # still waiting for a code: misses this request
                    dev = self.devices[m]
                    dev.online_until = self.presence.session_end(m, now)
                    self._at(dev.online_until, self._session_end, m)

    def _after_login(self, u: int, now: float) -> None:
        self._pump(now)
        self._maybe_tick(u)

    # -- the distribution loop

    def _maybe_tick(self, u: int) -> None:
        """Start ``u``'s tick chain if it is online, idle and has work (phase: its login time)."""
        if self.policy == "live":
            return
        dev = self.devices[u]
        client = dev.client
        if dev.ticking or client is None or not client.has_distribution_work():
            return
        now = self.now
        k = math.ceil((now - dev.login_at) / self.tick_s - 1e-9)
        t = dev.login_at + max(0, k) * self.tick_s
        if t >= dev.online_until:
            return
        dev.ticking = True
        self._at(t, self._tick, u)

    def _tick(self, u: int) -> None:
        dev = self.devices[u]
        now = self.now
        client = dev.client
        if client is None or not client.online or now >= dev.online_until:
            dev.ticking = False
            return
        if client.has_distribution_work() and dev.last_tick_at != now:
            self.counters["ticks"] += 1
            dev.last_tick_at = now
            client.tick(now=now)
            self._pump(now)
        if client.has_distribution_work() and now + self.tick_s < dev.online_until:
            self._at(now + self.tick_s, self._tick, u)
        else:
            dev.ticking = False

    def _wake_holders(self, room_id: str, waiting_user: str) -> None:
        if self.policy == "live":
            return
        for m in self._holders(room_id, exclude=waiting_user):
            if self._online(m):
                self._maybe_tick(m)
            else:
                self.follow(m)

    # ------------------------------------------------------------------ key events

    def _on_key_event(self, event: str, room_id: str, user_id: str) -> None:
        now = self.now
        u = self.index.get(user_id)
        if u is None:
            return
        outcome = self.open.get((u, room_id))
        if event == "queued":
            stats = self.room_stats.get(room_id)
            if stats is not None and stats.waiting_since is None:
                stats.waiting_since = now
            return
        if event == "suggested" and outcome is None and not self._online(u):
            self.follow(u)  # it accepts at its next login (a joiner, or after a room-key reset)
        if event in ("accepted", "stored") and room_id in self.lost_rooms and self._holds(room_id, user_id):
            self._note_regained(room_id, now)
        if outcome is None:
            return
        if event == "suggested" and math.isnan(outcome.served_at):
            outcome.served_at = now
        elif event == "accepted" and self._planted(room_id, user_id):
            # a key the malicious server made, under the room's kid: the user reads and writes a
            # room nobody else can read, and is never queued again
            outcome.restored_via = "planted"
            self._close(outcome, now)
        elif event in ("accepted", "stored") and self._holds(room_id, user_id):
            outcome.restored_at = now
            if math.isnan(outcome.served_at):  # a key the user stored itself (room-key reset)
                outcome.served_at = now
            if event == "stored":
                outcome.restored_via = "room_key_reset"
            elif self._restoring_from_backup:
                outcome.restored_via = "backup"
            else:
                outcome.restored_via = "holder"
            self._close(outcome, now)

    def _close(self, outcome: Outcome, now: float) -> None:
        """The row stops waiting (restored, superseded, left): keep the history the user has
        now, and stop following the row."""
        outcome.closed_at = now
        snapshot(self, outcome)
        self.open.pop((outcome.user, outcome.room), None)

    _restoring_from_backup = False

    def _planted(self, room_id: str, user_id: str) -> bool:
        server = self.server
        if not isinstance(server, AdversarialServer):
            return False
        planted = server.attacker.planted.get((room_id, user_id))
        return planted is not None and server.room(room_id).subscriptions[user_id].e2e_key == planted[0]

    # ------------------------------------------------------------------ running

    def run(self) -> RunResult:
        started = time.perf_counter()
        self.recovery_keys = {}
        self.establish()
        if isinstance(self.server, AdversarialServer):
            self.server.attacks = self.attacks
        if self.faults.any:  # the network turns faulty once the deployment is set up
            self.transport = Transport(self.server, self.faults, stream(self.seed, "faults"))
        self.schedule_restarts()
        established = time.perf_counter()
        self.schedule_resets()
        self.schedule_traffic()
        self.schedule_membership()
        steps = 200
        for i in range(1, steps + 1):
            self.env.run(until=self.horizon * i / steps)
            if self.progress is not None:
                self.progress(i / steps)
        finished = time.perf_counter()
        result = collect(self)
        result.stats.update(
            {
                "wall_s": finished - started,
                "establish_s": established - started,
                "simulate_s": finished - established,
                "events": self.counters.pop("events"),
                "presence_events": getattr(self.presence, "events_generated", 0),
                **self.counters,
            }
        )
        return result


def run_scenario(
    scenario: Scenario, *, progress: Callable[[float], None] | None = None, check_invariants: bool = False
) -> RunResult:
    """Run one scenario with its seed and return the tidy results."""
    return Simulation(scenario, progress=progress, check_invariants=check_invariants).run()
