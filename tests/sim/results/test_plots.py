"""``sim.results.plots``: the figures of one run are written without warnings, whatever the results hold."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from sim.engine import run_scenario
from sim.inputs.scenario import load_scenario
from sim.results import outcomes_frame, summarize
from sim.results.plots import plot_run

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "scenarios" / "smoke.toml"
SCRIPTED = ROOT / "scenarios" / "scripted.toml"

#: u6 never comes online (absent from the trace): its reset has rows but no relogin.
NEVER_BACK = """\
[simulation]
horizon_days = 1
seed = 1
policy = "queue"

[population]
users = 7

[churn]
model = "trace"
trace = "{trace}"

[[rooms.explicit]]
type = "p"
members = ["u2", "u5", "u6"]

[[resets.scripted]]
user = "u6"
at = 600
"""


def _plot_without_warnings(scenario_path: Path, folder: Path, overrides: dict[str, object]) -> None:
    result = run_scenario(load_scenario(scenario_path, overrides))
    summary = summarize(result)
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = plot_run(result, summary, folder)
    names = {p.name for p in written}
    assert names == {"restored_vs_holders_online.png", "time_to_restore_km.png", "rooms_without_holder.png"}
    for path in written:
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_no_resets_exponential_churn(tmp_path: Path) -> None:
    result = run_scenario(load_scenario(SMOKE, {"resets.rate_per_user_day": 0}))
    assert outcomes_frame(result).empty
    _plot_without_warnings(SMOKE, tmp_path / "plots", {"resets.rate_per_user_day": 0})


def test_no_resets_trace_churn(tmp_path: Path) -> None:
    _plot_without_warnings(SCRIPTED, tmp_path / "plots", {"resets.scripted": []})


def test_outcome_rows_without_relogin(tmp_path: Path) -> None:
    scenario = tmp_path / "never_back.toml"
    scenario.write_text(NEVER_BACK.format(trace=(ROOT / "scenarios" / "traces" / "scripted.csv").as_posix()))
    outcomes = outcomes_frame(run_scenario(load_scenario(scenario)))
    assert not outcomes.empty and outcomes["relogin_at"].isna().all()
    _plot_without_warnings(scenario, tmp_path / "plots", {})


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_smoke_with_restorations(tmp_path: Path, policy: str) -> None:
    _plot_without_warnings(SMOKE, tmp_path / "plots", {"simulation.policy": policy})
