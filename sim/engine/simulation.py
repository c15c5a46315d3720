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

The parts of a run are collaborators the :class:`Simulation` holds, each with its own state:
the :class:`~sim.engine.clock.Clock`, the users' :class:`~sim.engine.devices.Devices`, the
:class:`~sim.engine.records.Records` of outcome and room rows, :class:`~sim.engine.following.Following`
(presence and the holders' loops), :class:`~sim.engine.resets.Resets`, room
:class:`~sim.engine.owners.Owners`, and :class:`~sim.engine.traffic.Traffic` and
:class:`~sim.engine.traffic.Membership`.  Who holds a key is read off the server
(:class:`~sim.engine.keys.KeyView`).  The simulation itself establishes the deployment, listens
to the server's key events (which close outcome rows), and runs the clock.

The run returns tidy rows (:class:`RunResult`); writing files is :mod:`sim.results`' job.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from protocol.adversary import ATTACKS, AdversarialServer, Attacks
from protocol.crypto import CryptoBackend, get_backend
from protocol.escrow import Vault
from protocol.ledger import KeyLedger
from protocol.transport import Transport
from protocol.trust import KeyDirectory, Mitigations

from ..inputs.scenario import Scenario
from ..inputs.streams import stream, stream_seed
from . import setup
from .clock import Clock
from .collect import collect
from .devices import Devices
from .following import Following
from .keys import KeyView
from .owners import Owners
from .records import OUTCOME_COLUMNS, ROOM_COLUMNS, Records, RunResult, Wait
from .resets import Resets
from .traffic import Membership, Traffic

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
#: identical (tests/sim/engine/test_profiles.py).  The profile's own 2**14 costs about 0.25 s per
#: enrolment, 25 s for 100 users on TOTP; pass ``backup_scrypt_n=None`` to keep it.
SIM_BACKUP_SCRYPT_N = 2


class Simulation:
    """One run of one scenario with one seed."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        progress: Callable[[float], None] | None = None,
        check_invariants: bool = False,
        check_every_step: bool = False,
        backup_scrypt_n: int | None = SIM_BACKUP_SCRYPT_N,
    ) -> None:
        self.sc = scenario
        self.seed = scenario.seed
        self.policy: str = scenario.get("simulation.policy")
        self.horizon = scenario.horizon_s
        self.run_id = scenario.run_id
        self.progress = progress
        #: check the invariants at the horizon; ``check_every_step`` also after every SimPy event
        #: of the run (each a whole protocol operation), without those that hold only once the key
        #: distribution has caught up; each violation is kept once, with the time it first showed
        self.check_invariants = check_invariants or check_every_step
        self.check_every_step = check_every_step
        self.step_violations: list[str] = []
        self._seen_violations: set[str] = set()
        self.backend: CryptoBackend = get_backend(scenario.get("simulation.crypto"))
        self.ledger = KeyLedger()
        adversary = scenario.values["adversary"]
        self.attacks = Attacks(**{name: bool(adversary[name]) for name in ATTACKS})
        self.mitigations = Mitigations.named(adversary["mitigation"])
        self.directory = KeyDirectory()
        self.faults = setup.fault_model(scenario)
        self.server = setup.make_server(
            scenario,
            policy=self.policy,
            attacks=self.attacks,
            backend=self.backend,
            backup_scrypt_n=backup_scrypt_n,
        )
        self.server.listeners.append(self._on_key_event)
        self.presence = setup.make_presence(scenario)
        self.stationary_online = setup.stationary_online(scenario, self.presence)
        #: the roster, filled by :meth:`establish`: user number -> id, and back
        self.user_ids: list[str] = []
        self.index: dict[str, int] = {}
        self.room_ids: list[str] = []
        self._make_parts()

    def _make_parts(self) -> None:
        """The collaborators of a run, each given only what it reads and calls."""
        sc, server, presence, seed = self.sc, self.server, self.presence, self.seed
        self.clock = clock = Clock(self.horizon)
        self.keys = keys = KeyView(server, self.backend, self.index)
        self.devices = devices = Devices(
            clock,
            server,
            presence,
            self.user_ids,
            self.index,
            seed=seed,
            backend=self.backend,
            ledger=self.ledger,
            mitigations=self.mitigations,
            directory=self.directory,
        )
        if server.mechanisms.escrow:
            devices.vault = Vault(
                max_guesses=int(sc.get("escrow.max_guesses")),
                entropy=random.Random(stream_seed(seed, "vault")),
            )
        if server.mechanisms.contacts:
            devices.contacts_per_user = int(sc.get("contacts.per_user"))
        if server.mechanisms.dehydrated:
            devices.dehydration_days = float(sc.get("dehydrated.rotation_days"))
        if float(sc.get("devices.phone_fraction")) > 0:
            devices.phone_presence = setup.make_phone_presence(sc)
        self.records = records = Records(server, self.backend, keys, self.user_ids)
        self.following = following = Following(
            clock,
            server,
            presence,
            devices,
            keys,
            records,
            mechanisms=server.mechanisms,
            tick_s=float(sc.get("simulation.tick_seconds")),
        )
        self.resets = resets = Resets(
            clock,
            server,
            presence,
            devices,
            keys,
            records,
            following,
            values=sc.values["resets"],
            escrow=sc.values["escrow"],
            contacts=sc.values["contacts"],
            scripted=[(s.at, s.user) for s in sc.scripted_resets],
            mechanisms=server.mechanisms,
            seed=seed,
        )
        self.owners = Owners(
            clock,
            server,
            presence,
            devices,
            keys,
            records,
            following,
            resets,
            mechanisms=server.mechanisms,
            seed=seed,
        )
        if sc.get("recovery.owner_resets_lost_rooms"):
            records.on_lost = self.owners.recover
        self.traffic = Traffic(clock, server, presence, devices, keys, records, following, seed=seed)
        self.membership = Membership(
            clock,
            server,
            presence,
            devices,
            keys,
            records,
            following,
            seed=seed,
            invite_fraction=float(sc.get("membership.invite_fraction")),
        )

    # ------------------------------------------------------------------ set-up

    def establish(self) -> None:
        """Time 0: users with key pairs, rooms whose members all hold the room key."""
        server, devices = self.server, self.devices
        twofa = float(self.sc.get("resets.twofa_fraction"))
        phones = float(self.sc.get("devices.phone_fraction"))
        rng_2fa, rng_phones = stream(self.seed, "twofa"), stream(self.seed, "phone-owners")
        dehydrated = float(self.sc.get("dehydrated.setup_fraction"))
        rng_dehydrated = stream(self.seed, "dehydrated")
        shared = float(self.sc.get("rooms.shared_history_fraction"))
        rng_visibility = stream(self.seed, "history-visibility")
        for u in range(self.sc.users):
            uid = server.create_user(f"u{u}", f"pw-u{u}")
            self.user_ids.append(uid)
            self.index[uid] = u
            devices.add(u, twofa=bool(twofa) and rng_2fa.random() < twofa)
            if self.server.mechanisms.dehydrated and rng_dehydrated.random() < dehydrated:
                devices.set_up_dehydration(u)
            if phones and rng_phones.random() < phones:
                devices.add_phone(u)
        # every user creates its keys through the client
        for u in range(len(devices)):
            devices.login(u, 0.0, unlock=True)
        for spec in setup.room_specs(self.sc):
            owner = self.user_ids[spec.members[0]]
            others = [self.user_ids[m] for m in spec.members[1:]]
            if spec.t == "d":
                rid = server.create_direct_message(owner, others[0], encrypted=spec.encrypted, now=0.0)
            else:
                rid = server.create_private_group(
                    owner, f"group-{len(self.room_ids)}", others, encrypted=spec.encrypted, now=0.0
                )
            # Matrix's private_chat preset makes a room's history "shared"; the others "joined"
            # (only policy bundle reads it; drawn under every policy, from its own stream)
            if rng_visibility.random() >= shared:
                server.set_room_history_visibility(owner, rid, "joined")
            self.room_ids.append(rid)
            self.records.add_room(rid)
            devices.pump(0.0)
        # everybody settles, then logs out; presence takes over
        for dev in devices:
            assert dev.client is not None
            dev.client.sync(now=0.0)
        devices.pump(0.0)
        for room_id in self.room_ids:
            room = server.room(room_id)
            if room.encrypted and room.users_waiting:
                raise RuntimeError(f"establishment left {room_id} with a queue")
        if devices.contacts_per_user:  # once everybody has keys, people name recovery contacts
            for u in range(len(devices)):
                password = devices.e2e_password[u]
                assert password is not None
                devices.enrol_contacts(u, password)
        devices.established = True
        for u, dev in enumerate(devices):
            devices.logout(u, 0.0)
            dev.client = None
        for u in sorted(devices.totp_secret):
            devices.enrol_totp(u, 0.0)
        # phones sign in with the person's password (and code) and stay signed in; after the
        # TOTP set-up, which ends every other session (2fa:validateTempToken)
        for u in devices.phones:
            try:
                devices.login_phone(u, 0.0)
            except Wait as wait:  # hardened: the set-up used this step's code
                self.clock.at(wait.until, self.following.follow_phone, u)
        devices.pump(0.0)
        devices.on_new_keys = self.following.follow_phone  # a phone signs in again after a reset
        devices.on_dehydration_due = self.following.dehydration_due

    # ------------------------------------------------------------------ key events

    def _on_key_event(self, event: str, room_id: str, user_id: str) -> None:
        """The server's key events: a room's queue starts, a member is served, accepts or stores
        a key.  They close outcome rows (restored, or planted) and mark lost rooms regained."""
        now = self.clock.now
        u = self.index.get(user_id)
        if u is None:
            return
        records = self.records
        outcome = records.open.get((u, room_id))
        if event == "queued":
            stats = records.room_stats.get(room_id)
            if stats is not None and stats.waiting_since is None:
                stats.waiting_since = now
            return
        if event == "suggested" and outcome is None and not self.devices.online(u):
            # it accepts at its next login (a joiner, or after a room-key reset), on either device
            self.following.follow(u)
            self.following.follow_phone(u)
        holds = event in ("accepted", "stored", "rejoined", "session") and self.keys.holds(room_id, user_id)
        if holds and room_id in records.lost_rooms:
            records.note_regained(room_id, now)
        join = records.open_joins.get((u, room_id))
        if join is not None and math.isnan(join.keyed_at):
            if math.isnan(join.served_at) and (event == "suggested" or holds):
                join.served_at = now
            if holds:
                join.keyed_at = now
        if outcome is None:
            return
        if event == "suggested" and math.isnan(outcome.served_at):
            outcome.served_at = now
        elif event == "accepted" and self._planted(room_id, user_id):
            # a key the malicious server made, under the room's kid: the user reads and writes a
            # room nobody else can read, and is never queued again
            outcome.restored_via = "planted"
            records.close(outcome, now)
        elif holds:
            outcome.restored_at = now
            if math.isnan(outcome.served_at):  # a key the user stored itself (room-key reset)
                outcome.served_at = now
            if event == "stored":
                outcome.restored_via = "room_key_reset"
            elif event == "rejoined":
                outcome.restored_via = "rejoin"
            elif event == "session":  # a sender's new session after a join (policy ratchet)
                outcome.restored_via = "session"
            elif self.resets.restoring is not None:
                outcome.restored_via = self.resets.restoring
            else:
                outcome.restored_via = "holder"
            records.close(outcome, now)

    def _planted(self, room_id: str, user_id: str) -> bool:
        server = self.server
        if not isinstance(server, AdversarialServer):
            return False
        planted = server.attacker.planted.get((room_id, user_id))
        return planted is not None and server.room(room_id).subscriptions[user_id].e2e_key == planted[0]

    # ------------------------------------------------------------------ running

    def run(self) -> RunResult:
        started = time.perf_counter()
        self.establish()
        if isinstance(self.server, AdversarialServer):
            self.server.attacks = self.attacks
        if self.faults.any:  # the network turns faulty once the deployment is set up
            self.devices.transport = Transport(self.server, self.faults, stream(self.seed, "faults"))
        self.devices.schedule_restarts(float(self.sc.get("faults.server_restarts_per_day")))
        established = time.perf_counter()
        self._schedule()
        steps = 200
        for i in range(1, steps + 1):
            if self.check_every_step:
                self._run_checking(self.horizon * i / steps)
            else:
                self.clock.run_until(self.horizon * i / steps)
            if self.progress is not None:
                self.progress(i / steps)
        finished = time.perf_counter()
        result = collect(self)
        result.stats.update(
            {
                "wall_s": finished - started,
                "establish_s": established - started,
                "simulate_s": finished - established,
                **self.counters(),
            }
        )
        return result

    def _run_checking(self, until: float) -> None:
        """Run the events due before ``until`` one at a time, checking the invariants after each."""
        from .collect import _violations

        env = self.clock.env
        while env.peek() < until:
            env.step()
            for found in _violations(self, settled=False):
                if found not in self._seen_violations:
                    self._seen_violations.add(found)
                    self.step_violations.append(f"at t = {env.now:.1f} s: {found}")
        self.clock.run_until(until)

    def _schedule(self) -> None:
        """Every event of the run, drawn up front, each kind from its own stream."""
        sc = self.sc
        self.resets.schedule()
        self.traffic.schedule(float(sc.get("traffic.messages_per_room_day")), self.room_ids)
        m = sc.values["membership"]
        self.membership.schedule(m["join_rate_per_room_day"], m["leave_rate_per_room_day"], self.room_ids)
        self.owners.schedule_rotations(
            float(sc.get("recovery.room_key_rotation_per_room_day")), self.room_ids
        )

    def counters(self) -> dict[str, int]:
        """What the run did, counted (the ``stats`` of :class:`RunResult`, besides timings)."""
        return {
            "events": self.clock.events,
            "presence_events": getattr(self.presence, "events_generated", 0),
            "logins": self.devices.logins,
            "phones": len(self.devices.phones),
            "phone_logins": self.devices.phone_logins,
            "ticks": self.following.ticks,
            "resets": self.records.resets,
            "resets_absorbed": self.resets.absorbed,
            "messages": self.traffic.messages,
            "server_restarts": self.devices.server_restarts,
        }


def run_scenario(
    scenario: Scenario,
    *,
    progress: Callable[[float], None] | None = None,
    check_invariants: bool = False,
    check_every_step: bool = False,
) -> RunResult:
    """Run one scenario with its seed and return the tidy results; ``check_invariants`` checks
    the protocol's invariants at the horizon, ``check_every_step`` after every step as well."""
    return Simulation(
        scenario, progress=progress, check_invariants=check_invariants, check_every_step=check_every_step
    ).run()
