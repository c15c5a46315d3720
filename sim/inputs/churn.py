"""Lazy presence: who is online when, for a large population, generated only where asked.

Theory of operation
-------------------
Each user alternates online sessions and offline gaps: an alternating renewal process.  The
simulator never toggles every user on and off (100,000 users over 30 days would be tens of
millions of events); it asks, for the few users that matter at a moment, "is u online at t?",
"when does u next come online?", and so on.  A user's timeline is a list of state-change times
that is extended only as far as the questions reach, so memory is O(events generated for the users
asked).

Determinism and independence.  The k-th random number of user u is ``unit(key, u, k)``, a
counter-based uniform (:mod:`sim.inputs.streams`) with ``key = stream_seed(root_seed, "churn")``.  A
user's timeline therefore depends on (root seed, user, that user's parameters) alone, never on
which other users were asked about or in what order.  Counter 0 decides the initial state,
counters 1 and 2 the first (residual) period, counter k >= 3 the length of the (k-2)-th later
period; :mod:`sim.inputs.churn_laws` turns the uniforms into lengths, starts the process in
equilibrium and applies the daily or weekly rhythm.

Cost (measured, pure Python): about 0.8 us per period generated (1.5 us with a rhythm), i.e. 1.6 s
per million online/offline cycles; about 0.3 us per query when one user's queries move forward in
time (a cursor per user), 0.5 us in random order (bisection).

The questions a :class:`Presence` answers, and their semantics, are those of
:mod:`sim.inputs.presence_queries`.  May import the standard library and :mod:`sim.inputs`'
streams, churn laws and presence queries, nothing else of :mod:`sim`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

from .churn_laws import MODELS, RHYTHMS, ChurnParams, _Sampler
from .presence_queries import PresenceModel, _Queries, _Timeline
from .streams import stream_seed, unit

__all__ = ["MODELS", "RHYTHMS", "ChurnParams", "Presence", "PresenceModel"]


class _RenewalTimeline(_Timeline):
    """A generated timeline, extended on demand from counter-based uniforms."""

    __slots__ = ("counter", "edge", "next_online", "sampler", "z_user")

    def __init__(self, key: int, user: int, sampler: _Sampler) -> None:
        online0 = unit(key, user, 0) < sampler.p_online
        u1, u2 = unit(key, user, 1), unit(key, user, 2)
        if online0:
            first = sampler.residual_on(u1, u2)
        else:
            first = sampler.residual_off(u1, u2)
            if sampler.warp is not None:
                first = sampler.warp.end_of_gap(0.0, first)
        # change times as C doubles (8 bytes each, against 32 for a list of floats): a user
        # followed for a year keeps about 3,000 of them
        super().__init__(online0, array("d", (first,) if first > 0.0 else ()))
        self.sampler = sampler
        self.edge = first  # the raw time of the last flip drawn
        self.next_online = not online0  # the state of the period to draw next
        self.counter = 3
        self.z_user = _mix(key ^ (user & _MASK))  # unit(key, user, k)'s state after the user

    def cover(self, t: float) -> None:
        ch = self.changes
        if ch and ch[-1] > t:
            return
        zu, k, edge, online = self.z_user, self.counter, self.edge, self.next_online
        s = self.sampler
        draw_on, draw_off, warp = s.draw_on, s.draw_off, s.warp
        while not ch or ch[-1] <= t:
            # unit(key, user, k) inlined (two SplitMix64 finalisers): this loop is the hot path,
            # and tests/sim/inputs/test_churn.py checks it against sim.inputs.streams.unit.
            z = ((zu ^ k) + 0x9E3779B97F4A7C15) & _MASK
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            z = ((z ^ (z >> 31)) + 0x9E3779B97F4A7C15) & _MASK
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            u = (((z ^ (z >> 31)) >> 11) + 0.5) * _TWO_M53
            k += 1
            if online:
                end = edge + draw_on(u)
            elif warp is None:
                end = edge + draw_off(u)
            else:
                end = warp.end_of_gap(edge, draw_off(u))
            if ch and ch[-1] >= end:  # an empty period (underflow): its two flips cancel
                ch.pop()
            else:
                ch.append(end)
            edge = end
            online = not online
        self.counter, self.edge, self.next_online = k, edge, online


def _mix(z: int) -> int:
    """SplitMix64's finaliser, as in :mod:`sim.inputs.streams`."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


_MASK = (1 << 64) - 1
_TWO_M53 = 1.0 / float(1 << 53)


class Presence(_Queries):
    """Lazily generated presence of users ``0 .. n_users-1`` under one root seed."""

    def __init__(
        self,
        root_seed: int,
        params_of_user: Sequence[ChurnParams] | Callable[[int], ChurnParams],
        n_users: int,
    ) -> None:
        if not (isinstance(n_users, int) and n_users >= 0):
            raise ValueError(f"n_users: must be an integer >= 0 (got {n_users!r})")
        if not callable(params_of_user) and len(params_of_user) != n_users:
            raise ValueError(f"params_of_user: has {len(params_of_user)} entries for n_users={n_users} users")
        self._key = stream_seed(root_seed, "churn")
        self._params_of_user = params_of_user
        self.n_users = n_users
        self._timelines: dict[int, _RenewalTimeline] = {}
        self._samplers: dict[ChurnParams, _Sampler] = {}

    def params(self, user: int) -> ChurnParams:
        """The churn class of ``user``."""
        p = self._params_of_user
        params = p(user) if callable(p) else p[user]
        if not isinstance(params, ChurnParams):
            raise ValueError(f"params_of_user: gave {type(params).__name__} for user {user}, not ChurnParams")
        return params

    def _timeline(self, user: int) -> _Timeline:
        tl = self._timelines.get(user)
        if tl is None:
            if not (isinstance(user, int) and 0 <= user < self.n_users):
                raise ValueError(f"user: must be in [0, {self.n_users}) (got {user!r})")
            params = self.params(user)
            sampler = self._samplers.get(params)
            if sampler is None:
                sampler = self._samplers[params] = _Sampler(params)
            tl = self._timelines[user] = _RenewalTimeline(self._key, user, sampler)
        return tl

    @property
    def events_generated(self) -> int:
        """Change times held in memory, over all users asked about so far."""
        return sum(len(tl.changes) for tl in self._timelines.values())

    def forget(self, user: int) -> None:
        """Drop ``user``'s generated timeline (it is regenerated identically if asked again)."""
        self._timelines.pop(user, None)
