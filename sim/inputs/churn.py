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
period.  Lengths come from inverse CDFs:

* exponential: ``-mean * ln(U)``;
* Weibull(k): scale ``lambda = mean / Gamma(1 + 1/k)`` so that the mean matches;
* lognormal(sigma): ``mu = ln(mean) - sigma**2 / 2`` so that the mean matches.

Stationary start.  The process is in equilibrium at t = 0, with no cold-start transient: the user
is online with probability ``p = mean_on / (mean_on + mean_off)``, and the first period is the
residual of a length-biased period, ``U * L`` (exponential: plain exponential by memorylessness;
Weibull: ``L = lambda * G**(1/k)``, ``G ~ Gamma(1 + 1/k, 1)``; lognormal: ``L ~
lognormal(mu + sigma**2, sigma)``).

Rhythm.  With ``rhythm="daily"`` (period P = 86,400 s) or ``"weekly"`` (P = 604,800 s), coming
online is modulated by the rate multiplier ``r(t) = 1 + a cos(2 pi (t - peak) / P)``.  An
offline gap is drawn as usual in *operational time* and mapped to real time through
``H(t) = integral_0^t r``: a gap starting at s ends at ``H^-1(H(s) + gap)`` (safeguarded Newton).
For exponential gaps this is exactly a non-homogeneous Poisson process of rate r(t)/mean_off.
Online sessions are not warped.  Because r averages to 1 over a period, ``H(t) - t`` is periodic
(it varies by at most ``a P / pi``), so the long-run mean offline gap is preserved up to a phase
term: a gap starting shortly after a login near the peak is stretched slightly more than average.
To first order it lengthens the mean gap by about ``a**2 * mean_online_s / 2`` when sessions are
short relative to P (+0.1 % for a = 0.5, 30-min sessions, 16-h gaps; +3 % for the extreme a = 0.8,
1-h sessions, 10-h gaps); it vanishes as sessions grow long relative to P.  "weekly" uses the
single weekly period (no separate weekend dip), and ``rhythm_peak_hour`` then counts hours from
the start of the week, t = 0 (0 <= hour < 168); for "daily" it is the hour of day (0 <= hour < 24).
The equilibrium start ignores the rhythm's phase (the first gap is a residual in operational time).

Cost (measured, pure Python): about 0.8 us per period generated (1.5 us with a rhythm), i.e. 1.6 s
per million online/offline cycles; about 0.3 us per query when one user's queries move forward in
time (a cursor per user), 0.5 us in random order (bisection).

