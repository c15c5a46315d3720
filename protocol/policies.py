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
    #: a per-user store of room keys wrapped for a recovery key (beyond RC)
    backup: bool = False


#: every policy, by name, and the mechanisms it runs
POLICIES: Mapping[str, Mechanisms] = {
    "rocketchat": Mechanisms(queue=True, live=True),
    "queue": Mechanisms(queue=True, live=False),
    "live": Mechanisms(queue=False, live=True),
    "backup": Mechanisms(queue=True, live=False, backup=True),
}
