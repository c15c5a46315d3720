"""sim.inputs.churn: lazy presence is stationary, matches its parameters, and is order-independent."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.inputs.churn import ChurnParams, Presence, PresenceModel
from sim.inputs.churn_laws import _Warp
from sim.inputs.streams import stream_seed, unit
from sim.inputs.trace import TracePresence

HOUR = 3600.0
DAY = 86_400.0

EXP = ChurnParams("exponential", mean_online_s=2 * HOUR, mean_offline_s=6 * HOUR)
WEI = ChurnParams("weibull", mean_online_s=2 * HOUR, mean_offline_s=6 * HOUR, shape=0.5)
LOGN = ChurnParams("lognormal", mean_online_s=2 * HOUR, mean_offline_s=6 * HOUR, sigma=1.0)
MODELS = [EXP, WEI, LOGN]


def _cv2(p: ChurnParams) -> float:
    """Squared coefficient of variation of a period length under ``p``'s law."""
    if p.model == "exponential":
        return 1.0
    if p.model == "weibull":
        k = p.shape
        return math.gamma(1 + 2 / k) / math.gamma(1 + 1 / k) ** 2 - 1
    return math.exp(p.sigma**2) - 1


def _band(n: int, p: float, z: float = 4.5) -> float:
    return z * math.sqrt(p * (1 - p) / n)


# --- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"model": "pareto"}, "model"),
        ({"mean_online_s": 0.0}, "mean_online_s"),
        ({"mean_online_s": math.inf}, "mean_online_s"),
        ({"mean_offline_s": -5.0}, "mean_offline_s"),
        ({"model": "weibull", "shape": 0.0}, "shape"),
        ({"model": "lognormal", "sigma": -1.0}, "sigma"),
        ({"rhythm": "monthly"}, "rhythm"),
        ({"rhythm": "daily", "rhythm_amplitude": 1.0}, "rhythm_amplitude"),
        ({"rhythm": "daily", "rhythm_peak_hour": 24.0}, "rhythm_peak_hour"),
        ({"rhythm": "weekly", "rhythm_peak_hour": 168.0}, "rhythm_peak_hour"),
    ],
)
def test_bad_params_name_the_parameter(kwargs: dict[str, object], name: str) -> None:
    base: dict[str, object] = {"model": "exponential", "mean_online_s": 60.0, "mean_offline_s": 60.0}
    with pytest.raises(ValueError, match=f"^{name}:"):
        ChurnParams(**(base | kwargs))  # type: ignore[arg-type]


def test_shape_and_sigma_are_checked_only_where_used() -> None:
    assert ChurnParams("exponential", 60.0, 60.0, shape=0.0, sigma=0.0).stationary_online == 0.5


def test_weekly_peak_hour_may_exceed_a_day() -> None:
    p = ChurnParams("exponential", 60.0, 60.0, rhythm="weekly", rhythm_amplitude=0.5, rhythm_peak_hour=100.0)
    assert p.stationary_online == 0.5


def test_presence_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^params_of_user:"):
        Presence(0, [EXP, EXP], 3)
    pres = Presence(0, [EXP] * 3, 3)
    with pytest.raises(ValueError, match=r"^user:"):
        pres.is_online(3, 0.0)
    with pytest.raises(ValueError, match=r"^t:"):
        pres.is_online(0, -1.0)
    with pytest.raises(ValueError, match=r"^t1:"):
        pres.intervals(0, 10.0, 5.0)
    bad = Presence(0, lambda u: "daily", 3)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match=r"^params_of_user:"):
        bad.is_online(0, 0.0)


# --- the hot loop draws exactly the documented uniforms -----------------------------------------


def test_timeline_is_built_from_documented_counter_uniforms() -> None:
    seed, user = 11, 4242
    pres = Presence(seed, lambda u: EXP, 10_000)
    key = stream_seed(seed, "churn")
    online = unit(key, user, 0) < EXP.stationary_online
    assert pres.is_online(user, 0.0) == online
    means = {True: EXP.mean_online_s, False: EXP.mean_offline_s}
    t = -means[online] * math.log(unit(key, user, 2))  # exponential residual
    expected = [t]
    state = not online
    for k in range(3, 60):
        t = t + -means[state] * math.log(unit(key, user, k))
        expected.append(t)
        state = not state
    got: list[float] = []
    t = 0.0
    for _ in expected:
        nxt = pres.next_change(user, t)
        assert nxt is not None
        got.append(nxt)
        t = nxt
    assert got == expected


