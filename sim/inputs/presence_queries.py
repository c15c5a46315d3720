"""The presence questions and the per-user timeline of change times they are answered from.

:class:`PresenceModel` is what the engine asks of a presence source; :class:`_Queries` answers it
from one :class:`_Timeline` per user.

Semantics shared by :class:`~sim.inputs.churn.Presence` and
:class:`~sim.inputs.trace.TracePresence`.  Times are seconds from 0.  Online periods are half-open,
``[start, end)``: at a change time the user is already in the new state.  Stored change times are
strictly increasing (two flips at the same instant cancel).

May import the standard library only.
"""

from __future__ import annotations

import abc
import math
from bisect import bisect_right
from collections.abc import MutableSequence
from typing import Protocol

__all__ = ["PresenceModel"]


class _Timeline:
    """One user's change times; ``changes[i-1] <= t < changes[i]`` is segment i."""

    __slots__ = ("changes", "cursor", "online0")

    def __init__(self, online0: bool, changes: MutableSequence[float]) -> None:
        self.online0 = online0
        self.changes = changes
        self.cursor = 0  # segment of the last query: monotone queries are O(1)

    def cover(self, t: float) -> None:
        """Make the change times known beyond ``t`` where the timeline has any."""

    def locate(self, t: float) -> int:
        self.cover(t)
        ch = self.changes
        n = len(ch)
        i = self.cursor
        if i <= n and (i == 0 or ch[i - 1] <= t):
            if i == n or t < ch[i]:
                return i
            if i + 1 == n or t < ch[i + 1]:
                self.cursor = i + 1
                return i + 1
        i = bisect_right(ch, t)
        self.cursor = i
        return i


def _check_time(name: str, t: float) -> None:
    if not (isinstance(t, int | float) and 0.0 <= t < math.inf):
        raise ValueError(f"{name}: time must be a finite number of seconds >= 0 (got {t!r})")


class _Queries(abc.ABC):
    """The presence questions, answered from a :class:`_Timeline` per user."""

    @abc.abstractmethod
    def _timeline(self, user: int) -> _Timeline:
        """The (lazily extended) timeline of ``user``."""

    def is_online(self, user: int, t: float) -> bool:
        """Whether ``user`` is online at time ``t`` (seconds)."""
        _check_time("t", t)
        tl = self._timeline(user)
        return tl.online0 ^ bool(tl.locate(t) & 1)

    def next_online_start(self, user: int, t: float) -> float | None:
        """The first time >= t at which ``user`` is online (t itself if online); None if never."""
        _check_time("t", t)
        tl = self._timeline(user)
        i = tl.locate(t)
        if tl.online0 ^ bool(i & 1):
            return float(t)
        return tl.changes[i] if i < len(tl.changes) else None

    def session_end(self, user: int, t: float) -> float:
        """When the online session of ``user`` that contains ``t`` ends."""
        _check_time("t", t)
        tl = self._timeline(user)
        i = tl.locate(t)
        if not tl.online0 ^ bool(i & 1):
            raise ValueError(f"user {user} is offline at t={t!r}: no session to end")
        return tl.changes[i]  # an online segment always ends (traces close every interval)

    def session_start(self, user: int, t: float) -> float:
        """When the online session that contains ``t`` began (``t`` itself if offline)."""
        _check_time("t", t)
        tl = self._timeline(user)
        i = tl.locate(t)
        if not (tl.online0 ^ bool(i & 1)):
            return float(t)
        return tl.changes[i - 1] if i > 0 else 0.0

    def next_change(self, user: int, t: float) -> float | None:
        """The first time > t at which ``user``'s state flips; None if it never does."""
        _check_time("t", t)
        tl = self._timeline(user)
        i = tl.locate(t)
        return tl.changes[i] if i < len(tl.changes) else None

    def intervals(self, user: int, t0: float, t1: float) -> list[tuple[float, float]]:
        """The online periods of ``user`` clipped to ``[t0, t1)``, each half-open and non-empty."""
        _check_time("t0", t0)
        _check_time("t1", t1)
        if t1 < t0:
            raise ValueError(f"t1: must be >= t0 (got t0={t0!r}, t1={t1!r})")
        tl = self._timeline(user)
        i = tl.locate(t0)
        tl.cover(t1)
        ch = tl.changes
        out: list[tuple[float, float]] = []
        start = float(t0)
        while start < t1:
            end = ch[i] if i < len(ch) else math.inf
            if tl.online0 ^ bool(i & 1):
                out.append((start, min(end, float(t1))))
            start = end
            i += 1
        return out


class PresenceModel(Protocol):
    """What the engine needs from a presence source: :class:`~sim.inputs.churn.Presence` or :class:`~sim.inputs.trace.TracePresence`."""

    def is_online(self, user: int, t: float) -> bool: ...
    def next_online_start(self, user: int, t: float) -> float | None: ...
    def session_end(self, user: int, t: float) -> float: ...
    def session_start(self, user: int, t: float) -> float: ...
    def next_change(self, user: int, t: float) -> float | None: ...
    def intervals(self, user: int, t0: float, t1: float) -> list[tuple[float, float]]: ...
