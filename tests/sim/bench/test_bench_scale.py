"""sim.bench.scale: the grid of sizes and horizons, with the bare model estimated where it would
run too long.  Tiny cells only (300 and 600 users, half a day); no assertion on timings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sim.bench.scale import run_scale
from sim.cli import main

BENCH = Path(__file__).resolve().parents[3] / "scenarios" / "bench.toml"


def test_every_cell_is_run_and_the_large_bare_runs_are_estimated() -> None:
    out = io.StringIO()
    # 300 users for half a day expect 1,200 bare events, 600 users 2,400: the second is estimated
    figures = run_scale(BENCH, users=(600, 300), days=(0.5,), bare_max_events=2000, out=out)
    small, large = figures["cells"]
    assert (small["users"], large["users"]) == (300, 600) and small["days"] == large["days"] == 0.5
    assert small["bare_expected_events"] == pytest.approx(1200) and large[
        "bare_expected_events"
    ] == pytest.approx(2400)
    assert not small["bare_estimated"] and small["bare_events"] > 0
    assert large["bare_estimated"] and large["bare_events"] is None
    per_event = small["bare_wall_s"] / small["bare_events"]
    assert large["bare_wall_s"] == pytest.approx(2400 * per_event)
    assert large["ratio_full_to_bare_wall"] == pytest.approx(large["full_wall_s"] / large["bare_wall_s"])
    assert large["bare_estimated_from"] == {"users": 300, "days": 0.5}
    for cell in (small, large):
        assert cell["full_wall_s"] > 0 and cell["full_peak_rss_mib"] > 1.0 and cell["rooms"] > 0
    table = out.getvalue()[out.getvalue().index("users  days") :].splitlines()
    assert (
        len(table) == 4 and table[1].split()[:2] == ["300", "0.5"] and table[2].split()[:2] == ["600", "0.5"]
    )
    assert "est." in table[2] and "est." not in table[1] and table[3].startswith("est.: bare model not run")
    json.dumps(figures)  # JSON-ready


def test_cli_scale_writes_json_and_refuses_bad_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "scale.json"
    argv = [
        "bench",
        str(BENCH),
        "--scale",
        "--scale-users",
        "300",
        "--scale-days",
        "0.25",
        "--json",
        str(target),
    ]
    assert main(argv) == 0
    (cell,) = json.loads(target.read_text())["cells"]
    assert (cell["users"], cell["days"], cell["bare_estimated"]) == (300, 0.25, False)
    assert "300  0.25" in capsys.readouterr().out
    assert main(["bench", str(BENCH), "--scale", "--users", "500"]) == 2
    assert "--scale: sizes and horizons come from --scale-users and --scale-days" in capsys.readouterr().err
    for flag, value, message in (
        ("--scale-users", "1000,x", "not a comma-separated list of integers: '1000,x'"),
        ("--scale-users", "1", "every value must be >= 2, got '1'"),
        ("--scale-days", "7,nan", "every value must be a finite number > 0, got '7,nan'"),
    ):
        with pytest.raises(SystemExit) as refused:
            main(["bench", "--scale", flag, value])
        assert refused.value.code == 2 and message in capsys.readouterr().err
