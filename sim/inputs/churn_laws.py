"""Churn laws: one class of users' presence parameters and the laws its periods are drawn from.

:class:`ChurnParams` is validated at construction; :class:`_Sampler` turns it into the draws that a
generated timeline (:mod:`sim.inputs.churn`) makes, one sampler shared by the users of a class.
Lengths come from inverse CDFs:

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

May import the standard library and scipy, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from scipy.special import gammaincinv

__all__ = ["MODELS", "RHYTHMS", "ChurnParams"]

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
