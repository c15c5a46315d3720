"""Simulated time: the SimPy environment, the exact time of the action being run, the horizon.

Every part of a run schedules through :meth:`Clock.at` (one plain timeout callback per action,
no process per user) and reads :attr:`Clock.now`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy

__all__ = ["Clock"]


class Clock:
    """Owns the SimPy environment of one run and counts the events it schedules."""

    def __init__(self, horizon: float) -> None:
        self.env = simpy.Environment()
        self.horizon = horizon
        #: the exact time of the action being run (see :meth:`_fire`)
        self.now = 0.0
        #: actions scheduled so far
        self.events = 0

    def at(self, t: float, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)`` at time ``t`` (now if ``t`` is not in the future); nothing at or
        after the horizon."""
        if t >= self.horizon:
            return
        when = max(t, self.now)
        self.events += 1
        event = self.env.timeout(max(0.0, when - self.env.now))
        event.callbacks.append(lambda _ev: self._fire(when, action, args))

    def _fire(self, when: float, action: Callable[..., None], args: tuple[Any, ...]) -> None:
        # SimPy reaches now + (when - now), which can miss ``when`` by one ulp; actions read the
        # exact intended time, so "online at its session start" stays true.
        self.now = when
        action(*args)

    def run_until(self, t: float) -> None:
        """Run every action due before ``t``."""
        self.env.run(until=t)