# --- equilibrium --------------------------------------------------------------------------------


@pytest.mark.parametrize("params", MODELS, ids=lambda p: p.model)
def test_stationary_fraction_online(params: ChurnParams) -> None:
    n = 8000
    pres = Presence(7, lambda u: params, n)
    rng = random.Random(1)
    p = params.stationary_online
    at_zero = sum(pres.is_online(u, 0.0) for u in range(n)) / n
    at_random = sum(pres.is_online(u, rng.uniform(0, 30 * DAY)) for u in range(n)) / n
    assert abs(at_zero - p) < _band(n, p)
    assert abs(at_random - p) < _band(n, p)


@pytest.mark.parametrize("params", MODELS, ids=lambda p: p.model)
def test_session_and_gap_means_match(params: ChurnParams) -> None:
    users, periods = 300, 80
    pres = Presence(3, lambda u: params, users)
    on: list[float] = []
    off: list[float] = []
    for u in range(users):
        t = pres.next_change(u, 0.0)  # the first period is a residual: skip it
        assert t is not None
        for _ in range(periods):
            nxt = pres.next_change(u, t)
            assert nxt is not None
            (on if pres.is_online(u, t) else off).append(nxt - t)
            t = nxt
    cv = math.sqrt(_cv2(params))
    for sample, mean in ((on, params.mean_online_s), (off, params.mean_offline_s)):
        assert abs(sum(sample) / len(sample) / mean - 1) < 4.5 * cv / math.sqrt(len(sample))


def test_residual_of_online_exponential_user_is_mean_online() -> None:
    n = 6000
    pres = Presence(5, lambda u: EXP, n)
    res = [pres.session_end(u, 0.0) for u in range(n) if pres.is_online(u, 0.0)]
    gaps = [pres.next_online_start(u, 0.0) for u in range(n) if not pres.is_online(u, 0.0)]
    assert abs(sum(res) / len(res) / EXP.mean_online_s - 1) < 4.5 / math.sqrt(len(res))
    assert abs(sum(g for g in gaps if g is not None) / len(gaps) / EXP.mean_offline_s - 1) < 4.5 / math.sqrt(
        len(gaps)
    )


def test_residual_is_length_biased_for_lognormal() -> None:
    # equilibrium residual mean E[L^2] / (2 E[L]) = mean * exp(sigma^2) / 2 for a lognormal
    params = ChurnParams("lognormal", mean_online_s=HOUR, mean_offline_s=HOUR, sigma=0.8)
    n = 12_000
    pres = Presence(9, lambda u: params, n)
    res = [pres.session_end(u, 0.0) for u in range(n) if pres.is_online(u, 0.0)]
    s2 = params.sigma**2
    expected = HOUR * math.exp(s2) / 2
    # E[(U L)^2] = E[X^3] / (3 E[X]) for the lognormal X
    sd = HOUR * math.sqrt(math.exp(3 * s2) / 3 - math.exp(2 * s2) / 4)
    assert abs(sum(res) / len(res) - expected) < 4.5 * sd / math.sqrt(len(res))


# --- query semantics ----------------------------------------------------------------------------


@pytest.mark.parametrize("params", MODELS, ids=lambda p: p.model)
def test_queries_agree_with_each_other(params: ChurnParams) -> None:
    pres = Presence(21, lambda u: params, 50)
    rng = random.Random(2)
    for _ in range(600):
        u, t = rng.randrange(50), rng.uniform(0, 10 * DAY)
        online = pres.is_online(u, t)
        start = pres.next_online_start(u, t)
        change = pres.next_change(u, t)
        assert start is not None and change is not None
        assert start >= t and pres.is_online(u, start)
        assert change > t and pres.is_online(u, change) != online
        assert pres.is_online(u, (t + change) / 2) == online
        if online:
            assert start == t and pres.session_end(u, t) == change
        else:
            assert start == change
            with pytest.raises(ValueError, match="offline"):
                pres.session_end(u, t)


