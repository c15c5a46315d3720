"""Sweep files: parsing and validating ``[sweep]`` (base, replications, seed, name, set, axes).

:func:`load_sweep` reads a sweep file into a :class:`Sweep` and names every error by its key
(:class:`SweepError`) before anything runs; :mod:`sim.sweep` plans and runs it.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..inputs.design import Design, DesignError, parse_design
from ..inputs.scenario import SCHEMA, TABLES

__all__ = ["Sweep", "SweepError", "load_sweep"]

_SWEEP_KEYS = ("base", "replications", "seed", "name", "set", "axes", "design")
_RANGE_KEYS = ("start", "stop", "step")
_MAX_AXIS_VALUES = 10_000


class SweepError(ValueError):
    """A sweep file or a sweep option is wrong; ``key`` is its dotted name (``sweep.axes.x.y``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # so that it crosses a process pool whole
        return (type(self), (self.key, self.message))


@dataclass(frozen=True, slots=True)
class Sweep:
    """A parsed sweep file.  ``base`` is as the user would type it (relative to the working
    directory when the sweep file was named relatively); ``axes`` keep the file's order."""

    path: Path
    text: bytes
    base: Path
    name: str
    replications: int
    seed: int
    fixed: Mapping[str, Any]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    #: a sensitivity design (``[sweep.design]``) in place of the axes, or None
    design: Design | None = None


def _number(where: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SweepError(where, f"must be a finite number, got {value!r}")
    return value


def _expand_range(where: str, spec: Mapping[str, Any]) -> tuple[Any, ...]:
    for key in spec:
        if key not in _RANGE_KEYS:
            raise SweepError(f"{where}.{key}", "unknown key (a range has start, stop, step)")
    for key in _RANGE_KEYS:
        if key not in spec:
            raise SweepError(f"{where}.{key}", "is required in a range")
    start, stop, step = (_number(f"{where}.{k}", spec[k]) for k in _RANGE_KEYS)
    if step <= 0:
        raise SweepError(f"{where}.step", f"must be > 0, got {step}")
    if stop < start:
        raise SweepError(f"{where}.stop", f"must be >= start ({start}), got {stop}")
    count = math.floor((stop - start) / step + 1e-9) + 1  # stop is inclusive
    if count > _MAX_AXIS_VALUES:
        raise SweepError(where, f"has {count} values (at most {_MAX_AXIS_VALUES})")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return tuple(int(start + i * step) for i in range(count))
    # 15 significant digits: 0.1 * 3 is 0.3 on an axis, not 0.30000000000000004.
    return tuple(float(f"{start + i * step:.15g}") for i in range(count))


def _check_key(where: str, dotted: str) -> None:
    section, _, key = dotted.partition(".")
    if not key:
        raise SweepError(where, "must be a scenario key written section.key, e.g. 'rooms.group_size'")
    if section not in SCHEMA or (key not in SCHEMA[section] and dotted not in TABLES):
        raise SweepError(where, "not a scenario key (the keys are listed in scenarios/README.md)")
    if dotted == "simulation.seed":
        raise SweepError(where, "seeds come from sweep.seed and the replicate, not from an override")


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepError(where, f"must be a table, got {value!r}")
    return value


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (keys and types; values are checked by :func:`plan_sweep`)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError("sweep", f"file not found: {path}")
    text = path.read_bytes()
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SweepError("sweep", f"{path} is not valid TOML: {exc}") from None
    for key in data:
        if key != "sweep":
            raise SweepError(key, "unknown table (a sweep file holds only [sweep])")
    if "sweep" not in data:
        raise SweepError("sweep", "missing [sweep] table")
    sweep = _table("sweep", data["sweep"])
    for key in sweep:
        if key not in _SWEEP_KEYS:
            raise SweepError(f"sweep.{key}", f"unknown key (known: {', '.join(_SWEEP_KEYS)})")
    if "base" not in sweep:
        raise SweepError("sweep.base", "is required: the scenario file the sweep varies")
    if not isinstance(sweep["base"], str) or not sweep["base"]:
        raise SweepError("sweep.base", f"must be a path (a string), got {sweep['base']!r}")
    base = Path(os.path.normpath(path.parent / sweep["base"]))
    if not base.is_file():
        raise SweepError("sweep.base", f"file not found: {base}")
    replications = sweep.get("replications", 1)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise SweepError("sweep.replications", f"must be an integer >= 1, got {replications!r}")
    seed = sweep.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SweepError("sweep.seed", f"must be an integer, got {seed!r}")
    name = sweep.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise SweepError("sweep.name", f"must be letters, digits, '.', '_' or '-', got {name!r}")
    fixed = dict(_table("sweep.set", sweep.get("set", {})))
    for key in fixed:
        _check_key(f"sweep.set.{key}", key)
    axes = []
    for key, spec in _table("sweep.axes", sweep.get("axes", {})).items():
        where = f"sweep.axes.{key}"
        _check_key(where, key)
        if key in fixed:
            raise SweepError(where, "is also in sweep.set; a key is either fixed or an axis")
        if isinstance(spec, Mapping):
            values = _expand_range(where, spec)
        elif isinstance(spec, list):
            values = tuple(spec)
        else:
            raise SweepError(
                where, f"must be a list of values or a range {{start, stop, step}}, got {spec!r}"
            )
        if not values:
            raise SweepError(where, "has no values")
        for i, v in enumerate(values):
            if v in values[:i]:
                raise SweepError(where, f"value {v!r} appears twice")
        axes.append((key, values))
    design = None
    if "design" in sweep:
        try:
            design = parse_design(_table("sweep.design", sweep["design"]))
        except DesignError as exc:
            raise SweepError(exc.key, exc.problem) from None
        if axes:
            raise SweepError("sweep.design", "replaces the axes: give sweep.axes or sweep.design, not both")
        for key, *_ in design.bounds:
            if key in fixed:
                raise SweepError(
                    f"sweep.design.bounds.{key}", "is also in sweep.set; a key is fixed or sampled"
                )
    return Sweep(path, text, base, name, replications, seed, fixed, tuple(axes), design)
