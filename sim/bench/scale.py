"""``keysim bench --scale``: how the cost grows with users and with simulated days.

Theory of operation
-------------------
One :func:`~.runs.run_bench` per cell of a grid of population sizes by horizons (by default
10,000, 100,000 and 1,000,000 users by 7, 30 and 365 days), rooms scaled with the users as
``--users`` scales them.  Each cell is a full run and a bare run, each in its own child
interpreter, so that each peak RSS is its own.

The bare model costs users x time by construction; at the largest cells it would run for hours.
A cell whose expected bare events (:func:`~.bare.expected_events`, exact in expectation) exceed
``bare_max_events`` is not run bare: its bare wall time is *estimated* as its expected events
times the wall time per event of the largest bare run measured in this grid, and the table marks
it ``est.``.  Without a measured bare run, the cell has no bare figure.

Cost should grow with the work, the rooms and the resets, not with users x time: the table
gives, beside wall time, events and peak RSS, the full run's wall time per reset and per
1,000 user-days, and the full/bare ratio, which falls as the cells grow if it does.

Units: seconds, MiB.  May import :mod:`sim.inputs` and the rest of :mod:`sim.bench`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from .bare import expected_events
from .runs import run_bench, scenario_with_overrides

__all__ = ["BARE_MAX_EVENTS", "SCALE_DAYS", "SCALE_USERS", "run_scale", "scale_table"]

SCALE_USERS = (10_000, 100_000, 1_000_000)
SCALE_DAYS = (7.0, 30.0, 365.0)
#: above this many expected events the bare model is estimated, not run (about 10 minutes here)
BARE_MAX_EVENTS = 100_000_000


def run_scale(
    scenario_path: Path,
    *,
    users: Sequence[int] = SCALE_USERS,
    days: Sequence[float] = SCALE_DAYS,
    bare_max_events: float = BARE_MAX_EVENTS,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Run every cell of ``users`` x ``days`` (smallest first); print the table to ``out`` and
    return the figures (JSON-ready).  Raises what :func:`~.runs.run_bench` raises; every cell's
    scenario is validated before the first child starts.  ``out``: standard output by default."""
    out = out or sys.stdout
    cells = [(u, float(d)) for u in sorted(set(users)) for d in sorted(set(days))]
    planned = []
    for u, d in cells:
        scenario, _ = scenario_with_overrides(Path(scenario_path).resolve(), u, d)
        trace = scenario.values["churn"]["model"] == "trace"
        expected = None if trace else expected_events(scenario)
        planned.append((u, d, expected))
    rows: list[dict[str, Any]] = []
    for k, (u, d, expected) in enumerate(planned, 1):
        print(
            f"keysim bench --scale: cell {k} of {len(planned)}: {u:,} users, {d:g} days", file=out, flush=True
        )
        skip_bare = expected is not None and expected > bare_max_events
        report = run_bench(scenario_path, out=out, users=u, horizon_days=d, skip_bare=skip_bare)
        rows.append(_row(report, expected, skip_bare))
    _estimate_bare(rows)
    figures = {"scenario": str(scenario_path), "bare_max_events": bare_max_events, "cells": rows}
    out.write(scale_table(rows))
    out.flush()
    return figures


def _row(report: Mapping[str, Any], expected: float | None, estimated: bool) -> dict[str, Any]:
    full, bare = report["full"], report["bare"]
    return {
        "users": report["users"],
        "days": report["horizon_days"],
        "rooms": sum(int(v) for v in report["rooms"].values()),
        "resets": full["resets"],
        "full_wall_s": full["wall_s"],
        "full_setup_s": full["setup_s"],
        "full_events": full["events"],
        "full_peak_rss_mib": full["peak_rss_mib"],
        "bare_expected_events": expected,
        "bare_wall_s": None if bare is None else bare["wall_s"],
        "bare_events": None if bare is None else bare["events"],
        "bare_peak_rss_mib": None if bare is None else bare["peak_rss_mib"],
        "bare_estimated": estimated,
        "ratio_full_to_bare_wall": report["ratio_full_to_bare_wall"],
    }


def _estimate_bare(rows: list[dict[str, Any]]) -> None:
    """Fill in the bare wall time of the cells not run bare, from the largest bare run measured."""
    measured = [r for r in rows if r["bare_wall_s"] is not None and r["bare_events"]]
    if not measured:
        return
    largest = max(measured, key=lambda r: r["bare_events"])
    per_event = largest["bare_wall_s"] / largest["bare_events"]
    for r in rows:
        if r["bare_estimated"] and r["bare_expected_events"] is not None:
            r["bare_wall_s"] = r["bare_expected_events"] * per_event
            r["ratio_full_to_bare_wall"] = r["full_wall_s"] / r["bare_wall_s"]
            r["bare_estimated_from"] = {"users": largest["users"], "days": largest["days"]}


def _seconds(s: float) -> str:
    return f"{s:,.1f}" if s >= 10 else f"{s:.3f}"


def scale_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The grid as a table, one line per cell."""
    header = (
        "users",
        "days",
        "rooms",
        "resets",
        "wall s",
        "set-up s",
        "events",
        "peak MiB",
        "ms/reset",
        "s/1k user-days",
        "bare wall s",
        "full/bare",
    )
    lines = [header]
    for r in rows:
        est = " est." if r["bare_estimated"] else ""
        bare = "-" if r["bare_wall_s"] is None else f"{_seconds(r['bare_wall_s'])}{est}"
        ratio = r["ratio_full_to_bare_wall"]
        user_days = r["users"] * r["days"] / 1000.0
        lines.append(
            (
                f"{r['users']:,}",
                f"{r['days']:g}",
                f"{r['rooms']:,}",
                f"{r['resets']:,}",
                _seconds(r["full_wall_s"]),
                _seconds(r["full_setup_s"]),
                f"{r['full_events']:,}",
                f"{r['full_peak_rss_mib']:,.0f}",
                "-" if not r["resets"] else f"{1000.0 * r['full_wall_s'] / r['resets']:,.2f}",
                f"{r['full_wall_s'] / user_days:,.4f}",
                bare,
                "-" if ratio is None else f"{ratio:.3f}{est}",
            )
        )
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    text = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    note = "est.: bare model not run (expected events above --bare-max-events), timed per event"
    return "\n".join(["", *text, note if any(r["bare_estimated"] for r in rows) else ""]).rstrip() + "\n"
