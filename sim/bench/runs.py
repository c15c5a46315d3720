"""``keysim bench``: the full simulator against a bare SimPy model of the same churn.

Theory of operation
-------------------
Two runs of one scenario, each in a fresh child interpreter so that each peak resident set size
(``ru_maxrss`` of the child itself) is measured on its own:

* **full**: :func:`sim.engine.run_scenario`, the real protocol with presence followed only where it
  matters (:mod:`sim.engine`).
* **bare**: the naive model the engine avoids: one SimPy process per user that does nothing but
  toggle it online and offline until the horizon, starting in the stationary state (online with
  probability ``p = mean_on / (mean_on + mean_off)``, first period a residual of a length-biased
  period, the laws' means matched as in :mod:`sim.inputs.churn`).  Each state change within the horizon
  is one timeout, i.e. one scheduled SimPy event, counted as the engine counts its own (the engine
  schedules nothing at or past the horizon, and neither does the bare model).  A stationary
  alternating renewal process makes on average ``2 H / (mean_on + mean_off)`` changes in
  ``[0, H]``, which is the bare model's expected event count.  SimPy also processes two events per
process (its start and its end), about 1 % more for a month: not counted, as the engine's few
bookkeeping events are not.

Wall time is what each model spends after loading the scenario: the engine's ``establish_s +
simulate_s``; the bare model's set-up (creating the processes) plus its run.  Events per second
are over the simulation phase only.  ``child_wall_s`` adds interpreter start and imports.

The bare model draws from one seeded ``random.Random`` (the stream ``"bench-bare"`` of the
scenario's seed), in event order.  It ignores a churn rhythm (the rhythm moves logins around the
day but keeps the mean gap, so it hardly changes the event count), and it is skipped under
``churn.model = "trace"``: replaying a trace costs no more than toggling it, and nothing is drawn.

Each child reports on a line-based channel (its stdout; stray prints go to its stderr): progress
fractions while it runs, then one JSON object of figures.  A child that exits with an error, or
without figures, becomes a :class:`RuntimeError` carrying the tail of its stderr.

Units: seconds of wall time (``time.perf_counter``), MiB (2**20 bytes) of peak RSS.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from ..inputs.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    import simpy

__all__ = ["TARGET_RSS_MIB", "TARGET_WALL_S", "run_bench"]

#: The full run must finish within 3 minutes of wall time ...
TARGET_WALL_S = 180.0
#: ... and within 4 GiB of peak RSS.
TARGET_RSS_MIB = 4096.0

#: Prefix of the lines a child writes on its channel; anything else there is ignored.
_MARK = "@keysim-bench "
#: Chunks of simulated time between progress reports (the engine reports 200 times too).
_STEPS = 200
#: Minimum wall time between two progress lines printed by the parent, seconds.
_PROGRESS_EVERY_S = 15.0
#: How much of a failed child's stderr goes into the RuntimeError.
_TAIL_CHARS = 3000
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[float], None]


# --- the parent ----------------------------------------------------------------------------------


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
    scenario, overrides = _scenario_with_overrides(path, users, horizon_days)
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
    report.update(_verdicts(report["full"], report["bare"]))
    out.write(_table(report))
    out.flush()
    return report


def _scenario_with_overrides(
    path: Path, users: int | None, horizon_days: float | None
) -> tuple[Scenario, dict[str, Any]]:
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
    command = [sys.executable, "-P", "-c", "from sim.bench.runs import _child_main; _child_main()"]
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
                if not line.startswith(_MARK):
                    continue
                what, _, payload = line[len(_MARK) :].rstrip("\n").partition(" ")
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


def _verdicts(full: Mapping[str, Any] | None, bare: Mapping[str, Any] | None) -> dict[str, Any]:
    ratio = None
    if full is not None and bare is not None and bare["wall_s"] > 0:
        ratio = full["wall_s"] / bare["wall_s"]
    return {
        "ratio_full_to_bare_wall": ratio,
        "targets": {"full_wall_s_max": TARGET_WALL_S, "full_peak_rss_mib_max": TARGET_RSS_MIB},
        "verdicts": {
            "full_under_3_min": None if full is None else full["wall_s"] < TARGET_WALL_S,
            "full_under_4_gib": None if full is None else full["peak_rss_mib"] < TARGET_RSS_MIB,
            "full_not_slower_than_bare": None if ratio is None else ratio <= 1.0,
        },
    }


def _table(report: Mapping[str, Any]) -> str:
    full, bare = report["full"], report["bare"]
    runs = [("full simulation", full), ("bare SimPy model", bare)]

    def cell(run: Mapping[str, Any] | None, key: str, fmt: str) -> str:
        if run is None:
            return "skipped"
        value = run.get(key)
        return "-" if value is None else format(value, fmt)

    rows: list[tuple[str, ...]] = [("", *(name for name, _ in runs))]
    rows += [
        ("wall time (s)", *(cell(r, "wall_s", ",.2f") for _, r in runs)),
        ("  set-up (s)", *(cell(r, "setup_s", ",.2f") for _, r in runs)),
        ("  simulation (s)", *(cell(r, "simulate_s", ",.2f") for _, r in runs)),
        ("SimPy events", *(cell(r, "events", ",d") for _, r in runs)),
        ("events/s (simulation)", *(cell(r, "events_per_s", ",.0f") for _, r in runs)),
        ("peak RSS (MiB)", *(cell(r, "peak_rss_mib", ",.0f") for _, r in runs)),
    ]
    if bare is not None:
        rows.append(("expected events", "", f"{bare['expected_events']:,.0f}"))
    if full is not None:
        restored = full["fraction_restored"]
        rows += [
            ("resets", f"{full['resets']:,d}", ""),
            ("rooms restored", "-" if restored is None else f"{restored:.1%}", ""),
            ("rooms lost", f"{full['lost_rooms']:,d}", ""),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])
        for row in rows
    ]
    ratio = report["ratio_full_to_bare_wall"]
    verdicts = report["verdicts"]

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    lines.append(f"full/bare wall ratio: {'n/a' if ratio is None else f'{ratio:.2f}'}")
    lines.append(
        f"targets: full run < {TARGET_WALL_S / 60:g} min: {mark(verdicts['full_under_3_min'])}; "
        f"< {TARGET_RSS_MIB / 1024:g} GiB: {mark(verdicts['full_under_4_gib'])}; "
        f"no slower than bare: {mark(verdicts['full_not_slower_than_bare'])}"
    )
    return "\n".join(lines) + "\n"


# --- the children --------------------------------------------------------------------------------


def _child_main() -> None:
    """Entry point of a child: ``python -c ... KIND SPEC_JSON``."""
    kind, spec = sys.argv[1], json.loads(sys.argv[2])
    channel = sys.stdout
    sys.stdout = sys.stderr  # a stray print must not corrupt the channel

    def progress(fraction: float) -> None:
        channel.write(f"{_MARK}progress {fraction:.4f}\n")
        channel.flush()

    children: dict[str, Callable[[Mapping[str, Any], Progress], dict[str, Any]]] = {
        "full": _full_child,
        "bare": _bare_child,
    }
    if kind not in children:
        raise ValueError(f"unknown bench run {kind!r} (known: {', '.join(children)})")
    figures = children[kind](spec, progress)
    figures["peak_rss_mib"] = _peak_rss_mib()
    channel.write(f"{_MARK}result {json.dumps(figures)}\n")
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


@dataclass(frozen=True, slots=True)
class _Law:
    """One churn class for the bare model: its draws, bound to the bench's generator."""

    p_online: float
    mean_cycle_s: float
    draw_on: Callable[[], float]
    draw_off: Callable[[], float]
    residual_on: Callable[[], float]
    residual_off: Callable[[], float]


