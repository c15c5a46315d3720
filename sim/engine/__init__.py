"""The SimPy simulation: one run of one scenario with one seed, driving the real protocol.

Owns the run (:mod:`.simulation`) and its parts, collaborators the simulation holds, each with
its own state: simulated time (:mod:`.clock`), the users' devices (:mod:`.devices`), who holds a
key (:mod:`.keys`), presence-following and the holders' loop (:mod:`.following`), resets and
relogins (:mod:`.resets`), owners' room-key resets (:mod:`.owners`), messages and membership
(:mod:`.traffic`), and the records the run keeps (:mod:`.records`) and returns as tidy rows
(:mod:`.collect`); :mod:`.setup` turns the scenario into the server, presence and rooms.
May import :mod:`protocol` and :mod:`sim.inputs`; it writes no files.
"""

from .records import JOIN_COLUMNS, OUTCOME_COLUMNS, ROOM_COLUMNS, RunResult
from .simulation import SIM_BACKUP_SCRYPT_N, Simulation, run_scenario

__all__ = [
    "JOIN_COLUMNS",
    "OUTCOME_COLUMNS",
    "ROOM_COLUMNS",
    "SIM_BACKUP_SCRYPT_N",
    "RunResult",
    "Simulation",
    "run_scenario",
]
