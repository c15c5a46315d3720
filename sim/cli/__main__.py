"""``python -m sim.cli``: the same as the ``keysim`` console script.  May import :mod:`sim.cli`."""

from . import run

run()