def _law(rng: random.Random, model: str, on_s: float, off_s: float, shape: float, sigma: float) -> _Law:
    """The laws of :mod:`sim.inputs.churn` with ``random.Random``'s samplers, means matched the same way."""

    def kind(mean: float) -> tuple[Callable[[], float], Callable[[], float]]:
        if model == "exponential":
            rate = 1.0 / mean
            return (lambda: rng.expovariate(rate)), (lambda: rng.expovariate(rate))  # memoryless
        if model == "weibull":
            scale = mean * math.exp(-math.lgamma(1.0 + 1.0 / shape))  # lambda = mean / Gamma(1 + 1/k)
            inv_k = 1.0 / shape
            # residual: U times a length-biased Weibull, lambda G^(1/k) with G ~ Gamma(1 + 1/k, 1)
            return (lambda: rng.weibullvariate(scale, shape)), (
                lambda: rng.random() * scale * rng.gammavariate(1.0 + inv_k, 1.0) ** inv_k
            )
        if model == "lognormal":
            mu = math.log(mean) - sigma * sigma / 2.0
            # residual: U times a length-biased lognormal, lognormal(mu + sigma^2, sigma)
            return (lambda: rng.lognormvariate(mu, sigma)), (
                lambda: rng.random() * rng.lognormvariate(mu + sigma * sigma, sigma)
            )
        raise ValueError(f"churn.model: the bare model has no law {model!r}")

    draw_on, residual_on = kind(on_s)
    draw_off, residual_off = kind(off_s)
    return _Law(on_s / (on_s + off_s), on_s + off_s, draw_on, draw_off, residual_on, residual_off)


