"""``keysim bench``: the full simulator against a bare SimPy model of the same churn.

Theory of operation
-------------------
Two runs of one scenario, each in a fresh child interpreter so that each peak resident set size
(``ru_maxrss`` of the child itself) is measured on its own:

* **full**: :func:`sim.engine.run_scenario`, the real protocol with presence followed only where it
  matters (:mod:`sim.engine`).
* **bare**: the naive model the engine avoids: one SimPy process per user that does nothing but
  toggle it online and offline until the horizon (:mod:`.bare`, which says how its events are
  counted and what it is expected to make).

Wall time is what each model spends after loading the scenario: the engine's ``establish_s +
simulate_s``; the bare model's set-up (creating the processes) plus its run.  Events per second
are over the simulation phase only.  ``child_wall_s`` adds interpreter start and imports.

The bare model is skipped under ``churn.model = "trace"``: replaying a trace costs no more than
toggling it, and nothing is drawn.

This module is the parent: it starts each child (:mod:`.children`) and reads its line-based
channel (its stdout; stray prints go to its stderr): progress fractions while it runs, then one
JSON object of figures.  A child that exits with an error, or without figures, becomes a
:class:`RuntimeError` carrying the tail of its stderr.  The verdicts and the table are
:mod:`.figures`'.

Units: seconds of wall time (``time.perf_counter``), MiB (2**20 bytes) of peak RSS.  May import
:mod:`sim.inputs` and the rest of :mod:`sim.bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ..inputs.scenario import Scenario, load_scenario
from .children import MARK
from .figures import TARGET_RSS_MIB, TARGET_WALL_S, judge, table

__all__ = ["TARGET_RSS_MIB", "TARGET_WALL_S", "run_bench", "scenario_with_overrides"]

#: Minimum wall time between two progress lines printed by the parent, seconds.
_PROGRESS_EVERY_S = 15.0
#: How much of a failed child's stderr goes into the RuntimeError.
_TAIL_CHARS = 3000
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def run_bench(
    scenario_path: Path,
    *,
    out: TextIO = sys.stdout,
    users: int | None = None,
    horizon_days: float | None = None,
    skip_full: bool = False,
    skip_bare: bool = False,
) -> dict[str, Any]:
    """Run the full simulation and the bare SimPy model of ``scenario_path``, one after the other,
    each in its own child process; print a table to ``out`` and return every figure (JSON-ready).

    ``users`` and ``horizon_days`` override ``population.users`` and ``simulation.horizon_days``;
    with ``users``, ``rooms.dms`` and ``rooms.groups`` are scaled by ``users / original users``
    (at least 1 when the original is not 0), and the group sizes are capped at ``users``.
    Raises :class:`sim.inputs.scenario.ScenarioError` for a bad scenario or override (before any child
    starts), ``ValueError`` if both runs are skipped, ``RuntimeError`` if a child fails.
    """
    if skip_full and skip_bare:
        raise ValueError("skip_full and skip_bare: nothing left to run")
    path = Path(scenario_path).resolve()
    scenario, overrides = scenario_with_overrides(path, users, horizon_days)
    churn = dict(scenario.values["churn"])
    spec = {"scenario": str(path), "overrides": overrides}
    report: dict[str, Any] = {
        "scenario": str(path),
        "name": scenario.name,
        "seed": scenario.seed,
        "users": scenario.users,
        "horizon_days": scenario.horizon_s / 86400.0,
        "churn": churn,
        "population_classes": len(scenario.classes),
        "rooms": {"dms": scenario.get("rooms.dms"), "groups": scenario.get("rooms.groups")},
        "overrides": overrides,
        "python": sys.version.split()[0],
        "full": None,
        "bare": None,
        "skipped": {},
    }
    print(
        f"keysim bench: {scenario.name}, {scenario.users:,} users, "
        f"{scenario.horizon_s / 86400.0:g} days, {churn['model']} churn",
        file=out,
        flush=True,
    )
    if skip_full:
        report["skipped"]["full"] = "skip_full"
    else:
        report["full"] = _run_child("full", spec, out)
    if skip_bare:
        report["skipped"]["bare"] = "skip_bare"
    elif churn["model"] == "trace":
        report["skipped"]["bare"] = "trace model: replaying a trace draws nothing, no bare model needed"
        print(f"  bare: skipped ({report['skipped']['bare']})", file=out, flush=True)
    else:
        report["bare"] = _run_child("bare", spec, out)
    report.update(judge(report["full"], report["bare"]))
    out.write(table(report))
    out.flush()
    return report


def scenario_with_overrides(
    path: Path, users: int | None, horizon_days: float | None
) -> tuple[Scenario, dict[str, Any]]:
    """The scenario with ``users`` (rooms scaled with them) and ``horizon_days`` overridden,
    validated; and the overrides."""
    base = load_scenario(path)
    overrides: dict[str, Any] = {}
    if horizon_days is not None:
        overrides["simulation.horizon_days"] = horizon_days
    if users is not None and users != base.users:
        overrides["population.users"] = users
        if isinstance(users, int) and not isinstance(users, bool) and users >= 2:
            # keep the rooms per user of the original, so that a small test run stays valid
            for key in ("rooms.dms", "rooms.groups"):
                original = int(base.get(key))
                if original > 0:
                    overrides[key] = max(1, round(original * users / base.users))
            for key in ("rooms.group_size_max", "rooms.group_size"):
                if int(base.get(key)) > users:
                    overrides[key] = users
    # validated here, in the parent, so that a bad override fails before any child starts
    return load_scenario(path, overrides), overrides


def _run_child(kind: str, spec: Mapping[str, Any], out: TextIO) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return its figures."""
    label = {"full": "full simulation", "bare": "bare SimPy model"}.get(kind, kind)
    env = dict(os.environ)
    # the child imports this very copy of keysim (-P: not whatever the working directory holds)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-P", "-c", "from sim.bench.children import child_main; child_main()"]
    command += [kind, json.dumps(dict(spec))]
    print(f"  {label}: started", file=out, flush=True)
    started = time.perf_counter()
    last_print = started
    figures: dict[str, Any] | None = None
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=_PACKAGE_ROOT
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith(MARK):
                    continue
                what, _, payload = line[len(MARK) :].rstrip("\n").partition(" ")
                if what == "result":
                    figures = json.loads(payload)
                elif what == "progress":
                    now = time.perf_counter()
                    if now - last_print >= _PROGRESS_EVERY_S:
                        last_print = now
                        print(
                            f"  {label}: {float(payload):.0%} of simulated time, {now - started:.0f} s",
                            file=out,
                            flush=True,
                        )
            status = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted in the parent: do not leave the child running
                proc.kill()
                proc.wait()
        if status != 0 or figures is None:
            err.seek(0)
            tail = err.read()[-_TAIL_CHARS:].strip() or "(no output on stderr)"
            raise RuntimeError(f"bench {label}: child process failed (exit status {status}):\n{tail}")
    figures["child_wall_s"] = time.perf_counter() - started
    print(
        f"  {label}: done, {figures['wall_s']:.1f} s wall ({figures['child_wall_s']:.1f} s with "
        f"interpreter start), {figures['events']:,} events, {figures['peak_rss_mib']:,.0f} MiB peak",
        file=out,
        flush=True,
    )
    return figures
