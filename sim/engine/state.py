"""What the parts of :class:`sim.engine.simulation.Simulation` share, declared once for the type checker.

The simulation is one object assembled from mixins (:mod:`sim.engine.devices`, :mod:`sim.engine.following`,
:mod:`sim.engine.workload`) around :mod:`sim.engine`.  :class:`SimulationState` is their common base: it
names the state :class:`~sim.engine.simulation.Simulation` sets up and the methods one part calls on another,
so that each part type-checks on its own.  It holds no behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol import Client, Server
    from protocol.crypto import CryptoBackend
    from protocol.ledger import KeyLedger
    from protocol.transport import Transport
    from protocol.trust import KeyDirectory, Mitigations

    from ..inputs.churn import PresenceModel
    from ..inputs.scenario import Scenario
    from .records import Device, Outcome, RoomStats

__all__ = ["SimulationState"]


class SimulationState:
    # the run
    sc: Scenario
    seed: int
    run_id: str
    check_invariants: bool
    policy: str
    horizon: float
    tick_s: float
    n: int
    #: the exact time of the action being run (see :meth:`sim.engine.simulation.Simulation._fire`)
    now: float
    counters: dict[str, int]
    # the protocol and its surroundings
    server: Server
    backend: CryptoBackend
    ledger: KeyLedger
    mitigations: Mitigations
    directory: KeyDirectory
    transport: Transport | None
    _delivery_at: float | None
    presence: PresenceModel
    # people and their devices
    user_ids: list[str]
    index: dict[str, int]
    devices: list[Device]
    e2e_password: list[str | None]
    totp_secret: dict[int, str]
    _last_step: dict[int, int]
    recovery_keys: dict[int, Any]
    _client_seed: int
    _restoring_from_backup: bool
    # rooms and what the run records
    room_ids: list[str]
    room_stats: dict[str, RoomStats]
    outcomes: list[Outcome]
    open: dict[tuple[int, str], Outcome]
    #: rows of users reset while offline, who log in again at their next online start
    awaiting_relogin: dict[int, list[Outcome]]
    #: when each user last lost its authenticator (and was locked out)
    locked_out_at: dict[int, float]
    lost_count: int
    lost_rooms: set[str]
    lost_timeline: list[tuple[float, int]]
    reset_counter: int
    # each concern's stream
    _rng_resets: random.Random
    _rng_traffic: random.Random
    _rng_membership: random.Random
    _rng_recovery: random.Random
    _rng_rotation: random.Random

    if TYPE_CHECKING:
        # sim.engine
        def _at(self, t: float, action: Callable[..., None], *args: Any) -> None: ...

        def _close(self, outcome: Outcome, now: float) -> None: ...

        # sim.engine.devices
        def _login(self, u: int, now: float, *, unlock: bool = True, fresh: bool = False) -> Client: ...

        def _logout(self, u: int, now: float) -> None: ...

        def _online(self, u: int) -> bool: ...

        def _pump(self, now: float) -> None: ...

        def _code(self, u: int, now: float) -> str | None: ...

        def _code_ready_at(self, u: int, now: float) -> float: ...

        # sim.engine.following
        def follow(self, u: int) -> None: ...

        def _session_start(self, u: int) -> None: ...

        def _session_end(self, u: int) -> None: ...

        def _holders(self, room_id: str, exclude: str | None = None) -> list[int]: ...

        def _holds(self, room_id: str, user_id: str) -> bool: ...

        def _co_present_members(self, u: int, now: float) -> None: ...

        def _wake_holders(self, room_id: str, waiting_user: str) -> None: ...

        def _maybe_tick(self, u: int) -> None: ...

        def _tick_once(self, u: int, client: Client, now: float) -> None: ...

        # sim.engine.workload
        def _relogin(self, u: int, rows: list[Outcome]) -> None: ...
