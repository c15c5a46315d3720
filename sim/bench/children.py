"""The child side of ``keysim bench``: what runs in each fresh interpreter the parent starts.

:func:`child_main` runs one measurement, the full simulation (:func:`sim.engine.run_scenario`) or
the bare model (:mod:`.bare`), then measures its own peak resident set size (``ru_maxrss``).  It
reports on a line-based channel, its stdout (stray prints go to its stderr): lines starting with
:data:`MARK`, progress fractions while it runs, then one JSON object of figures.  May import
:mod:`sim.inputs`, :mod:`sim.engine` and :mod:`.bare`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..inputs.scenario import load_scenario
from .bare import bare_child

__all__ = ["MARK", "child_main"]

#: Prefix of the lines a child writes on its channel; anything else there is ignored.
MARK = "@keysim-bench "

Progress = Callable[[float], None]


def child_main() -> None:
    """Entry point of a child: ``python -c ... KIND SPEC_JSON``."""
    kind, spec = sys.argv[1], json.loads(sys.argv[2])
    channel = sys.stdout
    sys.stdout = sys.stderr  # a stray print must not corrupt the channel

    def progress(fraction: float) -> None:
        channel.write(f"{MARK}progress {fraction:.4f}\n")
        channel.flush()

    children: dict[str, Callable[[Mapping[str, Any], Progress], dict[str, Any]]] = {
        "full": _full_child,
        "bare": bare_child,
    }
    if kind not in children:
        raise ValueError(f"unknown bench run {kind!r} (known: {', '.join(children)})")
    figures = children[kind](spec, progress)
    figures["peak_rss_mib"] = _peak_rss_mib()
    channel.write(f"{MARK}result {json.dumps(figures)}\n")
    channel.flush()


def _peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _full_child(spec: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    from ..engine import run_scenario

    scenario = load_scenario(spec["scenario"], spec["overrides"])
    result = run_scenario(scenario, progress=progress)
    stats = result.stats
    restored = sum(1 for row in result.outcomes if row["restored"])
    simulate_s = float(stats["simulate_s"])
    events = int(stats["events"])
    return {
        "wall_s": float(stats["wall_s"]),
        "setup_s": float(stats["establish_s"]),
        "simulate_s": simulate_s,
        "events": events,
        "events_per_s": events / simulate_s if simulate_s > 0 else None,
        **{
            k: int(stats[k])
            for k in ("logins", "ticks", "resets", "messages", "presence_events")
            if k in stats
        },
        "outcomes": len(result.outcomes),
        "restored": restored,
        "fraction_restored": restored / len(result.outcomes) if result.outcomes else None,
        "lost_rooms": sum(1 for row in result.rooms if row["lost"]),
        "violations": len(result.violations),
    }
