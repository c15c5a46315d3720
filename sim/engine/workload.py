"""What happens to people during a run: resets (by rate, forgotten passwords, lost
authenticators, scripted), owners' room-key resets of lost rooms and rotations, messages, joins
and leaves.

:class:`WorkloadMixin` is part of :class:`sim.engine.simulation.Simulation`.  Every kind of event is drawn
up front from its own named stream (so adding one never shifts another) and scheduled as a plain
timeout callback; a reset then happens at the user's next online moment, except a scripted one,
which happens at its time (for a user offline then, by an admin) with the relogin at the user's
next online start after any lockout.

Each reset opens one outcome row per encrypted room of the user.  A row closes when the user is
restored, when the same user resets again (``superseded_at``), when it leaves the room
(``left_at``) or when it accepts a key a malicious server planted; the history it records is read
then (:func:`sim.engine.collect.snapshot`).
"""

from __future__ import annotations

import math
import random

import numpy

from protocol import ProtocolError

from .records import Outcome, Wait
from .state import SimulationState

__all__ = ["WorkloadMixin"]


class WorkloadMixin(SimulationState):
    # ------------------------------------------------------------------ resets

    def schedule_resets(self) -> None:
        r = self.sc.values["resets"]
        days = self.horizon / 86400.0
        plans: list[tuple[float, int, str]] = []
        for reason, rate in (
            ("reset", r["rate_per_user_day"]),
            ("forgot_password", r["forgot_password_rate_per_user_day"]),
        ):
            if rate > 0:
                count = _poisson(self._rng_resets, rate * self.n * days)
                plans += [
                    (self._rng_resets.uniform(0, self.horizon), self._rng_resets.randrange(self.n), reason)
                    for _ in range(count)
                ]
        lost_rate = r["lost_authenticator_rate_per_user_day"]
        if lost_rate > 0 and self.totp_secret:
            twofa_users = sorted(self.totp_secret)
            count = _poisson(self._rng_resets, lost_rate * len(twofa_users) * days)
            plans += [
                (
                    self._rng_resets.uniform(0, self.horizon),
                    self._rng_resets.choice(twofa_users),
                    "lost_authenticator",
                )
                for _ in range(count)
            ]
        plans += [(s.at, s.user, "scripted") for s in self.sc.scripted_resets]
        for t, u, reason in sorted(plans):
            self._at(t, self._scripted_reset if reason == "scripted" else self._plan_reset, u, reason)

    def _plan_reset(self, u: int, reason: str) -> None:
        """A reset is due: it happens at the user's next online moment."""
        now = self.now
        start = self.presence.next_online_start(u, now)
        if start is None or start >= self.horizon:
            return
        self._at(start, self._reset, u, reason)

    def _scripted_reset(self, u: int, reason: str) -> None:
        """A scripted reset happens at its time.  A user online then resets on its device and logs
        in again at once.  A user offline then (or locked out) has its key reset for it, through
        RC's ``users.resetE2EKey`` by an admin, which also logs it out everywhere; it logs in
        again at its next online start."""
        now = self.now
        if (self.presence.is_online(u, now) or self._online(u)) and now >= self.devices[u].locked_until:
            self._reset(u, reason)
            return
        uid = self.user_ids[u]
        rows = self._new_rows(u, reason, now)
        self.server.admin_reset_e2e_key(self._admin_id(), uid, "admin-pw", now=now)  # password fallback
        dev = self.devices[u]
        if dev.client is not None and dev.client.online:
            dev.client.logout()  # its login tokens are gone: the device is signed out
        dev.client = None
        self._after_key_reset(u, rows, now)
        start = self.presence.next_online_start(u, max(now, dev.locked_until))
        if start is None or start >= self.horizon:
            return  # never back before the horizon: the rows stay without a relogin
        self.awaiting_relogin[u] = rows
        if dev.pending_login is None or dev.pending_login > start:
            dev.pending_login = start
            self._at(start, self._session_start, u)

    def _new_rows(self, u: int, reason: str, now: float) -> list[Outcome]:
        """A reset of ``u`` now: one open row per encrypted room of ``u``.  Rows an earlier reset
        left open are superseded (censored now)."""
        self.counters["resets"] += 1
        self.reset_counter += 1
        for key in [k for k in self.open if k[0] == u]:
            earlier = self.open[key]
            earlier.superseded_at = now
            self._close(earlier, now)
        self.awaiting_relogin.pop(u, None)
        # the first reset after a lockout carries it (whatever made it happen first)
        locked_out_at = self.locked_out_at.pop(u, math.nan)
        rows = []
        for rid in self.server.rooms_of(self.user_ids[u]):
            room = self.server.room(rid)
            if not room.encrypted:
                continue
            outcome = Outcome(self.reset_counter, reason, u, rid, room.t, len(room.subscriptions), now)
            outcome.locked_out_at = locked_out_at
            rows.append(outcome)
            self.outcomes.append(outcome)
            self.open[(u, rid)] = outcome
        return rows

    def _reset(self, u: int, reason: str) -> None:
        now = self.now
        dev = self.devices[u]
        if now < dev.locked_until:
            self._at(dev.locked_until, self._plan_reset, u, reason)
            return
        if reason != "lost_authenticator":
            rows = self.awaiting_relogin.pop(u, None)
            if rows is not None:
                # reset by an admin while away: the key is new already, the person logs in
                self.counters["resets_absorbed"] += 1
                self._relogin(u, rows)
                return
            if dev.reset_relogin_at == now:  # it has just logged in again after a reset
                self.counters["resets_absorbed"] += 1
                return
        if reason == "lost_authenticator":
            # The person cannot pass the 2FA gate: login fails, and an admin must reset its
            # TOTP.  Until then the user is locked out; afterwards it logs in without TOTP,
            # on a new authenticator-less device, and resets its E2E key.
            if u not in self.totp_secret:  # its TOTP is gone already: no authenticator to lose
                return
            self.totp_secret.pop(u, None)
            self._last_step.pop(u, None)
            if self._online(u):
                self._logout(u, now)
            delay = float(self.sc.get("resets.admin_delay_hours")) * 3600.0
            dev.locked_until = now + delay
            self.locked_out_at[u] = now
            self._at(now + delay, self._admin_resets_totp, u)
            return
        try:
            client = self._login(u, now, unlock=reason != "forgot_password")
        except Wait as wait:
            self._at(wait.until, self._reset, u, reason)
            return
        if self._code_ready_at(u, now) > now:  # no fresh code left for the reset itself
            self._logout(u, now)
            self._at(self._code_ready_at(u, now), self._reset, u, reason)
            return
        if reason != "forgot_password" and dev.login_at == now:
            # at its session start: RC's first distribution tick runs at login, before the
            # person gets to the reset (a forgotten-password login is on a new device, which
            # cannot unlock)
            self._tick_once(u, client, now)
        rows = self._new_rows(u, reason, now)
        client.reset_own_key(self._code(u, now), now=now)
        self._after_key_reset(u, rows, now)
        # ... and logs in again at once
        self._relogin(u, rows)

    def _after_key_reset(self, u: int, rows: list[Outcome], now: float) -> None:
        """``u``'s key pair is gone (and with it the E2E password it remembered): its device is
        signed out, and the rooms of ``rows`` may have lost their last holder."""
        self.e2e_password[u] = None
        dev = self.devices[u]
        dev.online_until = -1.0
        dev.ticking = False
        self._pump(now)
        for rid in dict.fromkeys(o.room for o in rows):
            self._note_loss(rid, now)

    def _admin_resets_totp(self, u: int) -> None:
        now = self.now
        admin = self._admin_id()
        self.server.admin_reset_totp(admin, self.user_ids[u], "admin-pw", now=now)  # password fallback
        self.devices[u].locked_until = now
        self._at(now, self._plan_reset, u, "after_lost_authenticator")

    def _admin_id(self) -> str:
        if not hasattr(self, "_admin"):
            self._admin = self.server.create_user("keysim-admin", "admin-pw", roles=("admin",))
        return self._admin

    def _relogin(self, u: int, rows: list[Outcome]) -> None:
        """``u`` logs in again after a reset of its key (new key pair).  Rows that stopped waiting
        meanwhile (the user left the room, or reset again) keep no relogin."""
        now = self.now
        uid = self.user_ids[u]
        dev = self.devices[u]
        rows = [o for o in rows if self.open.get((u, o.room)) is o]
        dev.reset_relogin_at = now
        for outcome in rows:
            holders = self._holders(outcome.room, exclude=uid)
            outcome.relogin_at = now
            outcome.holders_at_relogin = len(holders)
            outcome.holders = tuple(holders)
            outcome.holders_online_at_relogin = sum(1 for m in holders if self.presence.is_online(m, now))
        if self.policy == "live":
            self._co_present_members(u, now)
        try:
            self._login(u, now, fresh=True)
        except Wait as wait:
            self._at(wait.until, self._relogin, u, rows)
            return
        dev.online_until = max(
            self.presence.session_end(u, now) if self.presence.is_online(u, now) else now, now
        )
        if dev.online_until <= now:
            dev.online_until = now + 1.0
        self._at(dev.online_until, self._session_end, u)
        self._pump(now)
        if self.policy == "backup" and u in self.recovery_keys:
            keep = float(self.sc.get("resets.recovery_key_kept_fraction"))
            client = dev.client
            assert client is not None
            if self._rng_recovery.random() < keep:
                self._restoring_from_backup = True
                try:
                    client.restore_from_backup(self.recovery_keys[u], now=now)
                finally:
                    self._restoring_from_backup = False
                self._pump(now)
            else:
                del self.recovery_keys[u]
        if dev.client is not None and dev.client.recovery_key is not None:
            self.recovery_keys[u] = dev.client.recovery_key
        for outcome in rows:
            if (u, outcome.room) in self.open:
                self._wake_holders(outcome.room, uid)
        self._maybe_tick(u)

    def _note_regained(self, room_id: str, now: float) -> None:
        """A lost room has a holder again (a room-key reset, or a pending suggestion accepted)."""
        if room_id in self.lost_rooms:
            self.lost_rooms.discard(room_id)
            self.lost_count -= 1
            self.lost_timeline.append((now, self.lost_count))

    def _note_loss(self, room_id: str, now: float) -> None:
        """After a reset: if no member holds the room's current key any more, the room is lost."""
        room = self.server.room(room_id)
        if not room.encrypted or self._holders(room_id):
            return
        stats = self.room_stats[room_id]
        if math.isnan(stats.lost_at):
            stats.lost_at = now
        if room_id in self.lost_rooms:
            return
        self.lost_rooms.add(room_id)
        self.lost_count += 1
        self.lost_timeline.append((now, self.lost_count))
        if self.sc.get("recovery.owner_resets_lost_rooms"):
            self._owner_acts(room_id, now, rotation=False)

    def _owner_acts(self, room_id: str, now: float, *, rotation: bool) -> None:
        """The room's (first) owner resets its key at its next online moment: to recover a lost
        room, or to rotate the key of a room it holds."""
        room = self.server.room(room_id)
        owners = [self.index[uid] for uid, sub in room.subscriptions.items() if "owner" in sub.roles]
        if owners:
            start = self.presence.next_online_start(owners[0], now)
            if start is not None:
                self._at(max(start, now), self._owner_resets_room, owners[0], room_id, rotation)

    def _owner_resets_room(self, u: int, room_id: str, rotation: bool = False) -> None:
        """``e2e.resetRoomKey`` through the owner's client.  A recovery happens only while nobody
        holds the key; a rotation only while the owner does (it passes the old key on as
        ``oldRoomKeys``, so members restored later can read the history)."""
        now = self.now
        uid = self.user_ids[u]
        if uid not in self.server.room(room_id).subscriptions or not self.presence.is_online(u, now):
            return
        allowed = self._holds(room_id, uid) if rotation else not self._holders(room_id)
        if not allowed or now < self.devices[u].locked_until:
            return
        if u in self.awaiting_relogin:  # reset by an admin while away: this is its relogin
            self._relogin(u, self.awaiting_relogin.pop(u))
        was_online = self._online(u)
        try:
            client = self._login(u, now)
        except Wait:
            return
        if not client.functional:
            return
        if not was_online:
            dev = self.devices[u]
            dev.online_until = self.presence.session_end(u, now)
            self._at(dev.online_until, self._session_end, u)
        try:
            client.reset_room_key(room_id, now=now)
        except ProtocolError:
            return
        if rotation:
            self.room_stats[room_id].room_key_rotations += 1
        else:
            self.room_stats[room_id].room_key_resets += 1
        self._note_regained(room_id, now)
        self._pump(now)
        self._maybe_tick(u)
        if self.policy == "live":
            # the other members lack the new key; RC's onRoomKeyReset sends no request, so each
            # asks at its next login (those online now: after this session)
            for uid_m in self.server.room(room_id).subscriptions:
                m = self.index[uid_m]
                if m == u or self._online(m):
                    continue
                if self.presence.is_online(m, now):
                    self._at(self.presence.session_end(m, now), self.follow, m)
                else:
                    self.follow(m)

    def schedule_rotations(self) -> None:
        """Owners' room-key rotations: a Poisson number per encrypted private group (DMs have no
        owner), each at a uniform time, carried out at the owner's next online moment if it then
        holds the key."""
        rate = float(self.sc.get("recovery.room_key_rotation_per_room_day"))
        groups = [
            rid for rid in self.room_ids if self.server.room(rid).t == "p" and self.server.room(rid).encrypted
        ]
        if rate <= 0 or not groups:
            return
        rng = self._rng_rotation
        count = _poisson(rng, rate * len(groups) * self.horizon / 86400.0)
        for t, r in sorted((rng.uniform(0, self.horizon), rng.randrange(len(groups))) for _ in range(count)):
            self._at(t, self._plan_rotation, groups[r])

    def _plan_rotation(self, room_id: str) -> None:
        self._owner_acts(room_id, self.now, rotation=True)

    # ------------------------------------------------------------------ traffic and membership

    def schedule_traffic(self) -> None:
        rate = float(self.sc.get("traffic.messages_per_room_day"))
        if rate <= 0:
            return
        rng = self._rng_traffic
        count = _poisson(rng, rate * len(self.room_ids) * self.horizon / 86400.0)
        plans = sorted(
            (rng.uniform(0, self.horizon), rng.randrange(len(self.room_ids)), rng.random())
            for _ in range(count)
        )
        for t, r, pick in plans:
            self._at(t, self._message, self.room_ids[r], pick)

    def _message(self, room_id: str, pick: float) -> None:
        now = self.now
        room = self.server.room(room_id)
        if not room.encrypted:
            return
        members = [self.index[uid] for uid in room.subscriptions]
        sender = members[int(pick * len(members)) % len(members)]
        uid = self.user_ids[sender]
        if not self._holds(room_id, uid) or not self.presence.is_online(sender, now):
            return
        if now < self.devices[sender].locked_until:
            return
        was_online = self._online(sender)
        try:
            client = self._login(sender, now)
        except Wait:
            return
        if not was_online:
            dev = self.devices[sender]
            dev.online_until = self.presence.session_end(sender, now)
            self._at(dev.online_until, self._session_end, sender)
        if client.holds_current_key(room_id):
            client.send(room_id, f"message {self.counters['messages']}", now=now)
            self.counters["messages"] += 1
            self.room_stats[room_id].messages += 1

    def schedule_membership(self) -> None:
        m = self.sc.values["membership"]
        rng = self._rng_membership
        groups = [rid for rid in self.room_ids if self.server.room(rid).t == "p"]
        if not groups:
            return
        for kind, rate in (("join", m["join_rate_per_room_day"]), ("leave", m["leave_rate_per_room_day"])):
            if rate <= 0:
                continue
            count = _poisson(rng, rate * len(groups) * self.horizon / 86400.0)
            for t, r, pick in sorted(
                (rng.uniform(0, self.horizon), rng.randrange(len(groups)), rng.random()) for _ in range(count)
            ):
                self._at(t, self._membership, kind, groups[r], pick)

    def _membership(self, kind: str, room_id: str, pick: float) -> None:
        now = self.now
        room = self.server.room(room_id)
        members = list(room.subscriptions)
        if kind == "join":
            candidate = self.user_ids[int(pick * self.n) % self.n]
            if candidate in room.subscriptions or not members:
                return
            self.server.add_user_to_room(members[0], room_id, candidate, now=now)
            self._pump(now)
            if room.is_waiting(candidate):
                self._wake_holders(room_id, candidate)
        else:
            if len(members) <= 2:
                return
            leaver = members[1 + int(pick * (len(members) - 1)) % (len(members) - 1)]
            waiting = self.open.get((self.index[leaver], room_id))
            if waiting is not None:  # it stops waiting for this room's key
                waiting.left_at = now
                self._close(waiting, now)
            self.server.leave_room(leaver, room_id)
            self._pump(now)
            self._note_loss(room_id, now)


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count, drawn by numpy from a seed taken from ``rng`` (deterministic)."""
    if mean <= 0:
        return 0
    return int(numpy.random.default_rng(rng.getrandbits(64)).poisson(mean))