def _laws_of_users(scenario: Scenario, rng: random.Random) -> list[tuple[int, _Law]]:
    """(number of users, law) per churn class, in user order; classes are contiguous blocks by
    fraction, as :func:`sim.engine.setup.churn_params` assigns them."""
    c = scenario.values["churn"]
    n = scenario.users
    if not scenario.classes:
        base = _law(
            rng,
            c["model"],
            c["mean_online_minutes"] * 60.0,
            c["mean_offline_minutes"] * 60.0,
            c["shape"],
            c["sigma"],
        )
        return [(n, base)]
    blocks: list[tuple[int, _Law]] = []
    acc, start = 0.0, 0
    for cls in scenario.classes:
        acc += cls.fraction
        end = round(acc * n)
        law = _law(
            rng,
            cls.model,
            cls.mean_online_minutes * 60.0,
            cls.mean_offline_minutes * 60.0,
            cls.shape,
            c["sigma"],
        )
        blocks.append((end - start, law))
        start = end
    count, last = blocks[-1]
    blocks[-1] = (count + n - start, last)  # rounding leftovers join the last class
    return blocks


def _toggle(
    env: simpy.Environment, online: bool, first: float, law: _Law, horizon: float
) -> Generator[Any, Any, int]:
    """One user: online and offline alternately until the horizon; returns its timeouts."""
    if first >= horizon:
        return 0
    timeout, draw_on, draw_off = env.timeout, law.draw_on, law.draw_off
    yield timeout(first)
    n = 1
    while True:
        online = not online
        d = draw_on() if online else draw_off()
        if env.now + d >= horizon:
            return n
        n += 1
        yield timeout(d)


def _bare_child(spec: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    import simpy

    from ..inputs.streams import stream

    scenario = load_scenario(spec["scenario"], spec["overrides"])
    horizon = scenario.horizon_s
    started = time.perf_counter()
    rng = stream(scenario.seed, "bench-bare")
    env = simpy.Environment()
    processes: list[simpy.Process] = []
    expected = 0.0
    for count, law in _laws_of_users(scenario, rng):
        expected += 2.0 * count * horizon / law.mean_cycle_s
        for _ in range(count):
            online = rng.random() < law.p_online
            first = law.residual_on() if online else law.residual_off()
            processes.append(env.process(_toggle(env, online, first, law, horizon)))
    set_up = time.perf_counter()
    for i in range(1, _STEPS + 1):
        env.run(until=horizon * i / _STEPS)
        progress(i / _STEPS)
    finished = time.perf_counter()
    # every process returns at its last change, before the horizon
    if not all(p.triggered for p in processes):
        raise RuntimeError("bare model: a user process did not finish by the horizon")
    events = 0
    for p in processes:
        events += cast(int, p.value)
    simulate_s = finished - set_up
    return {
        "wall_s": finished - started,
        "setup_s": set_up - started,
        "simulate_s": simulate_s,
        "events": events,
        "events_per_s": events / simulate_s if simulate_s > 0 else None,
        "expected_events": expected,
        "users": len(processes),
        "rhythm_ignored": scenario.get("churn.rhythm") != "none",
    }
