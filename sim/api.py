"""keysim's Python entry point: the seam the command line and notebooks call.

Three calls cover a run from a notebook::

    from sim import api
    result = api.run("scenarios/smoke.toml", {"simulation.policy": "live"}, seed=7)
    outcomes = api.outcomes(result)          # one row per (reset, encrypted room): a DataFrame

and :func:`load` reads any run or sweep directory back as :class:`~sim.results.Results`.  The
names here stay stable while the parts behind them move; everything else in :mod:`sim` is
internal.  May import :mod:`sim.inputs`, :mod:`sim.engine` and :mod:`sim.results`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .engine import RunResult, run_scenario
from .inputs import Scenario, ScenarioError, load_scenario
from .results import Results, joins_frame, load_results, outcomes_frame, rooms_frame

__all__ = [
    "Results",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "joins",
    "load",
    "outcomes",
    "rooms",
    "run",
    "scenario",
]


def scenario(
    source: str | Path | Scenario, overrides: Mapping[str, Any] | None = None, *, seed: int | None = None
) -> Scenario:
    """A validated scenario: a TOML file's path, or a :class:`Scenario` (then ``overrides`` must
    be empty), with ``overrides`` mapping dotted keys to values and ``seed`` replacing its seed.

    Raises :class:`ScenarioError` naming the offending key.
    """
    if isinstance(source, Scenario):
        if overrides:
            raise ScenarioError("overrides", "apply overrides when loading the file, not to a Scenario")
        chosen = source
    else:
        chosen = load_scenario(source, overrides=overrides)
    return chosen.with_seed(seed) if seed is not None else chosen


def run(
    source: str | Path | Scenario,
    overrides: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    progress: Callable[[float], None] | None = None,
    check_invariants: bool = False,
) -> RunResult:
    """Run one scenario with one seed; the same scenario and seed give identical results."""
    return run_scenario(
        scenario(source, overrides, seed=seed), progress=progress, check_invariants=check_invariants
    )


def outcomes(result: RunResult) -> pd.DataFrame:
    """A run's outcome rows (columns: :data:`sim.engine.OUTCOME_COLUMNS`)."""
    return outcomes_frame(result)


def joins(result: RunResult) -> pd.DataFrame:
    """A run's join rows, one per member added to a room (columns: :data:`sim.engine.JOIN_COLUMNS`)."""
    return joins_frame(result)


def rooms(result: RunResult) -> pd.DataFrame:
    """A run's room rows (columns: :data:`sim.engine.ROOM_COLUMNS`)."""
    return rooms_frame(result)


def load(path: str | Path) -> Results:
    """Read a run directory (``keysim run``) or a sweep directory (``keysim sweep``) back."""
    return load_results(Path(path))
