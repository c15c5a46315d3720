"""Room owners' room-key resets: of a room that lost its last holder, and rotations.

RC's ``e2e.resetRoomKey`` (#33328, 7.0; spec section 3.7) needs ``toggle-room-e2e-encryption``,
which a room's owner has: every member's current key moves into its ``oldRoomKeys``, the room
gets a new kid, the caller gets the new key at once and the former holders are queued for it.  A
run models two uses: ``recovery.owner_resets_lost_rooms`` (the first owner resets a lost room at
its next online moment) and ``recovery.room_key_rotation_per_room_day`` (a Poisson number of
rotations per encrypted private group, each carried out only while the owner holds the key).
"""

from __future__ import annotations

from protocol import ProtocolError, Server
from protocol.policies import Mechanisms

from ..inputs.churn import PresenceModel
from ..inputs.streams import poisson, stream
from .clock import Clock
from .devices import Devices
from .following import Following
from .keys import KeyView
from .records import Records, Wait
from .resets import Resets

__all__ = ["Owners"]


class Owners:
    """Carries out owners' room-key resets and rotations."""

    def __init__(
        self,
        clock: Clock,
        server: Server,
        presence: PresenceModel,
        devices: Devices,
        keys: KeyView,
        records: Records,
        following: Following,
        resets: Resets,
        *,
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
        self.resets = resets
        self.mechanisms = mechanisms
        self._rng = stream(seed, "rotation")

    def recover(self, room_id: str, now: float) -> None:
        """A room lost its last holder: its owner resets the key (``Records.on_lost``)."""
        self._owner_acts(room_id, now, rotation=False)

    def schedule_rotations(self, rate_per_room_day: float, room_ids: list[str]) -> None:
        """Owners' room-key rotations: a Poisson number per encrypted private group (DMs have no
        owner), each at a uniform time, carried out at the owner's next online moment if it then
        holds the key."""
        groups = [
            rid for rid in room_ids if self.server.room(rid).t == "p" and self.server.room(rid).encrypted
        ]
        if rate_per_room_day <= 0 or not groups:
            return
        rng, horizon = self._rng, self.clock.horizon
        count = poisson(rng, rate_per_room_day * len(groups) * horizon / 86400.0)
        for t, r in sorted((rng.uniform(0, horizon), rng.randrange(len(groups))) for _ in range(count)):
            self.clock.at(t, self._plan_rotation, groups[r])

    def _plan_rotation(self, room_id: str) -> None:
        self._owner_acts(room_id, self.clock.now, rotation=True)

    def _owner_acts(self, room_id: str, now: float, *, rotation: bool) -> None:
        """The room's (first) owner resets its key at its next online moment."""
        room = self.server.room(room_id)
        index = self.keys.index
        owners = [index[uid] for uid, sub in room.subscriptions.items() if "owner" in sub.roles]
        if owners:
            start = self.presence.next_online_start(owners[0], now)
            if start is not None:
                self.clock.at(max(start, now), self.reset_room, owners[0], room_id, rotation)

    def reset_room(self, u: int, room_id: str, rotation: bool = False) -> None:
        """``e2e.resetRoomKey`` through the owner's client.  A recovery happens only while nobody
        holds the key; a rotation only while the owner does (it passes the old key on as
        ``oldRoomKeys``, so members restored later can read the history)."""
        now = self.clock.now
        uid = self.devices.user_ids[u]
        if uid not in self.server.room(room_id).subscriptions or not self.presence.is_online(u, now):
            return
        allowed = self.keys.holds(room_id, uid) if rotation else not self.keys.holders(room_id)
        if not allowed or now < self.devices[u].locked_until:
            return
        awaiting = self.records.awaiting_relogin
        if u in awaiting:  # reset by an admin while away: this is its relogin
            self.resets.relogin(u, awaiting.pop(u))
        was_online = self.devices.online(u)
        try:
            client = self.devices.login(u, now)
        except Wait:
            return
        if not client.functional:
            return
        if not was_online:
            self.following.stay_for_session(u, now)
        try:
            client.reset_room_key(room_id, now=now)
        except ProtocolError:
            return
        stats = self.records.room_stats[room_id]
        if rotation:
            stats.room_key_rotations += 1
        else:
            stats.room_key_resets += 1
        self.records.note_regained(room_id, now)
        self.devices.pump(now)
        self.following.maybe_tick(u)
        if self.following.live_answered:
            self._members_ask_later(u, room_id, now)

    def _members_ask_later(self, u: int, room_id: str, now: float) -> None:
        """Live policy: the other members lack the new key; RC's ``onRoomKeyReset`` sends no
        request, so each asks at its next login (those online now: after this session)."""
        for uid_m in self.server.room(room_id).subscriptions:
            m = self.keys.index[uid_m]
            if m == u or self.devices.online(m):
                continue
            if self.presence.is_online(m, now):
                self.clock.at(self.presence.session_end(m, now), self.following.follow, m)
            else:
                self.following.follow(m)
