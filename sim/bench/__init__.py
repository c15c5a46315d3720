"""Benchmarks: ``keysim bench`` runs a large scenario and a bare SimPy model of the same
population in child processes, and times the crypto backends (:mod:`.crypto`).

The parent starts the children and prints what they report (:mod:`.runs`), against the targets
and as a table (:mod:`.figures`); a child runs the full simulation (:mod:`.children`) or the bare
model (:mod:`.bare`).  ``keysim bench --scale`` runs a grid of sizes and horizons (:mod:`.scale`).

May import :mod:`sim.inputs` and :mod:`sim.engine`.  Figures come from here, never from timed
assertions in tests.
"""

from .crypto import crypto_cycle
from .runs import run_bench
from .scale import run_scale

__all__ = ["crypto_cycle", "run_bench", "run_scale"]
