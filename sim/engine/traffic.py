"""Messages, joins and leaves: what rooms see during a run besides resets.

Each is drawn up front from its own stream (``traffic``, ``membership``) as a Poisson number per
room at uniform times.  A message is sent by a member who holds the room's key and is online then
(the room's history a restored user may or may not read); a join is ``addUsersToRoom`` by the
room's first member (the joiner with a key pair is queued, spec section 3.8); a leave is
``leaveRoom``, which does not re-key the room.

A join is an explicit invite (``membership.invite_fraction``) or a join without an inviter (a
team's auto-join rooms in Rocket.Chat, a room joined through a space in Matrix).  It makes no
difference to Rocket.Chat; under policy ``bundle`` an invite is made by a member online that holds
the room's key, whose client leaves the invitee a room key bundle (MSC4268), and the invitee
takes it at its next login.  An invite while no such member is online carries no bundle: join
times are the same under every policy, so that joiners are compared on the same joins.
"""

from __future__ import annotations

import random

from protocol import Server

from ..inputs.churn import PresenceModel
from ..inputs.streams import poisson, stream
from .clock import Clock
from .devices import Devices
from .following import Following
from .keys import KeyView
from .records import Records, Wait

__all__ = ["Membership", "Traffic"]


class Traffic:
    """Encrypted messages, sent by an online holder of the room's key."""

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
        seed: int,
    ) -> None:
        self.clock = clock
        self.server = server
        self.presence = presence
        self.devices = devices
        self.keys = keys
        self.records = records
        self.following = following
        self._rng = stream(seed, "traffic")
        #: messages sent so far
        self.messages = 0

    def schedule(self, rate_per_room_day: float, room_ids: list[str]) -> None:
        if rate_per_room_day <= 0:
            return
        for t, r, pick in _draw(self._rng, rate_per_room_day, len(room_ids), self.clock.horizon):
            self.clock.at(t, self.message, room_ids[r], pick)

    def message(self, room_id: str, pick: float) -> None:
        """The member at ``pick`` (a fraction of the member list) sends, if it can now."""
        now = self.clock.now
        room = self.server.room(room_id)
        if not room.encrypted:
            return
        index = self.keys.index
        members = [index[uid] for uid in room.subscriptions]
        sender = members[int(pick * len(members)) % len(members)]
        uid = self.devices.user_ids[sender]
        if not self.keys.holds(room_id, uid) or not self.presence.is_online(sender, now):
            return
        if now < self.devices[sender].locked_until:
            return
        was_online = self.devices.online(sender)
        try:
            client = self.devices.login(sender, now)
        except Wait:
            return
        if not was_online:
            self.following.stay_for_session(sender, now)
        if client.holds_current_key(room_id):
            client.send(room_id, f"message {self.messages}", now=now)
            self.messages += 1
            self.records.room_stats[room_id].messages += 1


class Membership:
    """Members joining and leaving private groups (DMs keep their two members)."""

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
        seed: int,
        invite_fraction: float = 1.0,
    ) -> None:
        self.clock = clock
        self.server = server
        self.presence = presence
        self.devices = devices
        self.keys = keys
        self.records = records
        self.following = following
        self.invite_fraction = invite_fraction
        self._rng = stream(seed, "membership")
        self._kinds = stream(seed, "join-kind")

    def schedule(self, join_rate: float, leave_rate: float, room_ids: list[str]) -> None:
        """``join_rate``, ``leave_rate``: per private group and day."""
        groups = [rid for rid in room_ids if self.server.room(rid).t == "p"]
        if not groups:
            return
        for kind, rate in (("join", join_rate), ("leave", leave_rate)):
            if rate <= 0:
                continue
            for t, r, pick in _draw(self._rng, rate, len(groups), self.clock.horizon):
                self.clock.at(t, self.change, kind, groups[r], pick)

    def change(self, kind: str, room_id: str, pick: float) -> None:
        """A join of the user at ``pick`` (a fraction of all users), or a leave of the member at
        ``pick`` (never the first member, and never below two members)."""
        now = self.clock.now
        room = self.server.room(room_id)
        members = list(room.subscriptions)
        user_ids = self.devices.user_ids
        if kind == "join":
            candidate = user_ids[int(pick * len(user_ids)) % len(user_ids)]
            if candidate in room.subscriptions or not members:
                return
            invite = self._kinds.random() < self.invite_fraction
            bundled = self._invite(room_id, candidate, now) if invite else None
            if bundled is None:
                self.server.add_user_to_room(members[0], room_id, candidate, now=now)
            join = self.records.new_join(
                self.keys.index[candidate], room_id, "invite" if invite else "auto", now
            )
            join.bundle_keys = bundled or 0
            self.devices.pump(now)
            if bundled:  # it takes the bundle at its next login
                self.following.follow(join.user)
            if room.is_waiting(candidate):
                self.following.wake_holders(room_id, candidate)
            return
        if len(members) <= 2:
            return
        leaver = members[1 + int(pick * (len(members) - 1)) % (len(members) - 1)]
        u_leaver = self.keys.index[leaver]
        joined = self.records.open_joins.get((u_leaver, room_id))
        if joined is not None:
            joined.left_at = now
            self.records.close_join(joined, now)
        waiting = self.records.open.get((u_leaver, room_id))
        if waiting is not None:  # it stops waiting for this room's key
            waiting.left_at = now
            self.records.close(waiting, now)
        self.server.leave_room(leaver, room_id)
        self.devices.pump(now)
        self.records.note_loss(room_id, now)

    def _invite(self, room_id: str, invitee: str, now: float) -> int | None:
        """Policy ``bundle``: the first member online now that holds the room's key invites
        ``invitee`` through its client; returns the keys its bundle carried, or None when no
        such member can act now (the join then happens without one)."""
        if not self.server.mechanisms.bundle:
            return None
        for uid in self.keys.holders_ids(room_id):
            u = self.keys.index[uid]
            if not self.presence.is_online(u, now) or now < self.devices[u].locked_until:
                continue
            was_online = self.devices.online(u)
            try:
                client = self.devices.login(u, now)
            except Wait:
                continue
            if not was_online:
                self.following.stay_for_session(u, now)
            if not client.functional or not client.holds_current_key(room_id):
                continue
            return client.invite(room_id, invitee, now=now)
        return None


def _draw(
    rng: random.Random, rate_per_day: float, rooms: int, horizon: float
) -> list[tuple[float, int, float]]:
    """A Poisson number of events over ``rooms`` rooms, in time order: (time, room, pick)."""
    count = poisson(rng, rate_per_day * rooms * horizon / 86400.0)
    return sorted((rng.uniform(0, horizon), rng.randrange(rooms), rng.random()) for _ in range(count))
