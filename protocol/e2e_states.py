"""The states of Rocket.Chat's E2EE client, as tables.

* :class:`E2EEState` and :data:`GLOBAL_TRANSITIONS` (``(state, event) -> state``) for the whole
  client (``apps/meteor/client/lib/e2ee/E2EEState.ts``, ``rocketchat.e2e.ts``);
* :class:`E2ERoomState` and :data:`ROOM_MUTATIONS`, RC's ``permitedMutations`` copied exactly
  (``rocketchat.e2e.room.ts``), applied with RC's ``filterMutation`` (:func:`room_move_allowed`);
* the records a device keeps per room (:class:`RoomSession`) and of how it got each key
  (:class:`KeyAcquired`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .crypto import PrivateKey, RoomKey

__all__ = [
    "GLOBAL_TRANSITIONS",
    "ROOMS_PER_TICK",
    "ROOM_MUTATIONS",
    "SAMPLE_DRAWS",
    "TICK_SECONDS",
    "E2EEState",
    "E2ERoomState",
    "KeyAcquired",
    "LocalState",
    "RoomSession",
    "room_move_allowed",
]

#: ``setInterval(keyDistribution, 10000)``
TICK_SECONDS = 10.0
#: ``ROOM_KEY_EXCHANGE_SIZE``: rooms sampled per tick
ROOMS_PER_TICK = 10
#: ``getSample(roomIds, limit = 3)``: independent draws before giving up
SAMPLE_DRAWS = 3


class E2EEState(enum.Enum):
    NOT_STARTED = "NOT_STARTED"
    DISABLED = "DISABLED"
    LOADING_KEYS = "LOADING_KEYS"
    READY = "READY"
    SAVE_PASSWORD = "SAVE_PASSWORD"
    ENTER_PASSWORD = "ENTER_PASSWORD"
    ERROR = "ERROR"


class E2ERoomState(enum.Enum):
    NOT_STARTED = "NOT_STARTED"
    ESTABLISHING = "ESTABLISHING"
    READY = "READY"
    CREATING_KEYS = "CREATING_KEYS"
    WAITING_KEYS = "WAITING_KEYS"
    KEYS_RECEIVED = "KEYS_RECEIVED"
    ERROR = "ERROR"
    DISABLED = "DISABLED"


G = E2EEState
#: (state, event) -> next state (rocketchat.e2e.ts ``startClient``/``stopClient``).
GLOBAL_TRANSITIONS: dict[tuple[E2EEState, str], E2EEState] = {
    (G.NOT_STARTED, "start"): G.LOADING_KEYS,
    (G.DISABLED, "start"): G.LOADING_KEYS,
    (G.NOT_STARTED, "disable"): G.DISABLED,
    (G.DISABLED, "disable"): G.DISABLED,
    (G.LOADING_KEYS, "fetch_failed"): G.ERROR,  # #32653: a failed fetch creates nothing
    (G.LOADING_KEYS, "keys_found"): G.ENTER_PASSWORD,
    (G.LOADING_KEYS, "keys_created"): G.SAVE_PASSWORD,
    (G.LOADING_KEYS, "upload_failed"): G.ERROR,
    (G.ENTER_PASSWORD, "password_wrong"): G.ENTER_PASSWORD,  # stays; E2EE off this session
    (G.ENTER_PASSWORD, "unlocked"): G.READY,
    (G.ENTER_PASSWORD, "unlocked_unsaved"): G.SAVE_PASSWORD,  # e2e.randomPassword still stored
    (G.SAVE_PASSWORD, "password_saved"): G.READY,
    **{(state, "logout"): G.DISABLED for state in E2EEState},  # stopClient
}

R = E2ERoomState
#: ``permitedMutations`` (rocketchat.e2e.room.ts), exactly; states absent here may move anywhere.
ROOM_MUTATIONS: dict[E2ERoomState, frozenset[E2ERoomState]] = {
    R.NOT_STARTED: frozenset({R.ESTABLISHING, R.DISABLED, R.KEYS_RECEIVED}),
    R.READY: frozenset({R.DISABLED, R.CREATING_KEYS, R.WAITING_KEYS}),
    R.ERROR: frozenset({R.KEYS_RECEIVED, R.NOT_STARTED}),
    R.WAITING_KEYS: frozenset({R.KEYS_RECEIVED, R.ERROR, R.DISABLED}),
    R.ESTABLISHING: frozenset(
        {R.READY, R.KEYS_RECEIVED, R.ERROR, R.DISABLED, R.WAITING_KEYS, R.CREATING_KEYS}
    ),
}


def room_move_allowed(current: E2ERoomState, new: E2ERoomState) -> bool:
    """RC ``filterMutation``: the same state again only for ERROR; unlisted states go anywhere."""
    if current == new:
        return new == R.ERROR
    allowed = ROOM_MUTATIONS.get(current)
    return allowed is None or new in allowed


@dataclass(frozen=True, slots=True)
class KeyAcquired:
    """How this device came to hold a room key (for invariants and the simulator's outcomes)."""

    room_id: str
    kid: str
    #: ``created``, ``E2EKey``, ``suggestion``, ``old``, ``backup``
    source: str
    at: float


@dataclass(slots=True)
class RoomSession:
    """An ``E2ERoom`` instance: one room's machine and keys on this device."""

    room_id: str
    state: E2ERoomState = E2ERoomState.NOT_STARTED
    key_id: str | None = None
    #: ``groupSessionKey``
    key: RoomKey | None = None
    #: ``oldKeys``: kid -> (key, ts), decrypted from ``oldRoomKeys`` once, at the first READY
    old_keys: dict[str, tuple[RoomKey, float]] | None = None
    ready_once: bool = False


@dataclass(slots=True)
class LocalState:
    """What the device holds while logged in; wiped at logout."""

    login_token: str | None = None
    private_key: PrivateKey | None = None
    public_key: str | None = None
    rooms: dict[str, RoomSession] = field(default_factory=dict)