Semantics shared by :class:`Presence` and :class:`~sim.inputs.trace.TracePresence`.  Times are seconds from 0.
Online periods are half-open, ``[start, end)``: at a change time the user is already in the new
state.  Stored change times are strictly increasing (two flips at the same instant cancel).
"""

from __future__ import annotations

import abc
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

from scipy.special import gammaincinv

from .streams import stream_seed, unit

__all__ = ["MODELS", "RHYTHMS", "ChurnParams", "Presence", "PresenceModel"]

MODELS = ("exponential", "weibull", "lognormal")
RHYTHMS = ("none", "daily", "weekly")

_DAY_S = 86_400.0
_WEEK_S = 604_800.0
_PERIOD_S = {"daily": _DAY_S, "weekly": _WEEK_S}

# Bounds that keep every inverse CDF finite in double precision; measured P2P session shapes
# (0.34-0.82) and lognormal fits (sigma around 1-2) are well inside.
_SHAPE_RANGE = (0.1, 20.0)
_SIGMA_MAX = 5.0
#: Precision of the rhythm's inverse time change, seconds.
_WARP_TOL_S = 1e-6


def _positive_finite(name: str, value: float, unit_name: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a positive number of {unit_name} (got {value!r})")


@dataclass(frozen=True, slots=True)
class ChurnParams:
    """Presence behaviour of one class of users; validated at construction."""

    model: str
    """"exponential", "weibull" or "lognormal": the law of session and gap lengths."""
    mean_online_s: float
    """Mean online session length, seconds (> 0)."""
    mean_offline_s: float
    """Mean offline gap length, seconds (> 0)."""
    shape: float = 1.0
    """Weibull shape k (heavy-tailed for k < 1; P2P measurements 0.34-0.82); weibull only."""
    sigma: float = 1.0
    """Lognormal sigma (mu is derived so that the mean matches); lognormal only."""
    rhythm: str = "none"
    """"none", "daily" or "weekly": cycle modulating when offline users come back."""
    rhythm_amplitude: float = 0.0
    """0 <= a < 1: relative strength of the cycle in the rate of coming online."""
    rhythm_peak_hour: float = 20.0
    """When coming online is most likely: hour of day (daily) or hour of week from t=0 (weekly)."""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model: must be one of {', '.join(MODELS)} (got {self.model!r})")
        _positive_finite("mean_online_s", self.mean_online_s, "seconds")
        _positive_finite("mean_offline_s", self.mean_offline_s, "seconds")
        lo, hi = _SHAPE_RANGE  # shape and sigma are checked only where used
        if self.model == "weibull" and not (isinstance(self.shape, int | float) and lo <= self.shape <= hi):
            raise ValueError(f"shape: the Weibull shape must be between {lo} and {hi} (got {self.shape!r})")
        if self.model == "lognormal" and not (
            isinstance(self.sigma, int | float) and 0 < self.sigma <= _SIGMA_MAX
        ):
            raise ValueError(
                f"sigma: the lognormal sigma must be > 0 and <= {_SIGMA_MAX} (got {self.sigma!r})"
            )
        if self.rhythm not in RHYTHMS:
            raise ValueError(f"rhythm: must be one of {', '.join(RHYTHMS)} (got {self.rhythm!r})")
        a = self.rhythm_amplitude
        if not (isinstance(a, int | float) and 0.0 <= a < 1.0):
            raise ValueError(f"rhythm_amplitude: must satisfy 0 <= a < 1 (got {a!r})")
        limit = 168.0 if self.rhythm == "weekly" else 24.0
        h = self.rhythm_peak_hour
        if not (isinstance(h, int | float) and 0.0 <= h < limit):
            what = "hour of the week" if self.rhythm == "weekly" else "hour of the day"
            raise ValueError(f"rhythm_peak_hour: must be an {what}, 0 <= h < {limit:g} (got {h!r})")

    @property
    def stationary_online(self) -> float:
        """Long-run fraction of time online, ``p = mean_on / (mean_on + mean_off)``."""
        return self.mean_online_s / (self.mean_online_s + self.mean_offline_s)


# --- length laws -----------------------------------------------------------------------------

_Draw = Callable[[float], float]
_Residual = Callable[[float, float], float]
_STD_NORMAL = NormalDist()


def _laws(model: str, mean: float, shape: float, sigma: float) -> tuple[_Draw, _Residual]:
    """(length from one uniform, equilibrium residual from two uniforms) for one period kind."""
    log, exp, pow_ = math.log, math.exp, math.pow
    if model == "exponential":

        def exp_draw(u: float) -> float:
            return -mean * log(u)

        def exp_residual(u1: float, u2: float) -> float:
            return -mean * log(u2)  # memoryless: the residual is exponential itself

        return exp_draw, exp_residual
    if model == "weibull":
        scale = mean * exp(-math.lgamma(1.0 + 1.0 / shape))  # lambda = mean / Gamma(1 + 1/k)
        inv_k = 1.0 / shape

        def weibull_draw(u: float) -> float:
            return scale * pow_(-log(u), inv_k)

        def weibull_residual(u1: float, u2: float) -> float:
            # length-biased Weibull: L = lambda G^(1/k), G ~ Gamma(1 + 1/k, 1)
            g = float(gammaincinv(1.0 + inv_k, u2))
            return u1 * scale * pow_(g, inv_k)

        return weibull_draw, weibull_residual
    mu = log(mean) - sigma * sigma / 2.0
    inv_cdf = _STD_NORMAL.inv_cdf

    def lognormal_draw(u: float) -> float:
        return exp(mu + sigma * inv_cdf(u))

    def lognormal_residual(u1: float, u2: float) -> float:
        # length-biased lognormal(mu, sigma) is lognormal(mu + sigma^2, sigma)
        return u1 * exp(mu + sigma * sigma + sigma * inv_cdf(u2))

    return lognormal_draw, lognormal_residual


class _Warp:
    """The rhythm's time change ``H(t) = t + c (sin(w (t - peak)) + sin(w peak))``, ``c = a / w``.

    ``H' = r = 1 + a cos(w (t - peak))`` and ``H(0) = 0``.
    """

    __slots__ = ("a", "c", "offset", "peak_s", "w")

    def __init__(self, amplitude: float, period_s: float, peak_s: float) -> None:
        self.a = amplitude
        self.w = 2.0 * math.pi / period_s
        self.c = amplitude / self.w
        self.peak_s = peak_s
        self.offset = self.c * math.sin(self.w * peak_s)

    def forward(self, t: float) -> float:
        """Operational time ``H(t)`` at real time ``t``."""
        return t + self.c * math.sin(self.w * (t - self.peak_s)) + self.offset

    def end_of_gap(self, start: float, gap: float) -> float:
        """Real time at which an operational gap ``gap`` begun at real time ``start`` ends."""
        a, c, w, peak = self.a, self.c, self.w, self.peak_s
        sin, cos = math.sin, math.cos
        target = start + c * sin(w * (start - peak)) + gap  # H(end) - offset
        # r lies in [1-a, 1+a], and H(t) - t varies by at most 2c: a tight bracket.
        lo = max(start + gap / (1.0 + a), start + gap - 2.0 * c)
        hi = min(start + gap / (1.0 - a), start + gap + 2.0 * c)
        t = min(max(start + gap, lo), hi)
        for _ in range(100):
            f = t + c * sin(w * (t - peak)) - target
            if -_WARP_TOL_S <= f <= _WARP_TOL_S:
                return t
            if f > 0.0:
                hi = t
            else:
                lo = t
            nxt = t - f / (1.0 + a * cos(w * (t - peak)))
            if not lo < nxt < hi:  # Newton left the bracket: bisect instead
                nxt = 0.5 * (lo + hi)
            if nxt == t:
                return t
            t = nxt
        return t


class _Sampler:
    """Everything needed to draw one class's periods; shared by the users of the class."""

    __slots__ = ("draw_off", "draw_on", "p_online", "residual_off", "residual_on", "warp")

    def __init__(self, params: ChurnParams) -> None:
        self.p_online = params.stationary_online
        self.draw_on, self.residual_on = _laws(params.model, params.mean_online_s, params.shape, params.sigma)
        self.draw_off, self.residual_off = _laws(
            params.model, params.mean_offline_s, params.shape, params.sigma
        )
        self.warp: _Warp | None = None
        if params.rhythm != "none" and params.rhythm_amplitude > 0.0:
            self.warp = _Warp(
                params.rhythm_amplitude, _PERIOD_S[params.rhythm], params.rhythm_peak_hour * 3600.0
            )


# --- timelines and the shared queries -----------------------------------------------------------


class _Timeline:
    """One user's change times; ``changes[i-1] <= t < changes[i]`` is segment i."""

    __slots__ = ("changes", "cursor", "online0")

    def __init__(self, online0: bool, changes: list[float]) -> None:
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
        super().__init__(online0, [first] if first > 0.0 else [])
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
            # and tests/test_churn.py checks it against sim.streams.unit.
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
    """What the engine needs from a presence source: :class:`Presence` or :class:`~sim.inputs.trace.TracePresence`."""

    def is_online(self, user: int, t: float) -> bool: ...
    def next_online_start(self, user: int, t: float) -> float | None: ...
    def session_end(self, user: int, t: float) -> float: ...
    def session_start(self, user: int, t: float) -> float: ...
    def next_change(self, user: int, t: float) -> float | None: ...
    def intervals(self, user: int, t0: float, t1: float) -> list[tuple[float, float]]: ...


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
