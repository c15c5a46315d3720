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

Presence is an alternating renewal process per user (:mod:`sim.inputs.churn`), in its stationary state at
time 0.  It is never toggled for everybody: a user's device is *followed* (logged in at each
online start, out at each end) only while that user matters:

* a user who reset, while any of its outcome rows still waits (until restored, superseded by its
  next reset, or it left the room; a user reset by an admin while away from its next online
  start);
* a member who holds a room's current key while somebody who has a key pair waits in that
  room's queue (policies ``queue`` and ``backup``), until the queue no longer needs it;
* a member with a suggested key to accept (a joiner, a member after a room-key reset);
* under ``live``, every member online at the moment a waiting member logs in (its request reaches
  exactly those), and a member who lacks the key of a room somebody holds (it asks again at each
  login);
* a member picked to send a message, or an owner resetting or rotating a room key, for the rest
  of that session.

A followed holder's distribution loop runs only while it is online and has work, every
``tick_seconds`` from its login (RC runs the first tick at once, then every 10 s; login times are
continuous, so the phase is uniform).  Scheduling is done with plain timeout callbacks: one SimPy
event per login, logout, tick, reset or message, and nothing for users nobody asks about.

The run returns tidy rows (:class:`RunResult`); writing files is :mod:`sim.results`' job.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import simpy

from protocol import Server, Settings
from protocol import totp as totp_lib
from protocol.adversary import ATTACKS, AdversarialServer, Attacks
from protocol.crypto import CryptoBackend, get_backend
from protocol.ledger import KeyLedger
from protocol.profiles import get_profile
from protocol.transport import FaultModel, Transport
from protocol.trust import KeyDirectory, Mitigations

from ..inputs.churn import ChurnParams, Presence, PresenceModel
from ..inputs.scenario import Scenario, ScenarioError
from ..inputs.streams import stream, stream_seed
from ..inputs.topology import RoomSpec, TopologyParams, generate_rooms
from ..inputs.trace import TracePresence
from .collect import collect, snapshot
from .devices import DevicesMixin
from .following import FollowingMixin
from .records import OUTCOME_COLUMNS, ROOM_COLUMNS, Device, Outcome, RoomStats, RunResult
from .workload import WorkloadMixin

#: ChurnParams' field names -> the scenario keys they come from
_CHURN_KEYS = {
    "model": "model",
    "mean_online_s": "mean_online_minutes",
    "mean_offline_s": "mean_offline_minutes",
    "shape": "shape",
    "sigma": "sigma",
    "rhythm": "rhythm",
    "rhythm_amplitude": "rhythm_amplitude",
    "rhythm_peak_hour": "rhythm_peak_hour",
}

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


class Simulation(DevicesMixin, FollowingMixin, WorkloadMixin):
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
        self.locked_out_at: dict[int, float] = {}
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
        self._rng_rotation = stream(self.seed, "rotation")
        self._client_seed = stream_seed(self.seed, "clients")

    # ------------------------------------------------------------------ set-up

    def _churn_params(self) -> list[ChurnParams] | Callable[[int], ChurnParams]:
        c = self.sc.values["churn"]

        def params(where: str, model: str, on_min: float, off_min: float, shape: float) -> ChurnParams:
            try:
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
            except ValueError as exc:  # "shape: ...": name the scenario key it came from
                name, _, problem = str(exc).partition(":")
                key = _CHURN_KEYS.get(name.strip(), "")
                if key in ("sigma", "rhythm", "rhythm_amplitude", "rhythm_peak_hour"):
                    where = "churn"  # these are never per class
                raise ScenarioError(f"{where}.{key}" if key else where, problem.strip() or str(exc)) from None

        if not self.sc.classes:
            base = params(
                "churn", c["model"], c["mean_online_minutes"], c["mean_offline_minutes"], c["shape"]
            )
            return lambda _user: base
        # users are assigned to classes in contiguous blocks by fraction (deterministic)
        bounds: list[tuple[int, ChurnParams]] = []
        acc = 0.0
        for i, cls in enumerate(self.sc.classes):
            acc += cls.fraction
            bounds.append(
                (
                    round(acc * self.n),
                    params(
                        f"population.classes[{i}]",
                        cls.model,
                        cls.mean_online_minutes,
                        cls.mean_offline_minutes,
                        cls.shape,
                    ),
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
        except ScenarioError:
            raise
        except ValueError as exc:
            raise ScenarioError("churn.trace" if c["model"] == "trace" else "churn", str(exc)) from None
        p = presence.params(0)
        if not self.sc.classes and c["rhythm"] == "none":
            # the online probability every user has at every moment, independently of the others;
            # a rhythm makes users' presence depend on the hour (and on each other's), and classes
            # give each its own p, so then there is no single p (nor an analytic curve)
            self.stationary_online: float | None = p.stationary_online
        return presence

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

    # ------------------------------------------------------------------ scheduling

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
        self.schedule_rotations()
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
