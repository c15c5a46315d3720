"""Following a user's presence, and the holders' distribution loop.

A user's device is logged in at each online start and out at each end only while the user matters
(see the theory of operation in :mod:`sim.engine.simulation`); a followed holder with distribution
work runs ``Client.tick`` every ``tick_seconds`` from its login while it is online (RC's 10 s loop,
``apps/meteor/client/lib/e2ee/rocketchat.e2e.ts``, ``initiateKeyDistribution``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from protocol import Client, Server
from protocol.policies import Mechanisms

from ..inputs.churn import PresenceModel
from .clock import Clock
from .devices import Devices
from .keys import KeyView
from .records import Device, Outcome, Records, Wait

__all__ = ["Following"]


class Following:
    """Logs followed users in and out with their presence and runs the holders' loops."""

    def __init__(
        self,
        clock: Clock,
        server: Server,
        presence: PresenceModel,
        devices: Devices,
        keys: KeyView,
        records: Records,
        *,
        mechanisms: Mechanisms,
        tick_s: float,
    ) -> None:
        self.clock = clock
        self.server = server
        self.presence = presence
        self.devices = devices
        self.keys = keys
        self.records = records
        #: the policy's mechanisms (queue, live request, backup)
        self.mechanisms = mechanisms
        self.tick_s = tick_s
        #: the relogin of a user reset while offline (:meth:`sim.engine.resets.Resets.relogin`)
        self.relogin: Callable[[int, list[Outcome]], None] = _no_relogin
        #: what a followed user does once logged in at a session start, on its web client or
        #: (given) its phone (policy contacts: :meth:`sim.engine.resets.Resets.after_login`)
        self.after_login: Callable[[int, Client | None], None] | None = None
        self.ticks = 0

    # -- following a user's presence

    def follow(self, u: int) -> None:
        """Make sure ``u``'s device is logged in whenever ``u`` is online, from now on."""
        dev = self.devices[u]
        now = self.clock.now
        if self.devices.online(u) or dev.pending_login is not None:
            return
        start = self.presence.next_online_start(u, now)
        if start is None or start >= self.clock.horizon:
            return
        if start <= now:
            self.session_start(u)
        else:
            dev.pending_login = start
            self.clock.at(start, self.session_start, u)

    def session_start(self, u: int) -> None:
        dev = self.devices[u]
        dev.pending_login = None
        now = self.clock.now
        awaiting = self.records.awaiting_relogin
        online = self.devices.online(u)
        if u in awaiting and now >= dev.locked_until and self.presence.is_online(u, now):
            self.relogin(u, awaiting.pop(u))  # reset while offline: back now
            return
        if online or now < dev.locked_until or not self.presence.is_online(u, now):
            if not online and now < dev.locked_until:
                self.clock.at(dev.locked_until, self.follow, u)
            elif u in awaiting:  # a stale start (a login that had to wait): the next
                self.follow(u)
            return
        if self.live_answered:
            self.co_present_members(u, now)
        try:
            self.devices.login(u, now)
        except Wait as wait:
            dev.pending_login = wait.until
            self.clock.at(wait.until, self.session_start, u)
            return
        self.stay_for_session(u, now)
        self.devices.pump(now)
        if self.after_login is not None:
            self.after_login(u, None)
        client = self.devices[u].client
        if client is not None and u in self.devices.dehydrated_at:
            self.devices.dehydration_due(u, client, now)
        self.maybe_tick(u)

    def stay_for_session(self, u: int, now: float) -> None:
        """``u``, just logged in, stays until its presence session ends."""
        dev = self.devices[u]
        dev.online_until = self.presence.session_end(u, now)
        self.clock.at(dev.online_until, self.session_end, u)

    def session_end(self, u: int) -> None:
        now = self.clock.now
        dev = self.devices[u]
        if dev.online_until > now + 1e-9 or not self.devices.online(u):
            return  # a later session superseded this end
        self.devices.logout(u, now)
        if self.relevant(u):
            self.follow(u)
        else:
            dev.client = None  # nothing more to keep: the device's state was wiped at logout

    def relevant(self, u: int) -> bool:
        """Whether anybody needs ``u`` online (see the theory of operation)."""
        uid = self.devices.user_ids[u]
        if self.records.waits(u):
            return True
        server, holds = self.server, self.keys.holds
        for rid in server.rooms_of(uid):  # a key waits for it to accept
            if server.room(rid).subscriptions[uid].e2e_suggested_key:
                return True
        if self.live_answered and any(
            # it asks again at each login for a room it lacks the key of, if somebody holds it
            server.room(rid).encrypted and not holds(rid, uid) and self.keys.holders(rid, exclude=uid)
            for rid in server.rooms_of(uid)
        ):
            return True
        if not self.mechanisms.queue:
            return False
        for rid in server.rooms_of(uid):
            room = server.room(rid)
            # only a waiting member with a key pair can be served (a user reset by an admin gets
            # one when it logs in again, and wakes the holders then)
            if (
                room.users_waiting
                and not room.is_waiting(uid)
                and holds(rid, uid)
                and any(server.user(w.user_id).e2e_public_key for w in room.users_waiting)
            ):
                return True
        return False

    def co_present_members(self, u: int, now: float) -> None:
        """Live request: log in every holder online at ``now`` in ``u``'s rooms that lack a key,
        so that ``u``'s request reaches exactly the members connected at this moment: their web
        clients if those answer (policy ``live``), and their open phone apps."""
        uid = self.devices.user_ids[u]
        web, phones = self.mechanisms.live_web, self.devices.phones
        for rid in self.server.rooms_of(uid):
            room = self.server.room(rid)
            if not room.encrypted or self.keys.holds(rid, uid):
                continue
            for m in self.keys.holders(rid, exclude=uid):
                if (
                    web
                    and not self.devices.online(m)
                    and self.presence.is_online(m, now)
                    and now >= self.devices[m].locked_until
                ):
                    try:
                        self.devices.login(m, now)
                    except Wait:
                        continue  # still waiting for a code: misses this request
                    self.stay_for_session(m, now)
                if m in phones:
                    self.open_phone(m)  # open now (per its presence): it hears the request

    @property
    def live_answered(self) -> bool:
        """Whether anybody answers a live request: web clients (policy ``live``), or phones."""
        return self.mechanisms.live and (self.mechanisms.live_web or bool(self.devices.phones))

    # -- dehydrated devices (policy dehydrated)

    def dehydration_due(self, u: int) -> None:
        """``u``'s dehydrated device is a week old: replaced now if ``u`` is logged in, else at
        its next online start (a login it makes anyway, followed or not)."""
        client = self.devices[u].client
        now = self.clock.now
        if client is not None and client.online:
            self.devices.dehydration_due(u, client, now)
            return
        dev = self.devices[u]
        start = self.presence.next_online_start(u, now)
        if start is None or start >= self.clock.horizon or dev.pending_login is not None:
            return  # a login is scheduled anyway: it replaces the device (session_start)
        dev.pending_login = start
        self.clock.at(start, self.session_start, u)

    # -- phones

    def follow_phone(self, u: int) -> None:
        """Make sure ``u``'s phone app is open whenever its presence says so, from now on (while
        ``u`` matters; the phone stays logged in between openings)."""
        dev, presence = self.devices.phones.get(u), self.devices.phone_presence
        if dev is None or presence is None or dev.connected or dev.pending_login is not None:
            return
        now = self.clock.now
        start = presence.next_online_start(u, now)
        if start is None or start >= self.clock.horizon:
            return
        if start <= now:
            self.open_phone(u)
        else:
            dev.pending_login = start
            self.clock.at(start, self.phone_start, u)

    def phone_start(self, u: int) -> None:
        """The scheduled opening of ``u``'s phone app (a stale one, whose app has closed again
        meanwhile, follows the phone on to its next opening)."""
        dev, presence = self.devices.phones[u], self.devices.phone_presence
        assert presence is not None
        dev.pending_login = None
        if not dev.connected and not presence.is_online(u, self.clock.now):
            self.follow_phone(u)
            return
        self.open_phone(u)

    def open_phone(self, u: int) -> None:
        """``u``'s phone app is open now (by its presence): it resyncs (or signs in again after a
        reset), takes what waits for it, and runs its distribution loop while open."""
        dev, presence = self.devices.phones[u], self.devices.phone_presence
        assert presence is not None
        now = self.clock.now
        if dev.connected or dev.pending_login is not None or not presence.is_online(u, now):
            return
        was_online = dev.client is not None and dev.client.online
        try:
            client = self.devices.login_phone(u, now)
        except Wait as wait:
            dev.pending_login = wait.until
            self.clock.at(wait.until, self.phone_start, u)
            return
        if client is None:
            return  # logged out and cannot sign in yet: it opens again after the next new keys
        dev.connected = True
        dev.online_until = presence.session_end(u, now)
        if was_online:
            dev.login_at = presence.session_start(u, now)  # the loop's phase: the app's opening
            client.sync(now=now)
        self.clock.at(dev.online_until, self.phone_end, u)
        self.devices.pump(now)
        if self.after_login is not None:
            self.after_login(u, client)
        self._maybe_tick(u, dev)

    def phone_end(self, u: int) -> None:
        dev = self.devices.phones[u]
        now = self.clock.now
        if not dev.connected or dev.online_until > now + 1e-9:
            return  # a later opening superseded this end, or a reset logged it out
        dev.connected = dev.ticking = False
        dev.online_until = -1.0
        if self.relevant(u):
            self.follow_phone(u)

    # -- the distribution loop

    def maybe_tick(self, u: int) -> None:
        """Start ``u``'s tick chain if it is online, idle and has work (phase: its login time)."""
        self._maybe_tick(u, self.devices[u])

    def _maybe_tick(self, u: int, dev: Device) -> None:
        if not self.mechanisms.queue:
            return
        client = dev.client
        if dev.ticking or client is None or not client.has_distribution_work():
            return
        now = self.clock.now
        k = math.ceil((now - dev.login_at) / self.tick_s - 1e-9)
        t = dev.login_at + max(0, k) * self.tick_s
        if t >= dev.online_until:
            return
        dev.ticking = True
        self.clock.at(t, self._tick, u, dev)

    def _tick(self, u: int, dev: Device) -> None:
        now = self.clock.now
        client = dev.client
        if client is None or not client.online or now >= dev.online_until:
            dev.ticking = False
            return
        self.tick_once(u, client, now, dev)
        if client.has_distribution_work() and now + self.tick_s < dev.online_until:
            self.clock.at(now + self.tick_s, self._tick, u, dev)
        else:
            dev.ticking = False

    def tick_once(self, u: int, client: Client, now: float, dev: Device | None = None) -> None:
        """One run of the distribution loop of ``u``'s device (its web client unless ``dev``
        says otherwise) now, if it has work (at most one per instant)."""
        dev = self.devices[u] if dev is None else dev
        if client.has_distribution_work() and dev.last_tick_at != now:
            self.ticks += 1
            dev.last_tick_at = now
            client.tick(now=now)
            self.devices.pump(now)

    def wake_holders(self, room_id: str, waiting_user: str) -> None:
        """Somebody waits in ``room_id``: its holders' loops run (followed if offline), on the
        web client and on the phone."""
        if not self.mechanisms.queue:
            return
        phones = self.devices.phones
        for m in self.keys.holders(room_id, exclude=waiting_user):
            if self.devices.online(m):
                self.maybe_tick(m)
            else:
                self.follow(m)
            phone = phones.get(m)
            if phone is not None:
                if phone.connected:
                    self._maybe_tick(m, phone)
                else:
                    self.follow_phone(m)


def _no_relogin(u: int, rows: list[Outcome]) -> None:
    raise RuntimeError(f"u{u} awaits a relogin, but the run has no resets")
