"""Sweeps: many runs of one scenario over a grid of overrides and replicates, on a local pool or
a Dask cluster, into a crash-safe store that a later command resumes.

Owns sweep files (:mod:`.sweepfile`), planning runs (:mod:`.plan`), executing one run in a worker
and the executors that host the workers (:mod:`.workers`), the parent's loop and ``keysim sweep``
(:mod:`.runner`) and the store (:mod:`.store`).  May import :mod:`sim.inputs`, :mod:`sim.engine`
and :mod:`sim.results`.
"""

from .plan import plan_sweep
from .runner import SweepResult, run_sweep, sweep_command
from .store import RunRecord, RunStore, read_runs
from .sweepfile import Sweep, SweepError, load_sweep

__all__ = [
    "RunRecord",
    "RunStore",
    "Sweep",
    "SweepError",
    "SweepResult",
    "load_sweep",
    "plan_sweep",
    "read_runs",
    "run_sweep",
    "sweep_command",
]
