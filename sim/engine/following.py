"""Following a user's presence, and the holders' distribution loop.

:class:`FollowingMixin` is part of :class:`sim.engine.simulation.Simulation`.  A user's device is logged in at
each online start and out at each end only while the user matters (see the theory of operation in
:mod:`sim.engine`); a followed holder with distribution work runs ``Client.tick`` every
``tick_seconds`` from its login while it is online.
"""

from __future__ import annotations

import math

from protocol import Client, ProtocolError

from .records import Wait
from .state import SimulationState

__all__ = ["FollowingMixin"]


class FollowingMixin(SimulationState):
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
            # it asks again at each login for a room it lacks the key of, if somebody holds it
            return any(
                self.server.room(rid).encrypted
                and not self._holds(rid, uid)
                and self._holders(rid, exclude=uid)
                for rid in self.server.rooms_of(uid)
            )
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
        self._tick_once(u, client, now)
        if client.has_distribution_work() and now + self.tick_s < dev.online_until:
            self._at(now + self.tick_s, self._tick, u)
        else:
            dev.ticking = False

    def _tick_once(self, u: int, client: Client, now: float) -> None:
        """One run of ``u``'s distribution loop now, if it has work (at most one per instant)."""
        dev = self.devices[u]
        if client.has_distribution_work() and dev.last_tick_at != now:
            self.counters["ticks"] += 1
            dev.last_tick_at = now
            client.tick(now=now)
            self._pump(now)

    def _wake_holders(self, room_id: str, waiting_user: str) -> None:
        if self.policy == "live":
            return
        for m in self._holders(room_id, exclude=waiting_user):
            if self._online(m):
                self._maybe_tick(m)
            else:
                self.follow(m)
