"""Planning a sweep: a grid of scenario overrides times replications, as a list of runs.

Theory of operation
-------------------
A sweep file (``scenarios/README.md``, section Sweeps) names a base scenario, fixed overrides, axes
and a number of replications.  :func:`~sim.sweep.sweepfile.load_sweep` parses it and
:func:`plan_sweep` expands the cartesian product of the axes and builds every grid point's
:class:`~sim.inputs.scenario.Scenario`, so that every error (unknown key, bad value, missing file)
is found, and named, before anything runs or is written.  The plan is a list of :class:`RunSpec`,
one per (point, replicate).

Seeds are common random numbers: replicate ``r`` of *every* point runs with
``stream_seed(sweep.seed, f"replicate-{r}") % 2**31``, so points are compared on the same draws
(paired comparisons).  A run is a function of its scenario and seed (style guide section 10), so
its ``run_key`` (the first 16 hex digits of :func:`sim.sweep.store.config_hash`) names it across re-runs of the
sweep, and ``keysim run BASE --seed S --set k=v ...`` (its recorded ``command``) reproduces it.
May import :mod:`sim.inputs`, :mod:`.store` and :mod:`.sweepfile`.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..inputs.design import sample
from ..inputs.scenario import ScenarioError, load_scenario
from ..inputs.streams import stream_seed
from .store import RunRecord, config_hash
from .sweepfile import Sweep, SweepError

__all__ = ["RunSpec", "plan_sweep", "replicate_seed"]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run of the plan: what a worker needs, and what the log records."""

    record: RunRecord
    point: Mapping[str, Any]  # axis -> value as the scenario holds it (ints widened to floats)
    overrides: Mapping[str, Any]  # [sweep.set] and the point, as load_scenario takes them

    @property
    def run_key(self) -> str:
        return self.record.run_key


def replicate_seed(root: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` at every grid point (common random numbers)."""
    return stream_seed(root, f"replicate-{replicate}") % 2**31


def _owner(error_key: str, keys: list[str]) -> str | None:
    """The override a ScenarioError is about (``population.classes[0].name`` -> the table)."""
    for key in keys:
        if (
            error_key == key
            or error_key.startswith((f"{key}[", f"{key}."))
            or key.startswith(f"{error_key}.")
        ):
            return key
    return None


def _toml(value: Any) -> str:
    """``value`` as ``keysim run --set`` reads it back (TOML, or a bare word taken as a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        bare = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and value not in (
            "true",
            "false",
            "inf",
            "nan",
        )
        return value if bare else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _column_value(value: Any) -> Any:
    return value if isinstance(value, bool | int | float | str) else json.dumps(value, sort_keys=True)


def plan_sweep(sweep: Sweep) -> list[RunSpec]:
    """Every run of the sweep, replicate by replicate; builds every point's scenario first."""
    try:
        load_scenario(sweep.base, overrides=sweep.fixed)
    except ScenarioError as exc:
        owner = _owner(exc.key, list(sweep.fixed))
        raise SweepError(f"sweep.set.{owner}" if owner else "sweep.base", str(exc)) from None
    if sweep.design is not None:  # a sensitivity design: its sample, in SALib's order
        names = sweep.design.names
        givens = sample(sweep.design, sweep.seed)
    else:
        names = [axis for axis, _ in sweep.axes]
        givens = [dict(zip(names, c, strict=True)) for c in itertools.product(*(v for _, v in sweep.axes))]
    points = []
    for given in givens:
        try:
            scenario = load_scenario(sweep.base, overrides={**sweep.fixed, **given})
        except ScenarioError as exc:
            owner = _owner(exc.key, names)
            where = "sweep.design.bounds" if sweep.design is not None else "sweep.axes"
            if owner is not None:
                raise SweepError(f"{where}.{owner}", f"value {given[owner]!r}: {exc}") from None
            raise SweepError(where, f"point {given}: {exc}") from None
        point = {a: scenario.values[a.split(".")[0]].get(a.split(".", 1)[1], given[a]) for a in names}
        points.append((given, point, scenario))
    plan: list[RunSpec] = []
    seen: dict[str, Mapping[str, Any]] = {}
    for replicate in range(sweep.replications):
        seed = replicate_seed(sweep.seed, replicate)
        for given, point, scenario in points:
            digest = config_hash(scenario.with_seed(seed))
            key = digest[:16]
            if key in seen:
                if sweep.design is not None:
                    continue  # a sample may repeat a point (integer keys rounded): one run serves both
                raise SweepError("sweep.axes", f"points {seen[key]} and {given} give the same scenario")
            seen[key] = given
            overrides = {**sweep.fixed, **given}
            words = ["keysim", "run", str(sweep.base), "--seed", str(seed)]
            for k, v in overrides.items():
                words += ["--set", f"{k}={_toml(v)}"]
            record = RunRecord(
                run_key=key,
                point_json=json.dumps({a: _column_value(v) for a, v in point.items()}),
                replicate=replicate,
                seed=seed,
                config_hash=digest,
                keysim_version=__version__,
                command=shlex.join(words),
            )
            plan.append(RunSpec(record, {a: _column_value(v) for a, v in point.items()}, overrides))
    return plan
