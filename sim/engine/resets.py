"""Resets of users' E2E keys: by rate, after a forgotten password, after a lost authenticator, and
scripted; and the relogin that follows each.

Every reset is drawn up front from the ``resets`` stream (so adding another kind of event never
shifts it) and scheduled as a plain timeout callback; it then happens at the user's next online
moment, except a scripted one, which happens at its time (for a user offline then, by an admin)
with the relogin at the user's next online start after any lockout.  Each reset opens one outcome
row per encrypted room of the user (:meth:`sim.engine.records.Records.new_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol import Server
from protocol.policies import Mechanisms

from ..inputs.churn import PresenceModel
from ..inputs.streams import poisson, stream
from .clock import Clock
from .devices import Devices
from .following import Following
from .keys import KeyView
from .records import Outcome, Records, Wait

__all__ = ["Resets"]


class Resets:
    """Plans and carries out resets; owns the admin account that resets for users who cannot."""

    def __init__(
        self,
        clock: Clock,
        server: Server,
        presence: PresenceModel,
        devices: Devices,
        keys: KeyView,
        records: Records,
        following: Following,
        *,
        values: Mapping[str, Any],
        scripted: list[tuple[float, int]],
        mechanisms: Mechanisms,
        seed: int,
    ) -> None:
        self.clock = clock
        self.server = server
        self.presence = presence
        self.devices = devices
        self.keys = keys
        self.records = records
        self.following = following
        #: the scenario's ``resets`` table
        self.values = values
        #: the scenario's scripted resets, (time, user)
        self.scripted_resets = scripted
        self.mechanisms = mechanisms
        self._rng = stream(seed, "resets")
        self._rng_recovery = stream(seed, "recovery")
        self._admin: str | None = None
        #: resets that found the user's key already new (reset by an admin, or just relogged in)
        self.absorbed = 0
        #: true while a client restores its key from the server-side backup (read by the
        #: simulation's key-event listener to tell a backup restore from a holder's)
        self.restoring_from_backup = False
        following.relogin = self.relogin

    # -- planning

    def schedule(self) -> None:
        """Draw every reset of the run, and schedule the scripted ones."""
        r, rng, horizon = self.values, self._rng, self.clock.horizon
        n = len(self.devices)
        days = horizon / 86400.0
        plans: list[tuple[float, int, str]] = []
        for reason, rate in (
            ("reset", r["rate_per_user_day"]),
            ("forgot_password", r["forgot_password_rate_per_user_day"]),
        ):
            if rate > 0:
                count = poisson(rng, rate * n * days)
                plans += [(rng.uniform(0, horizon), rng.randrange(n), reason) for _ in range(count)]
        lost_rate = r["lost_authenticator_rate_per_user_day"]
        totp_users = sorted(self.devices.totp_secret)
        if lost_rate > 0 and totp_users:
            count = poisson(rng, lost_rate * len(totp_users) * days)
            plans += [
                (rng.uniform(0, horizon), rng.choice(totp_users), "lost_authenticator") for _ in range(count)
            ]
        plans += [(t, u, "scripted") for t, u in self.scripted_resets]
        for t, u, reason in sorted(plans):
            self.clock.at(t, self.scripted if reason == "scripted" else self.plan, u, reason)

    def plan(self, u: int, reason: str) -> None:
        """A reset is due: it happens at the user's next online moment."""
        start = self.presence.next_online_start(u, self.clock.now)
        if start is None or start >= self.clock.horizon:
            return
        self.clock.at(start, self.reset, u, reason)

    def scripted(self, u: int, reason: str) -> None:
        """A scripted reset happens at its time.  A user online then resets on its device and logs
        in again at once.  A user offline then (or locked out) has its key reset for it, through
        RC's ``users.resetE2EKey`` by an admin, which also logs it out everywhere; it logs in
        again at its next online start."""
        now = self.clock.now
        dev = self.devices[u]
        if (self.presence.is_online(u, now) or self.devices.online(u)) and now >= dev.locked_until:
            self.reset(u, reason)
            return
        uid = self.devices.user_ids[u]
        rows = self.records.new_rows(u, reason, now)
        self.server.admin_reset_e2e_key(self._admin_id(), uid, "admin-pw", now=now)  # password fallback
        self.devices.signed_out(u)
        self._after_key_reset(u, rows, now)
        start = self.presence.next_online_start(u, max(now, dev.locked_until))
        if start is None or start >= self.clock.horizon:
            return  # never back before the horizon: the rows stay without a relogin
        self.records.awaiting_relogin[u] = rows
        if dev.pending_login is None or dev.pending_login > start:
            dev.pending_login = start
            self.clock.at(start, self.following.session_start, u)

    # -- carrying out

    def reset(self, u: int, reason: str) -> None:
        now = self.clock.now
        dev = self.devices[u]
        if now < dev.locked_until:
            self.clock.at(dev.locked_until, self.plan, u, reason)
            return
        if reason == "lost_authenticator":
            self._lose_authenticator(u, now)
            return
        rows = self.records.awaiting_relogin.pop(u, None)
        if rows is not None:
            # reset by an admin while away: the key is new already, the person logs in
            self.absorbed += 1
            self.relogin(u, rows)
            return
        if dev.reset_relogin_at == now:  # it has just logged in again after a reset
            self.absorbed += 1
            return
        try:
            client = self.devices.login(u, now, unlock=reason != "forgot_password")
        except Wait as wait:
            self.clock.at(wait.until, self.reset, u, reason)
            return
        ready = self.devices.code_ready_at(u, now)
        if ready > now:  # no fresh code left for the reset itself
            self.devices.logout(u, now)
            self.clock.at(ready, self.reset, u, reason)
            return
        if reason != "forgot_password" and dev.login_at == now:
            # at its session start: RC's first distribution tick runs at login, before the
            # person gets to the reset (a forgotten-password login is on a new device, which
            # cannot unlock)
            self.following.tick_once(u, client, now)
        rows = self.records.new_rows(u, reason, now)
        client.reset_own_key(self.devices.code(u, now), now=now)
        self._after_key_reset(u, rows, now)
        # ... and logs in again at once
        self.relogin(u, rows)

    def _lose_authenticator(self, u: int, now: float) -> None:
        """The person cannot pass the 2FA gate: login fails, and an admin must reset its TOTP.
        Until then the user is locked out; afterwards it logs in without TOTP, on a new
        authenticator-less device, and resets its E2E key."""
        if not self.devices.lose_authenticator(u):  # its TOTP is gone already: nothing to lose
            return
        if self.devices.online(u):
            self.devices.logout(u, now)
        delay = float(self.values["admin_delay_hours"]) * 3600.0
        self.devices[u].locked_until = now + delay
        self.records.locked_out_at[u] = now
        self.clock.at(now + delay, self._admin_resets_totp, u)

    def _after_key_reset(self, u: int, rows: list[Outcome], now: float) -> None:
        """``u``'s key pair is gone: the rooms of ``rows`` may have lost their last holder."""
        self.devices.key_gone(u, now)
        for rid in dict.fromkeys(o.room for o in rows):
            self.records.note_loss(rid, now)

    def _admin_resets_totp(self, u: int) -> None:
        now = self.clock.now
        uid = self.devices.user_ids[u]
        self.server.admin_reset_totp(self._admin_id(), uid, "admin-pw", now=now)  # password fallback
        self.devices[u].locked_until = now
        self.clock.at(now, self.plan, u, "after_lost_authenticator")

    def _admin_id(self) -> str:
        # made on first use: an account made at set-up would shift the server's entropy
        if self._admin is None:
            self._admin = self.server.create_user("keysim-admin", "admin-pw", roles=("admin",))
        return self._admin

    # -- the relogin

    def relogin(self, u: int, rows: list[Outcome]) -> None:
        """``u`` logs in again after a reset of its key (new key pair).  Rows that stopped waiting
        meanwhile (the user left the room, or reset again) keep no relogin."""
        now = self.clock.now
        uid = self.devices.user_ids[u]
        dev = self.devices[u]
        is_open = self.records.open
        rows = [o for o in rows if is_open.get((u, o.room)) is o]
        dev.reset_relogin_at = now
        for outcome in rows:
            holders = self.keys.holders(outcome.room, exclude=uid)
            outcome.relogin_at = now
            outcome.holders_at_relogin = len(holders)
            outcome.holders = tuple(holders)
            outcome.holders_online_at_relogin = sum(1 for m in holders if self.presence.is_online(m, now))
        if self.mechanisms.live:
            self.following.co_present_members(u, now)
        try:
            self.devices.login(u, now, fresh=True)
        except Wait as wait:
            self.clock.at(wait.until, self.relogin, u, rows)
            return
        dev.online_until = max(
            self.presence.session_end(u, now) if self.presence.is_online(u, now) else now, now
        )
        if dev.online_until <= now:
            dev.online_until = now + 1.0
        self.clock.at(dev.online_until, self.following.session_end, u)
        self.devices.pump(now)
        if self.mechanisms.backup:
            self._restore_from_backup(u, now)
        if dev.client is not None and dev.client.recovery_key is not None:
            self.devices.recovery_keys[u] = dev.client.recovery_key
        for outcome in rows:
            if (u, outcome.room) in is_open:
                self.following.wake_holders(outcome.room, uid)
        self.following.maybe_tick(u)

    def _restore_from_backup(self, u: int, now: float) -> None:
        """Server-side key backup: the person kept its recovery key with the scenario's
        probability, and restores its old key pair with it."""
        recovery_keys = self.devices.recovery_keys
        if u not in recovery_keys:
            return
        client = self.devices[u].client
        assert client is not None
        if self._rng_recovery.random() < float(self.values["recovery_key_kept_fraction"]):
            self.restoring_from_backup = True
            try:
                client.restore_from_backup(recovery_keys[u], now=now)
            finally:
                self.restoring_from_backup = False
            self.devices.pump(now)
        else:
            del recovery_keys[u]