def test_intervals_consistent_with_is_online() -> None:
    pres = Presence(4, lambda u: WEI, 20)
    rng = random.Random(3)
    for u in range(20):
        t0 = rng.uniform(0, 2 * DAY)
        t1 = t0 + rng.uniform(0, 5 * DAY)
        spans = pres.intervals(u, t0, t1)
        for a, b in spans:
            assert t0 <= a < b <= t1
            assert pres.is_online(u, a)
            assert b == t1 or not pres.is_online(u, b)
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
        for _ in range(200):
            t = rng.uniform(t0, t1)
            assert pres.is_online(u, t) == any(a <= t < b for a, b in spans)
    assert pres.intervals(0, 5.0, 5.0) == []


def test_generation_is_lazy_and_per_user() -> None:
    pres = Presence(8, lambda u: EXP, 100_000)
    pres.is_online(99_999, HOUR)
    few = pres.events_generated
    assert few < 10  # one user, one hour: a handful of change times
    pres.is_online(99_999, 30 * DAY)
    assert 100 < pres.events_generated < 400  # ~30 days / 4 h per period
    pres.forget(99_999)
    assert pres.events_generated == 0


_QUERY = st.tuples(st.integers(0, 7), st.floats(0, 5 * DAY, allow_nan=False), st.integers(0, 3))


def _ask(pres: Presence, user: int, t: float, kind: int) -> object:
    if kind == 0:
        return pres.is_online(user, t)
    if kind == 1:
        return pres.next_online_start(user, t)
    if kind == 2:
        return pres.next_change(user, t)
    return pres.intervals(user, t, t + DAY)


@settings(max_examples=60, deadline=None)
@given(queries=st.lists(_QUERY, min_size=1, max_size=40), order=st.randoms(use_true_random=False))
def test_answers_do_not_depend_on_query_order(
    queries: list[tuple[int, float, int]], order: random.Random
) -> None:
    classes = [
        EXP,
        WEI,
        LOGN,
        ChurnParams("exponential", HOUR, 9 * HOUR, rhythm="daily", rhythm_amplitude=0.7),
    ]

    def params(u: int) -> ChurnParams:
        return classes[u % len(classes)]

    forward = Presence(13, params, 8)
    answers = {i: _ask(forward, *q) for i, q in enumerate(queries)}
    shuffled = list(enumerate(queries))
    order.shuffle(shuffled)
    other = Presence(13, params, 8)
    for i, q in shuffled:
        assert _ask(other, *q) == answers[i]
    for i, (user, t, kind) in enumerate(queries):  # a fresh population asked about one user only
        assert _ask(Presence(13, params, 8), user, t, kind) == answers[i]


def test_users_are_independent_of_each_other_and_seeds_matter() -> None:
    a = Presence(1, lambda u: EXP, 1000)
    b = Presence(1, lambda u: EXP, 1000)
    for u in range(999, -1, -1):
        b.next_change(u, DAY)
    assert [a.next_change(u, DAY) for u in range(1000)] == [b.next_change(u, DAY) for u in range(1000)]
    c = Presence(2, lambda u: EXP, 1000)
    assert [a.next_change(u, DAY) for u in range(50)] != [c.next_change(u, DAY) for u in range(50)]


# --- rhythm -------------------------------------------------------------------------------------


@pytest.mark.parametrize("amplitude", [0.3, 0.95])
def test_warp_inverts_the_operational_clock(amplitude: float) -> None:
    warp = _Warp(amplitude, DAY, 20 * HOUR)
    assert warp.forward(0.0) == 0.0
    rng = random.Random(5)
    for _ in range(2000):
        start, gap = rng.uniform(0, 60 * DAY), rng.expovariate(1 / (5 * HOUR))
        end = warp.end_of_gap(start, gap)
        assert end >= start
        assert warp.forward(end) - warp.forward(start) == pytest.approx(gap, abs=1e-5)


