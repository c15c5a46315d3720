"""Benchmarks: ``keysim bench`` runs a large scenario and a bare SimPy model of the same
population in child processes (:mod:`.runs`), and times the crypto backends (:mod:`.crypto`).

May import :mod:`sim.inputs` and :mod:`sim.engine`.  Figures come from here, never from timed
assertions in tests.
"""

from .crypto import crypto_cycle
from .runs import run_bench

__all__ = ["crypto_cycle", "run_bench"]
