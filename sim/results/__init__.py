"""What runs leave behind: tidy tables and summaries, plots, run directories, results read back
from runs and sweeps, the figures and report that compare them.

Owns :mod:`.tables` (frames, Wilson intervals, Kaplan-Meier), :mod:`.plots` (one run's figures),
:mod:`.rundir` (a run's directory, written atomically), :mod:`.files` (atomic writes),
:mod:`.load` (runs and sweeps read back as one :class:`~.load.Results`), :mod:`.figures` and
:mod:`.report`.  May import :mod:`protocol`, :mod:`sim.inputs` and :mod:`sim.engine`'s public
names (:class:`~sim.engine.RunResult` and its columns); it never runs a simulation.
"""

from .load import Results, load_results
from .rundir import check_out_dir, is_run_dir, write_run
from .tables import (
    joins_frame,
    kaplan_meier,
    outcomes_frame,
    proportion,
    restore_ends,
    rooms_frame,
    summarize,
    terminal_table,
    timeline_frame,
)

__all__ = [
    "Results",
    "check_out_dir",
    "is_run_dir",
    "joins_frame",
    "kaplan_meier",
    "load_results",
    "outcomes_frame",
    "proportion",
    "restore_ends",
    "rooms_frame",
    "summarize",
    "terminal_table",
    "timeline_frame",
    "write_run",
]