def _cycles(pres: Presence, users: int, cycles: int, skip: int) -> tuple[list[float], list[float]]:
    """Online-start times and offline gaps of the first ``cycles`` full cycles after ``skip`` changes.

    A fixed number of cycles per user, not a time window, so that no gap is selected by its length.
    """
    starts: list[float] = []
    gaps: list[float] = []
    for u in range(users):
        t = 0.0
        for _ in range(skip):
            nxt = pres.next_change(u, t)
            assert nxt is not None
            t = nxt
        for _ in range(2 * cycles):
            nxt = pres.next_change(u, t)
            assert nxt is not None
            if pres.is_online(u, t):
                starts.append(t)
            else:
                gaps.append(nxt - t)
            t = nxt
    return starts, gaps


def _circular_mean(times: list[float], period: float) -> tuple[float, float]:
    """(mean phase in [0, period), resultant length in [0, 1])."""
    c = sum(math.cos(2 * math.pi * t / period) for t in times) / len(times)
    s = sum(math.sin(2 * math.pi * t / period) for t in times) / len(times)
    return (math.atan2(s, c) / (2 * math.pi) * period) % period, math.hypot(c, s)


def _gap_band(gaps: list[float]) -> float:
    return 3.5 / math.sqrt(len(gaps))  # exponential gaps: CV 1 (a warp only shrinks the spread)


def test_daily_rhythm_concentrates_logins_near_the_peak() -> None:
    params = ChurnParams(
        "exponential", HOUR, 10 * HOUR, rhythm="daily", rhythm_amplitude=0.8, rhythm_peak_hour=20.0
    )
    pres = Presence(6, lambda u: params, 200)
    starts, gaps = _cycles(pres, 200, 100, skip=4)
    phase, resultant = _circular_mean(starts, DAY)
    assert abs(phase / HOUR - 20.0) < 1.0
    assert resultant > 0.3
    # Strong rhythm and short sessions: the documented phase term lengthens gaps by at most
    # about mean_on * a^2 / 2 (here +3.2 %), never shortens them.
    excess = sum(gaps) / len(gaps) / params.mean_offline_s - 1
    bound = params.mean_online_s * params.rhythm_amplitude**2 / 2 / params.mean_offline_s
    assert -_gap_band(gaps) < excess < bound + _gap_band(gaps)

    flat = Presence(6, lambda u: ChurnParams("exponential", HOUR, 10 * HOUR), 200)
    starts, _ = _cycles(flat, 200, 100, skip=4)
    assert _circular_mean(starts, DAY)[1] < 0.05


def test_daily_rhythm_keeps_the_mean_offline_gap() -> None:
    params = ChurnParams(
        "exponential", 0.5 * HOUR, 16 * HOUR, rhythm="daily", rhythm_amplitude=0.5, rhythm_peak_hour=9.5
    )
    pres = Presence(3, lambda u: params, 300)
    starts, gaps = _cycles(pres, 300, 100, skip=4)
    assert abs(_circular_mean(starts, DAY)[0] / HOUR - 9.5) < 1.0
    assert abs(sum(gaps) / len(gaps) / params.mean_offline_s - 1) < _gap_band(gaps)


def test_weekly_rhythm_peaks_at_the_hour_of_the_week() -> None:
    params = ChurnParams(
        "weibull", 2 * HOUR, 3 * DAY, shape=0.8, rhythm="weekly", rhythm_amplitude=0.9, rhythm_peak_hour=100.0
    )
    pres = Presence(6, lambda u: params, 300)
    starts, gaps = _cycles(pres, 300, 60, skip=4)
    phase, resultant = _circular_mean(starts, 7 * DAY)
    assert abs(phase / HOUR - 100.0) < 6.0
    assert resultant > 0.3
    assert abs(sum(gaps) / len(gaps) / params.mean_offline_s - 1) < 0.05


# --- traces -------------------------------------------------------------------------------------

