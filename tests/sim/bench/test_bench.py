"""sim.bench.runs: both runs happen in child processes and come back with sane figures.

Small runs only (300 users, 1 day); no assertion on timings, which depend on the machine.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from sim.bench.runs import _run_child, run_bench
from sim.inputs.scenario import ScenarioError

BENCH = Path(__file__).resolve().parents[3] / "scenarios" / "bench.toml"
USERS = 300
DAYS = 1.0


@pytest.fixture(scope="module")
def both() -> tuple[dict[str, Any], str]:
    out = io.StringIO()
    report = run_bench(BENCH, out=out, users=USERS, horizon_days=DAYS)
    return report, out.getvalue()


def test_both_runs_report_positive_figures(both: tuple[dict[str, Any], str]) -> None:
    report, _ = both
    assert report["users"] == USERS
    assert report["horizon_days"] == DAYS
    assert report["skipped"] == {}
    for kind in ("full", "bare"):
        run = report[kind]
        assert run["events"] > 0
        assert run["wall_s"] > 0
        assert run["peak_rss_mib"] > 1.0  # a Python interpreter, in MiB, not KiB or bytes
        assert run["peak_rss_mib"] < 4096.0
        assert run["child_wall_s"] >= run["wall_s"]
        assert run["events_per_s"] == pytest.approx(run["events"] / run["simulate_s"])
    assert report["ratio_full_to_bare_wall"] == pytest.approx(
        report["full"]["wall_s"] / report["bare"]["wall_s"]
    )
    assert report["verdicts"]["full_not_slower_than_bare"] == (report["ratio_full_to_bare_wall"] <= 1.0)
    assert report["verdicts"]["full_under_3_min"] is True
    assert report["verdicts"]["full_under_4_gib"] is True


def test_rooms_are_scaled_with_the_population(both: tuple[dict[str, Any], str]) -> None:
    report, _ = both
    # bench.toml: 10,000 DMs and 10,000 groups for 100,000 users
    assert report["overrides"]["rooms.dms"] == 30
    assert report["overrides"]["rooms.groups"] == 30
    assert report["rooms"] == {"dms": 30, "groups": 30}


def test_full_run_carries_the_simulation_figures(both: tuple[dict[str, Any], str]) -> None:
    full = both[0]["full"]
    # 0.01 resets per user per day: about 3 here; a reset that happens yields one row per room
    assert full["resets"] >= 0
    assert full["logins"] >= USERS  # establishment logs everybody in once
    assert full["outcomes"] >= full["restored"] >= 0
    if full["outcomes"]:
        assert full["fraction_restored"] == pytest.approx(full["restored"] / full["outcomes"])
    assert full["violations"] == 0


def test_bare_event_count_matches_the_renewal_expectation(both: tuple[dict[str, Any], str]) -> None:
    bare = both[0]["bare"]
    # a stationary alternating renewal process makes 2 H / (mean_on + mean_off) changes in [0, H]
    cycle_s = (60 + 300) * 60.0
    expected = 2 * USERS * DAYS * 86400.0 / cycle_s  # 2,400
    assert bare["expected_events"] == pytest.approx(expected)
    assert bare["users"] == USERS
    # the count's standard deviation is about sqrt(2,400) ~ 50; the band is 10 sigma wide
    assert abs(bare["events"] - expected) < 0.1 * expected


def test_report_is_json_and_the_table_names_both_runs(both: tuple[dict[str, Any], str]) -> None:
    report, text = both
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert "full simulation" in text
    assert "bare SimPy model" in text
    assert "SimPy events" in text
    assert "peak RSS (MiB)" in text
    assert "full/bare wall ratio" in text
    assert f"{report['bare']['events']:,}" in text
    assert "targets:" in text


def test_skip_full_runs_only_the_bare_model() -> None:
    out = io.StringIO()
    report = run_bench(BENCH, out=out, users=USERS, horizon_days=DAYS, skip_full=True)
    assert report["full"] is None
    assert report["bare"]["events"] > 0
    assert "full" in report["skipped"]
    assert report["ratio_full_to_bare_wall"] is None
    assert report["verdicts"] == {
        "full_under_3_min": None,
        "full_under_4_gib": None,
        "full_not_slower_than_bare": None,
    }
    assert "full simulation: started" not in out.getvalue()
    assert "bare SimPy model: started" in out.getvalue()


def test_skip_bare_runs_only_the_full_simulation() -> None:
    out = io.StringIO()
    report = run_bench(BENCH, out=out, users=USERS, horizon_days=DAYS, skip_bare=True)
    assert report["bare"] is None
    assert report["full"]["events"] > 0
    assert "bare" in report["skipped"]
    assert report["ratio_full_to_bare_wall"] is None
    assert report["verdicts"]["full_under_3_min"] is True
    assert report["verdicts"]["full_not_slower_than_bare"] is None
    assert "bare SimPy model: started" not in out.getvalue()


def test_bare_model_is_seeded() -> None:
    spec = {"scenario": str(BENCH), "overrides": {"population.users": 50, "simulation.horizon_days": 0.5}}
    first = _run_child("bare", spec, io.StringIO())
    second = _run_child("bare", spec, io.StringIO())
    assert first["events"] == second["events"]


@pytest.mark.parametrize(
    ("churn", "extra"),
    [("weibull", "shape = 0.6\n"), ("lognormal", "sigma = 1.5\n")],
)
def test_other_churn_laws_keep_their_means(tmp_path: Path, churn: str, extra: str) -> None:
    scenario = tmp_path / "churn.toml"
    scenario.write_text(
        "[simulation]\nhorizon_days = 4\nseed = 3\n[population]\nusers = 400\n"
        f'[churn]\nmodel = "{churn}"\nmean_online_minutes = 60\nmean_offline_minutes = 120\n{extra}'
    )
    report = run_bench(scenario, out=io.StringIO(), skip_full=True)
    bare = report["bare"]
    expected = 2 * 400 * 4 * 86400.0 / (180 * 60.0)  # 6,400
    assert bare["expected_events"] == pytest.approx(expected)
    # heavier tails than exponential: a wider band, still far from a wrong mean
    assert abs(bare["events"] - expected) < 0.15 * expected


def test_population_classes_are_modelled_per_class(tmp_path: Path) -> None:
    scenario = tmp_path / "classes.toml"
    scenario.write_text(
        "[simulation]\nhorizon_days = 2\n[population]\nusers = 200\n"
        "[[population.classes]]\nname = 'busy'\nfraction = 0.5\n"
        "mean_online_minutes = 30\nmean_offline_minutes = 30\n"
        "[[population.classes]]\nname = 'rare'\nfraction = 0.5\n"
        "mean_online_minutes = 60\nmean_offline_minutes = 660\n"
    )
    bare = run_bench(scenario, out=io.StringIO(), skip_full=True)["bare"]
    expected = 2 * 100 * 2 * 86400.0 / 3600.0 + 2 * 100 * 2 * 86400.0 / 43200.0  # 9,600 + 800
    assert bare["expected_events"] == pytest.approx(expected)
    assert abs(bare["events"] - expected) < 0.1 * expected


def test_trace_churn_skips_the_bare_model(tmp_path: Path) -> None:
    (tmp_path / "trace.csv").write_text("user,online_at,offline_at\nu0,0,3600\nu1,1800,7200\n")
    scenario = tmp_path / "trace.toml"
    scenario.write_text(
        "[simulation]\nhorizon_days = 1\n[population]\nusers = 4\n"
        '[churn]\nmodel = "trace"\ntrace = "trace.csv"\n'
        "[rooms]\ndms = 2\ngroup_size = 2\ngroup_size_max = 4\n"
    )
    out = io.StringIO()
    report = run_bench(scenario, out=out, skip_full=True)
    assert report["bare"] is None
    assert "trace" in report["skipped"]["bare"]
    assert "skipped" in out.getvalue()


def test_bad_override_fails_before_any_child(tmp_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(ScenarioError, match=r"population\.users"):
        run_bench(BENCH, out=out, users=1)
    with pytest.raises(ScenarioError, match=r"simulation\.horizon_days"):
        run_bench(BENCH, out=out, horizon_days=-1.0)
    assert "started" not in out.getvalue()


def test_skipping_both_runs_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing left to run"):
        run_bench(BENCH, out=io.StringIO(), skip_full=True, skip_bare=True)


def test_a_failing_child_raises_with_its_stderr_tail() -> None:
    spec = {"scenario": str(BENCH), "overrides": {"population.users": 50}}
    with pytest.raises(RuntimeError, match="unknown bench run 'nonsense'") as caught:
        _run_child("nonsense", spec, io.StringIO())
    assert "exit status 1" in str(caught.value)
    assert "Traceback" in str(caught.value)
    # a scenario that disappears between the parent's check and the child
    gone = {"scenario": "/nonexistent/bench.toml", "overrides": {}}
    with pytest.raises(RuntimeError, match="file not found"):
        _run_child("full", gone, io.StringIO())
