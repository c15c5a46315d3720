"""The bare SimPy model of ``keysim bench``: the naive model the engine avoids, for comparison.

Theory of operation
-------------------
One SimPy process per user that does nothing but toggle it online and offline until the horizon,
starting in the stationary state (online with probability ``p = mean_on / (mean_on + mean_off)``,
first period a residual of a length-biased period, the laws' means matched as in
:mod:`sim.inputs.churn`).  Each state change within the horizon is one timeout, i.e. one scheduled
SimPy event, counted as the engine counts its own (the engine schedules nothing at or past the
horizon, and neither does the bare model).  A stationary alternating renewal process makes on
average ``2 H / (mean_on + mean_off)`` changes in ``[0, H]``, which is the bare model's expected
event count.  SimPy also processes two events per process (its start and its end), about 1 % more
for a month: not counted, as the engine's few bookkeeping events are not.

The bare model draws from one seeded ``random.Random`` (the stream ``"bench-bare"`` of the
scenario's seed), in event order.  It ignores a churn rhythm (the rhythm moves logins around the
day but keeps the mean gap, so it hardly changes the event count).  Its wall time is its set-up
(creating the processes) plus its run.  May import :mod:`sim.inputs`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..inputs.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    import simpy

__all__ = ["bare_child", "expected_events"]

#: Chunks of simulated time between progress reports (the engine reports 200 times too).
_STEPS = 200


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


def expected_events(scenario: Scenario) -> float:
    """The bare model's expected event count: ``2 H / (mean_on + mean_off)`` per user."""
    laws = _laws_of_users(scenario, random.Random(0))  # only the means are read
    return sum(2.0 * count * scenario.horizon_s / law.mean_cycle_s for count, law in laws)


def bare_child(spec: Mapping[str, Any], progress: Callable[[float], None]) -> dict[str, Any]:
    """Build and run the bare model of ``spec``'s scenario (in a child); return its figures."""
    import simpy

    from ..inputs.streams import stream

    scenario = load_scenario(spec["scenario"], spec["overrides"])
    horizon = scenario.horizon_s
    started = time.perf_counter()
    rng = stream(scenario.seed, "bench-bare")
    env = simpy.Environment()
    processes: list[simpy.Process] = []
    expected = expected_events(scenario)
    for count, law in _laws_of_users(scenario, rng):
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
