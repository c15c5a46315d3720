"""Resets of users' E2E keys: by rate, after a forgotten password, after a lost authenticator, and
scripted; and the relogin that follows each.

Every reset is drawn up front from the ``resets`` stream (so adding another kind of event never
shifts it) and scheduled as a plain timeout callback; it then happens at the user's next online
moment, except a scripted one, which happens at its time (for a user offline then, by an admin)
with the relogin at the user's next online start after any lockout.  Each reset opens one outcome
row per encrypted room of the user (:meth:`sim.engine.records.Records.new_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from protocol import Client, NotFoundError, Server
from protocol.escrow import EscrowError
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
        escrow: Mapping[str, Any],
        contacts: Mapping[str, Any],
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
        #: the scenario's ``escrow`` and ``contacts`` tables (policies escrow, contacts)
        self.escrow = escrow
        self.contacts = contacts
        #: policy contacts: people waiting for a contact's answer, (reset number, rows)
        self._contact_waits: dict[int, tuple[int, list[Outcome]]] = {}
        #: the scenario's scripted resets, (time, user)
        self.scripted_resets = scripted
        self.mechanisms = mechanisms
        self._rng = stream(seed, "resets")
        self._rng_recovery = stream(seed, "recovery")
        self._rng_escrow = stream(seed, "escrow")
        self._admin: str | None = None
        #: resets that found the user's key already new (reset by an admin, or just relogged in)
        self.absorbed = 0
        #: while a client restores keys itself: from where ("backup", "dehydrated"; read by the
        #: simulation's key-event listener to tell such a restore from a holder's)
        self.restoring: str | None = None
        self._rng_dehydrated = stream(seed, "rehydration")
        following.relogin = self.relogin
        if mechanisms.contacts:
            following.after_login = self.after_login

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
        self._stop_waiting(u)
        rows = self.records.new_rows(u, reason, now)
        self.records.close_joins_of(u, now)
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
        forgot = reason == "forgot_password"
        phone = forgot and self.devices.phone_holds_key(u)
        escrow = forgot and self.mechanisms.escrow
        contacts = forgot and self.mechanisms.contacts and u not in self._contact_waits
        if (phone or escrow or contacts) and self.devices.online(u):
            self.devices.logout(u, now)  # the person who forgot is on a new device
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
        self._stop_waiting(u)
        rows = self.records.new_rows(u, reason, now)
        if phone:
            self._from_phone(u, client, now)
            self._recovered(u, rows, "phone", now)
            return
        if escrow and self._from_escrow(u, client, now):
            self._recovered(u, rows, "escrow", now)
            return
        if contacts and self._ask_contacts(u, client, rows, now):
            return
        self.records.close_joins_of(u, now)
        client.reset_own_key(self.devices.code(u, now), now=now)
        self._after_key_reset(u, rows, now)
        # ... and logs in again at once
        self.relogin(u, rows)

    def _from_phone(self, u: int, client: Client, now: float) -> None:
        """The person who forgot its E2E password still has its phone logged in with the key: it
        sets a new password there (the mobile app's E2E password change,
        ``Encryption.changePassword`` in Rocket.Chat.ReactNative) and types it on the new web
        client.  Nothing is reset.  The phone is at hand whatever its presence says: the person
        opens the app for it."""
        phone = self.devices.phones[u].client
        assert phone is not None
        password = f"e2e-u{u}-{self.records.resets}"
        phone.change_password(password, now=now)
        self.devices.e2e_password[u] = password
        if not client.enter_password(password, now=now):
            raise RuntimeError(f"u{u} cannot unlock with the password its phone set")
        self.devices.protect_changed_password(u, password)

    def _from_escrow(self, u: int, client: Client, now: float) -> bool:
        """Policy escrow: the person who forgot its E2E password asks the vault with its PIN.

        It recalls the PIN with ``pin_remembered_fraction``; otherwise it tries, in a random
        order, ``pin_candidates`` PINs one of which is right, until the vault releases the
        password or destroys the record at its guess limit.  With ``vault_loss_fraction`` the
        record is gone before it asks.  Success has probability (1 - loss) * (remembered +
        (1 - remembered) * min(max_guesses, candidates) / candidates)
        (tests/sim/engine/test_designs.py).
        """
        e, rng, vault = self.escrow, self._rng_escrow, self.devices.vault
        assert vault is not None
        lost = rng.random() < float(e["vault_loss_fraction"])
        remembers = rng.random() < float(e["pin_remembered_fraction"])
        position = rng.randrange(int(e["pin_candidates"]))
        uid = self.devices.user_ids[u]
        if lost:
            vault.lose(uid)
        pin = self.devices.escrow_pin.get(u)
        if pin is None:
            return False
        wrong = [f"{(int(pin) + i) % 10**6:06d}" for i in range(1, int(e["pin_candidates"]))]
        guesses = [pin] if remembers else [*wrong[:position], pin, *wrong[position:]]
        for guess in guesses:
            try:
                return client.unlock_from_escrow(vault, guess, now=now)
            except EscrowError:
                continue
            except NotFoundError:  # never enrolled, lost, or destroyed at the guess limit
                break
        del self.devices.escrow_pin[u]
        return False

    def _ask_contacts(self, u: int, client: Client, rows: list[Outcome], now: float) -> bool:
        """Policy contacts: the person who forgot its E2E password asks its recovery contacts
        (False: it has none, and resets).  Contacts online now answer at once; otherwise the
        first to come online does, and the person unlocks at its next login after that.  After
        ``patience_hours`` without an answer it resets after all (:meth:`_give_up`)."""
        uid = self.devices.user_ids[u]
        contacts = [self.keys.index[c] for c in self.server.e2e_contacts_of(uid)]
        if not contacts:
            return False
        client.request_contact_recovery()
        self.devices.forgotten.add(u)
        self.devices.e2e_password[u] = None
        self._contact_waits[u] = (self.records.resets, rows)
        self._note_relogin(uid, rows, now)
        self._stay(u, now)
        for m in contacts:
            if not self.devices.online(m) and self.presence.is_online(m, now):
                try:
                    self.devices.login(m, now)
                except Wait:
                    continue
                self.following.stay_for_session(m, now)
            if self.devices.online(m):
                self.after_login(m)
            if u not in self._contact_waits:
                return True  # answered, and unlocked
            if m in self.devices.phones:
                self.following.open_phone(m)  # a contact whose phone app is open answers there
            if u not in self._contact_waits:
                return True
        for m in contacts:  # the first of them back answers, on either device
            self.following.follow(m)
            self.following.follow_phone(m)
        patience = float(self.contacts["patience_hours"]) * 3600.0
        self.clock.at(now + patience, self._give_up, u, self.records.resets)
        return True

    def after_login(self, m: int, client: Client | None = None) -> None:
        """Policy contacts: a device just logged in (``m``'s web client, or ``client``: its
        phone, whose app just opened) answers the requests it holds shares for, and a person
        waiting for an answer tries it (on its web client)."""
        phone = client is not None
        client = self.devices[m].client if client is None else client
        if client is None or not client.online:
            return
        if m in self._contact_waits and not phone:
            self._try_unlock(m)
        if client.functional:
            for person in client.answer_recovery_requests(now=self.clock.now):
                p = self.keys.index[person]
                if p in self._contact_waits and self.devices.online(p):
                    self._try_unlock(p)

    def _try_unlock(self, u: int) -> None:
        client = self.devices[u].client
        assert client is not None
        now = self.clock.now
        password = client.unlock_from_contacts(now=now)
        if password is None:
            return
        _, rows = self._contact_waits.pop(u)
        self.devices.forgotten.discard(u)
        self.devices.e2e_password[u] = password
        is_open = self.records.open
        self._recovered(u, [o for o in rows if is_open.get((u, o.room)) is o], "contacts", now)

    def _give_up(self, u: int, token: int) -> None:
        """Policy contacts: no answer within the person's patience: it resets its key, at its
        next online moment, and its rows go on waiting as after any reset."""
        wait = self._contact_waits.get(u)
        if wait is None or wait[0] != token:
            return
        now = self.clock.now
        if not self.devices.online(u):
            start = self.presence.next_online_start(u, now)
            if not self.presence.is_online(u, now):
                if start is not None and start < self.clock.horizon:
                    self.clock.at(start, self._give_up, u, token)
                return
            try:
                self.devices.login(u, now)
            except Wait as w:
                self.clock.at(w.until, self._give_up, u, token)
                return
        ready = self.devices.code_ready_at(u, now)
        if ready > now:
            self.clock.at(ready, self._give_up, u, token)
            return
        client = self.devices[u].client
        assert client is not None
        self._stop_waiting(u)
        is_open = self.records.open
        rows = [o for o in wait[1] if is_open.get((u, o.room)) is o]
        self.records.close_joins_of(u, now)
        client.reset_own_key(self.devices.code(u, now), now=now)
        self._after_key_reset(u, rows, now)
        self.relogin(u, rows)

    def _stop_waiting(self, u: int) -> None:
        """``u`` resets (again): an open request to its contacts is abandoned."""
        if self._contact_waits.pop(u, None) is not None:
            self.devices.forgotten.discard(u)

    def _note_relogin(self, uid: str, rows: list[Outcome], now: float) -> None:
        """``uid`` is logged in again now: what each row's room looks like at that moment."""
        for outcome in rows:
            holders = self.keys.holders(outcome.room, exclude=uid)
            outcome.relogin_at = now
            outcome.holders_at_relogin = len(holders)
            outcome.holders = tuple(holders)
            outcome.holders_online_at_relogin = sum(1 for m in holders if self.devices.reachable(m, now))

    def _recovered(self, u: int, rows: list[Outcome], via: str, now: float) -> None:
        """``u`` got its E2E password back (``via``) and unlocked its own key pair: nothing was
        reset, every row is restored now with its history.  The device stays for the session."""
        uid = self.devices.user_ids[u]
        for outcome in rows:
            if math.isnan(outcome.relogin_at):
                self._note_relogin(uid, [outcome], now)
            outcome.served_at = outcome.restored_at = now
            outcome.restored_via = via
            self.records.close(outcome, now)
        dev = self.devices[u]
        if dev.online_until <= now:
            self._stay(u, now)
        self.devices.pump(now)
        self.following.maybe_tick(u)

    def _stay(self, u: int, now: float) -> None:
        """``u``, logged in now by the reset's own flow, stays until its session ends (at least a
        second, when the flow ran at the very end of a session)."""
        dev = self.devices[u]
        dev.online_until = max(
            self.presence.session_end(u, now) if self.presence.is_online(u, now) else now, now
        )
        if dev.online_until <= now:
            dev.online_until = now + 1.0
        self.clock.at(dev.online_until, self.following.session_end, u)

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
        self._note_relogin(uid, rows, now)
        if self.following.live_answered and not self.mechanisms.rejoin:
            self.following.co_present_members(u, now)
        try:
            client = self.devices.login(u, now, fresh=True)
        except Wait as wait:
            self.clock.at(wait.until, self.relogin, u, rows)
            return
        self._stay(u, now)
        self.devices.pump(now)
        if self.mechanisms.backup:
            self._restore_from_backup(u, now)
        if self.mechanisms.dehydrated:
            self._rehydrate(u, now)
        if self.mechanisms.rejoin:
            for outcome in rows:  # rejoins each room at once, MLS-style: new messages, no history
                if (u, outcome.room) in is_open:
                    client.rejoin_room(outcome.room, now=now)
            self.devices.pump(now)
        if dev.client is not None and dev.client.recovery_key is not None:
            self.devices.recovery_keys[u] = dev.client.recovery_key
        for outcome in rows:
            if (u, outcome.room) in is_open:
                self.following.wake_holders(outcome.room, uid)
        self.following.maybe_tick(u)

    def _rehydrate(self, u: int, now: float) -> None:
        """Policy dehydrated: a person with recovery set up still has its recovery secret with
        ``recovery_key_kept_fraction``, and rehydrates its dehydrated device with it (which
        makes a new one); one who lost it sets recovery up anew, with a new device."""
        devices = self.devices
        if u not in devices.dehydration_secret:
            return
        client = devices[u].client
        assert client is not None
        if self._rng_dehydrated.random() < float(self.values["recovery_key_kept_fraction"]):
            self.restoring = "dehydrated"
            try:
                client.rehydrate(devices.dehydration_secret[u], now=now)
            finally:
                self.restoring = None
            devices.made_dehydrated(u, now)
            devices.pump(now)
        else:
            devices.set_up_dehydration(u)
            devices.dehydrate(u, client, now)

    def _restore_from_backup(self, u: int, now: float) -> None:
        """Server-side key backup: the person kept its recovery key with the scenario's
        probability, and restores its old key pair with it."""
        recovery_keys = self.devices.recovery_keys
        if u not in recovery_keys:
            return
        client = self.devices[u].client
        assert client is not None
        if self._rng_recovery.random() < float(self.values["recovery_key_kept_fraction"]):
            self.restoring = "backup"
            try:
                client.restore_from_backup(recovery_keys[u], now=now)
            finally:
                self.restoring = None
            self.devices.pump(now)
        else:
            del recovery_keys[u]
