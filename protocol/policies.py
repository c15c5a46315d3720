"""Recovery policies: how a member who lacks a room key gets it.

A policy is a set of mechanisms the server and the clients run (``Server(policy=...)``); see
:mod:`protocol.e2e_server` for what each does and where Rocket.Chat's versions differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["POLICIES", "Mechanisms"]


@dataclass(frozen=True, slots=True)
class Mechanisms:
    """How a member who lacks a room key gets it, under one policy."""

    #: ``usersWaitingForE2EKeys``, served by holders' distribution loops (PR #32197)
    queue: bool
    #: the live ``e2ekeyRequest`` to the members connected at that moment
    live: bool
    #: whether web clients answer a live request.  The mobile app always does
    #: (``app/lib/encryption/encryption.ts``, ``provideRoomKeyToUser``, Rocket.Chat.ReactNative);
    #: the web client did (``apps/meteor/client/startup/e2e.ts``, ``provideKeyToUser``) until its
    #: listener went: the current ``useE2EEncryption.ts`` attaches none, so on the web the
    #: request goes unanswered.  True is the legacy web client (policy ``live``).
    live_web: bool = True
    #: a per-user store of room keys wrapped for a recovery key (beyond RC)
    backup: bool = False
    #: the E2E password in a PIN vault with a guess limit (:mod:`protocol.escrow`; beyond RC)
    escrow: bool = False
    #: a member who lost its key rejoins each room at once, MLS-style (beyond RC)
    rejoin: bool = False
    #: recovery contacts who can hand a person its E2E password back (beyond RC)
    contacts: bool = False
    #: a Matrix-style dehydrated device per person that receives room keys (beyond RC)
    dehydrated: bool = False
    #: Matrix's megolm semantics for joiners: a joiner reads only what is sent after it joined
    #: (:mod:`protocol.history_server`; beyond RC, whose joiners get every old key)
    ratchet: bool = False
    #: MSC4268 room key bundles: an inviter shares the room's shareable history with the invitee
    bundle: bool = False


#: every policy, by name, and the mechanisms it runs
POLICIES: Mapping[str, Mechanisms] = {
    # Rocket.Chat today: the queue, and the live request answered by mobile apps only
    "rocketchat": Mechanisms(queue=True, live=True, live_web=False),
    "queue": Mechanisms(queue=True, live=False),
    # the legacy live request, answered by any connected client (web clients before the listener went)
    "live": Mechanisms(queue=False, live=True),
    "backup": Mechanisms(queue=True, live=False, backup=True),
    # the designs of other systems, each added to Rocket.Chat's own two mechanisms (which still
    # serve what the design does not cover: joiners, and whoever the design fails)
    "escrow": Mechanisms(queue=True, live=True, live_web=False, escrow=True),
    "rejoin": Mechanisms(queue=True, live=True, live_web=False, rejoin=True),
    "contacts": Mechanisms(queue=True, live=True, live_web=False, contacts=True),
    "dehydrated": Mechanisms(queue=True, live=True, live_web=False, dehydrated=True),
    # what a joiner reads of the past: Matrix without history sharing, and with MSC4268 bundles
    "ratchet": Mechanisms(queue=True, live=True, live_web=False, ratchet=True),
    "bundle": Mechanisms(queue=True, live=True, live_web=False, ratchet=True, bundle=True),
}
