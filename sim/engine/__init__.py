"""The SimPy simulation: one run of one scenario with one seed, driving the real protocol.

Owns the run (:mod:`.simulation`) and its parts, today mixins over the state declared in
:mod:`.state`: the users' devices (:mod:`.devices`), presence-following and the holders' loop
(:mod:`.following`), the workload (:mod:`.workload`: resets, owners' room-key resets, messages,
membership), and the records the run keeps (:mod:`.records`) and returns as tidy rows
(:mod:`.collect`).  May import :mod:`protocol` and :mod:`sim.inputs`; it writes no files.
"""

from .records import OUTCOME_COLUMNS, ROOM_COLUMNS, RunResult
from .simulation import SIM_BACKUP_SCRYPT_N, Simulation, run_scenario

__all__ = [
    "OUTCOME_COLUMNS",
    "ROOM_COLUMNS",
    "SIM_BACKUP_SCRYPT_N",
    "RunResult",
    "Simulation",
    "run_scenario",
]
