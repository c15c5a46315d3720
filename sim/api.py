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

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .engine import RunResult, run_scenario
from .inputs import Scenario, ScenarioError, load_scenario
from .results import (
    Results,
    joins_frame,
    load_results,
    outcomes_frame,
    rooms_frame,
    summarize,
    timeline_frame,
)

__all__ = [
    "Results",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "batch",
    "joins",
    "load",
    "outcomes",
    "rooms",
    "run",
    "scenario",
    "timeline",
]


def _dotted(keys: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword overrides, ``section__key=value``, as dotted keys (``section.key``)."""
    out = {}
    for name, value in keys.items():
        section, sep, key = name.partition("__")
        if not sep or not section or not key:
            raise ScenarioError(
                name, "a keyword override is written section__key, e.g. simulation__policy='live'"
            )
        out[f"{section}.{key}"] = value
    return out


def scenario(
    source: str | Path | Scenario,
    overrides: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    **keys: Any,
) -> Scenario:
    """A validated scenario: a TOML file's path or a :class:`Scenario`, with ``overrides``
    mapping dotted keys to values, keyword overrides written ``section__key=value`` (both may be
    given; a keyword wins), and ``seed`` replacing its seed.

    Raises :class:`ScenarioError` naming the offending key.
    """
    changes = {**(overrides or {}), **_dotted(keys)}
    if isinstance(source, Scenario):
        chosen = source.with_overrides(changes) if changes else source
    else:
        chosen = load_scenario(source, overrides=changes)
    return chosen.with_seed(seed) if seed is not None else chosen


def run(
    source: str | Path | Scenario,
    overrides: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    progress: Callable[[float], None] | None = None,
    check_invariants: bool | str = False,
    **keys: Any,
) -> RunResult:
    """Run one scenario with one seed; the same scenario and seed give identical results.
    Overrides as for :func:`scenario`: ``api.run("scenarios/smoke.toml", simulation__policy="live")``.
    ``check_invariants``: True (or ``"horizon"``) checks the protocol's invariants at the horizon,
    ``"every-step"`` after every step of the run as well."""
    return run_scenario(
        scenario(source, overrides, seed=seed, **keys),
        progress=progress,
        check_invariants=bool(check_invariants),
        check_every_step=check_invariants == "every-step",
    )


def batch(
    source: str | Path | Scenario,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    replications: int = 1,
    seed: int | None = None,
    progress: bool = False,
    **keys: Any,
) -> pd.DataFrame:
    """Every combination of ``grid`` (dotted key -> values) times ``replications``, one
    DataFrame row per run (Mesa's ``batch_run``): the grid values, ``replicate``, ``seed``,
    ``run_id`` and the run's headline figures.  Replicate r has the same seed at every grid point
    (common random numbers, as ``keysim sweep``: :func:`sim.sweep.plan.replicate_seed` of the
    scenario's seed, or ``seed``).  Runs one after another in this process; for a process pool or
    a cluster, write a sweep file (``keysim sweep``)."""
    import itertools

    from tqdm import tqdm

    from .sweep.plan import replicate_seed

    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise ScenarioError("replications", f"must be an integer >= 1, got {replications!r}")
    axes = dict(grid or {})
    for key, values in axes.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ScenarioError(key, "a grid axis needs a non-empty list of values")
    base = scenario(source, **keys)
    root = base.seed if seed is None else seed
    points = list(itertools.product(*axes.values()))
    rows = []
    with tqdm(total=len(points) * replications, unit="run", disable=not progress) as bar:
        for point in points:
            changes = dict(zip(axes, point, strict=True))
            for r in range(replications):
                sc = (base.with_overrides(changes) if changes else base).with_seed(replicate_seed(root, r))
                summary = summarize(run_scenario(sc))
                rows.append({**changes, "replicate": r, **_headline(summary)})
                bar.update()
    return pd.DataFrame(rows)


def _headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"seed": summary["seed"], "run_id": summary["run_id"], "policy": summary["policy"]}
    for name in (
        "fraction_restored",
        "fraction_restored_at_once",
        "fraction_restored_with_history",
        "history_readable",
        "rooms_lost",
    ):
        out[name] = summary[name]["value"]
    out["resets"] = summary["resets"]
    out["median_time_to_restore_s"] = summary["time_to_restore_km"]["median_s"]
    joins = summary["joins"]
    out["joins"] = joins["n"]
    out["joiners_with_history"] = joins["fraction_with_history"]["value"]
    return out


def timeline(result: RunResult, step_s: float = 3600.0) -> pd.DataFrame:
    """A run over time, one row per ``step_s`` (an hour by default) from 0 to the horizon:
    ``resets_waiting`` (outcome rows waiting then: reset, not restored and not yet stopped
    waiting), ``rooms_waiting`` (rooms with such a row), ``restored`` (rows restored so far) and
    ``rooms_lost`` (encrypted rooms whose key nobody held then)."""
    return timeline_frame(result, step_s)


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