USERS = {f"u{i}": i for i in range(5)}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_trace_replays_merged_intervals(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "user,online_at,offline_at\n# a comment\nu1,100,250\n\nu1,250,300\nu1,50,60\nu2, 10 , 20\n",
    )
    trace = TracePresence.from_csv(path, USERS)
    assert trace.intervals(1, 0, 1000) == [(50.0, 60.0), (100.0, 300.0)]  # touching merged, lines sorted
    assert not trace.is_online(1, 49.9) and trace.is_online(1, 50) and not trace.is_online(1, 60)
    assert trace.is_online(1, 299.0) and not trace.is_online(1, 300.0)
    assert trace.next_online_start(1, 70) == 100.0
    assert trace.next_online_start(1, 120) == 120
    assert trace.next_online_start(1, 300) is None
    assert trace.session_end(1, 120) == 300.0
    assert trace.next_change(1, 100) == 300.0
    assert trace.next_change(1, 300) is None
    assert trace.intervals(1, 55, 120) == [(55, 60.0), (100.0, 120)]
    with pytest.raises(ValueError, match="offline"):
        trace.session_end(1, 70)
    model: PresenceModel = trace  # both presence sources satisfy the engine's protocol
    assert model.is_online(2, 15)


def test_trace_user_absent_is_never_online(tmp_path: Path) -> None:
    trace = TracePresence.from_csv(_write(tmp_path, "u1,0,10\n"), USERS)
    for user in (0, 3, 4, 1234):
        assert not trace.is_online(user, 5.0)
        assert trace.next_online_start(user, 0.0) is None
        assert trace.next_change(user, 0.0) is None
        assert trace.intervals(user, 0.0, 100.0) == []


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("u1,0,10\nu9,0,10\n", 2, "unknown user 'u9'"),
        ("user,online_at,offline_at\nu1,0\n", 2, "expected 3 fields"),
        ("u1,0,10\n\nu1,abc,20\n", 3, "must be numbers"),
        ("u1,0,10\nu2,30,30\n", 2, "not after online_at"),
        ("u1,40,30\n", 1, "not after online_at"),
        ("u1,-5,30\n", 1, ">= 0"),
        ("u1,0,10\nu1,5,nan\n", 2, "finite"),
    ],
)
def test_trace_errors_name_the_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"trace\.csv:{line}: .*{what}"):
        TracePresence.from_csv(path, USERS)


@pytest.mark.parametrize(
    ("text", "line", "other"),
    [
        ("u1,0,100\nu1,50,150\n", 2, 1),  # the case of the acceptance pass
        ("u1,50,150\nu1,0,100\n", 2, 1),  # the same, lines out of order
        ("user,online_at,offline_at\nu1,0,100\nu2,0,500\n# c\nu1,20,30\n", 5, 2),  # nested
        ("u1,0,100\nu1,200,300\nu1,150,250\n", 3, 2),  # overlaps the later session only
        ("u1,10,20\nu1,10,20\n", 2, 1),  # a duplicated line
    ],
)
def test_trace_overlapping_sessions_are_rejected(tmp_path: Path, text: str, line: int, other: int) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"trace\.csv:{line}: .*overlaps .*line {other}\b"):
        TracePresence.from_csv(path, USERS)


def test_trace_touching_sessions_merge_and_lines_are_sorted(tmp_path: Path) -> None:
    # one user's lines in any order; [0, 100) and [100, 150) touch: one session [0, 150)
    path = _write(tmp_path, "u1,300,400\nu1,100,150\nu2,100,150\nu1,0,100\nu2,0,100\n")
    trace = TracePresence.from_csv(path, USERS)
    for user in (1, 2):
        assert trace.intervals(user, 0, 1000)[0] == (0.0, 150.0)
        assert trace.is_online(user, 100.0) and not trace.is_online(user, 150.0)
        assert trace.session_end(user, 50.0) == 150.0
        assert trace.next_change(user, 0.0) == 150.0
        assert trace.next_online_start(user, 100.0) == 100.0
    assert trace.intervals(1, 0, 1000) == [(0.0, 150.0), (300.0, 400.0)]
    assert trace.intervals(2, 0, 1000) == [(0.0, 150.0)]
    assert trace.next_online_start(1, 150.0) == 300.0
