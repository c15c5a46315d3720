"""Sensitivity designs beyond the full grid: Sobol, Morris and Latin hypercube samples (SALib).

A sweep file's ``[sweep.design]`` replaces its axes by a sample of a box of parameter values::

    [sweep.design]
    method = "sobol"        # or "morris", "latin"
    samples = 16            # Sobol: N base samples (a power of 2) -> N (D + 2) points;
                            # Morris: N trajectories -> N (D + 1); Latin: N points
    levels = 4              # Morris only: the grid's levels
    [sweep.design.bounds]
    "churn.mean_offline_minutes" = [60, 2880]
    "rooms.group_size" = [3, 12]   # an integer key's values are rounded

The sample is a function of the sweep's seed (SALib's ``seed``), so ``keysim report`` draws it
again from the stored ``sweep.toml`` and lines the runs up with it.  :func:`indices` says which
parameter moves a metric most: first-order and total Sobol indices (Saltelli 2010, SALib
``sobol.analyze``), Morris's mu* and sigma (Campolongo et al. 2007, ``morris.analyze``), or, for a
Latin hypercube, RBD-FAST first-order indices (Tarantola et al. 2006, ``rbd_fast.analyze``).
May import :mod:`sim.inputs.scenario` and SALib, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .scenario import SCHEMA

__all__ = ["METHODS", "Design", "indices", "parse_design", "sample"]

METHODS = ("sobol", "morris", "latin")
_KEYS = ("method", "samples", "levels", "bounds")


class DesignError(ValueError):
    """A ``[sweep.design]`` problem: ``key`` is its dotted name, ``problem`` what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # so that it crosses a process pool whole
        return (type(self), (self.key, self.problem))


@dataclass(frozen=True, slots=True)
class Design:
    method: str
    samples: int
    #: (dotted key, low, high, integer) per parameter, in the file's order
    bounds: tuple[tuple[str, float, float, bool], ...]
    levels: int = 4

    @property
    def names(self) -> list[str]:
        return [key for key, *_ in self.bounds]

    def problem(self) -> dict[str, Any]:
        return {
            "num_vars": len(self.bounds),
            "names": self.names,
            "bounds": [[low, high] for _, low, high, _ in self.bounds],
        }


def parse_design(table: Mapping[str, Any], where: str = "sweep.design") -> Design:
    """A ``[sweep.design]`` table, checked: every problem names its key."""
    for key in table:
        if key not in _KEYS:
            raise DesignError(f"{where}.{key}", f"unknown key (known: {', '.join(_KEYS)})")
    method = table.get("method")
    if method not in METHODS:
        raise DesignError(f"{where}.method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    samples = table.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise DesignError(f"{where}.samples", f"must be an integer >= 2, got {samples!r}")
    if method == "sobol" and samples & (samples - 1):
        raise DesignError(f"{where}.samples", f"must be a power of 2 for a Sobol design, got {samples}")
    levels = table.get("levels", 4)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2 or levels % 2:
        raise DesignError(f"{where}.levels", f"must be an even integer >= 2, got {levels!r}")
    bounds_table = table.get("bounds")
    if not isinstance(bounds_table, Mapping) or len(bounds_table) < 2:
        raise DesignError(f"{where}.bounds", "needs at least two parameters: key = [low, high]")
    bounds = []
    for dotted, pair in bounds_table.items():
        at = f"{where}.bounds.{dotted}"
        section, _, key = str(dotted).partition(".")
        decl = SCHEMA.get(section, {}).get(key)
        if decl is None:
            raise DesignError(at, "not a scenario key (section.key)")
        types = decl.type if isinstance(decl.type, tuple) else (decl.type,)
        if not set(types) & {int, float}:
            raise DesignError(at, "only a numeric key can be sampled")
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in pair
            )
            or not pair[0] < pair[1]
        ):
            raise DesignError(at, f"must be [low, high] with low < high, got {pair!r}")
        bounds.append((str(dotted), float(pair[0]), float(pair[1]), float not in types))
    return Design(str(method), samples, tuple(bounds), levels)


def sample(design: Design, seed: int) -> list[dict[str, int | float]]:
    """The design's points, in SALib's order (integer keys rounded)."""
    from SALib.sample import latin, morris, sobol

    problem = design.problem()
    if design.method == "sobol":
        x = sobol.sample(problem, design.samples, calc_second_order=False, seed=seed)
    elif design.method == "morris":
        x = morris.sample(problem, design.samples, num_levels=design.levels, seed=seed)
    else:
        x = latin.sample(problem, design.samples, seed=seed)
    out = []
    for row in x:
        point: dict[str, int | float] = {}
        for (key, _, _, integer), value in zip(design.bounds, row, strict=True):
            point[key] = round(float(value)) if integer else float(value)
        out.append(point)
    return out


def indices(design: Design, seed: int, y: Sequence[float]) -> list[dict[str, Any]]:
    """Per parameter, how much it moves ``y`` (one value per point of :func:`sample`, in order)."""
    import numpy as np
    from SALib.analyze import morris as morris_analyze
    from SALib.analyze import rbd_fast
    from SALib.analyze import sobol as sobol_analyze

    problem = design.problem()
    values = np.asarray(y, dtype=float)
    if design.method == "sobol":
        s = sobol_analyze.analyze(problem, values, calc_second_order=False, seed=seed)
        return [
            {
                "parameter": name,
                "S1": float(s["S1"][i]),
                "S1_conf": float(s["S1_conf"][i]),
                "ST": float(s["ST"][i]),
                "ST_conf": float(s["ST_conf"][i]),
            }
            for i, name in enumerate(design.names)
        ]
    x = np.array([[p[k] for k in design.names] for p in sample(design, seed)], dtype=float)
    if design.method == "morris":
        s = morris_analyze.analyze(problem, x, values, num_levels=design.levels, seed=seed)
        return [
            {
                "parameter": name,
                "mu_star": float(s["mu_star"][i]),
                "mu_star_conf": float(s["mu_star_conf"][i]),
                "sigma": float(s["sigma"][i]),
            }
            for i, name in enumerate(design.names)
        ]
    s = rbd_fast.analyze(problem, x, values, seed=seed)
    return [
        {"parameter": name, "S1": float(s["S1"][i]), "S1_conf": float(s["S1_conf"][i])}
        for i, name in enumerate(design.names)
    ]
