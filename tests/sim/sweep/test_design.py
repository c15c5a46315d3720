"""Sensitivity designs (SALib): parsing, the plan they make, indices against known functions,
and the report's Sensitivity section."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.cli import main
from sim.inputs.design import Design, DesignError, indices, parse_design, sample
from sim.sweep.plan import plan_sweep
from sim.sweep.sweepfile import SweepError, load_sweep

SMOKE = Path(__file__).resolve().parents[3] / "scenarios" / "smoke.toml"
BOUNDS = {"churn.mean_offline_minutes": [60, 600], "rooms.group_size": [3, 6]}


def _design(method: str, samples: int = 16, **bounds: list[float]) -> Design:
    return parse_design({"method": method, "samples": samples, "bounds": bounds or BOUNDS})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"method": "grid", "samples": 8, "bounds": BOUNDS}, "sweep.design.method"),
        ({"method": "sobol", "samples": 12, "bounds": BOUNDS}, "sweep.design.samples"),
        ({"method": "latin", "samples": 1, "bounds": BOUNDS}, "sweep.design.samples"),
        ({"method": "morris", "samples": 4, "levels": 3, "bounds": BOUNDS}, "sweep.design.levels"),
        (
            {"method": "sobol", "samples": 8, "bounds": {"churn.mean_offline_minutes": [1, 2]}},
            "sweep.design.bounds",
        ),
        (
            {"method": "sobol", "samples": 8, "bounds": {**BOUNDS, "churn.nope": [0, 1]}},
            "sweep.design.bounds.churn.nope",
        ),
        (
            {"method": "sobol", "samples": 8, "bounds": {**BOUNDS, "churn.model": [0, 1]}},
            "sweep.design.bounds.churn.model",
        ),
        (
            {"method": "sobol", "samples": 8, "bounds": {**BOUNDS, "resets.rate_per_user_day": [1, 0]}},
            "sweep.design.bounds.resets.rate_per_user_day",
        ),
        ({"method": "sobol", "samples": 8, "bounds": BOUNDS, "seed": 1}, "sweep.design.seed"),
    ],
)
def test_bad_designs_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(DesignError) as info:
        parse_design(table)
    assert info.value.key == key


def test_samples_are_seeded_in_bounds_and_integer_keys_rounded() -> None:
    design = _design("sobol", 8)
    points = sample(design, 3)
    assert len(points) == 8 * (2 + 2) and points == sample(design, 3) and points != sample(design, 4)
    assert all(60 <= p["churn.mean_offline_minutes"] <= 600 for p in points)
    assert all(isinstance(p["rooms.group_size"], int) and 3 <= p["rooms.group_size"] <= 6 for p in points)
    assert len(sample(_design("morris", 4), 3)) == 4 * 3 and len(sample(_design("latin", 10), 3)) == 10


@pytest.mark.parametrize("method", ["sobol", "morris", "latin"])
def test_indices_find_the_parameter_that_matters(method: str) -> None:
    """y depends on the offline time only: its index is large, the group size's near zero."""
    design = _design(method, 64)
    y = [p["churn.mean_offline_minutes"] / 600 for p in sample(design, 5)]
    by_name = {row["parameter"]: row for row in indices(design, 5, y)}
    first, other = by_name["churn.mean_offline_minutes"], by_name["rooms.group_size"]
    if method == "morris":
        assert first["mu_star"] > 0.5 and other["mu_star"] < 1e-9
    else:
        assert first["S1"] > 0.8 and abs(other["S1"]) < 0.15
    if method == "sobol":
        assert first["ST"] > 0.8 and other["ST"] < 0.05


def _write(tmp_path: Path, design: str, axes: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        f'[sweep]\nbase = "{SMOKE}"\nreplications = 1\nseed = 2\n'
        '[sweep.set]\n"simulation.horizon_days" = 0.5\n"population.users" = 30\n"rooms.groups" = 6\n'
        f"{axes}{design}"
    )
    return path


DESIGN = (
    '[sweep.design]\nmethod = "sobol"\nsamples = 4\n[sweep.design.bounds]\n'
    '"churn.mean_offline_minutes" = [30, 900]\n"rooms.group_size" = [3, 8]\n'
    '"resets.rate_per_user_day" = [0.2, 1.0]\n"churn.mean_online_minutes" = [20, 120]\n'
)


def test_a_design_replaces_the_axes(tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path, DESIGN))
    plan = plan_sweep(sweep)
    points = sample(sweep.design, 2)  # type: ignore[arg-type]
    assert len(points) == 4 * 6 and len(plan) == len({tuple(p.values()) for p in points})
    assert {tuple(spec.point[k] for k in points[0]) for spec in plan} == {tuple(p.values()) for p in points}
    with pytest.raises(SweepError, match="not both"):
        load_sweep(_write(tmp_path, DESIGN, '[sweep.axes]\n"simulation.policy" = ["queue", "live"]\n'))


def test_the_report_has_sobol_indices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, DESIGN)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "## Sensitivity" in page and "Sobol indices" in page
    table = (tmp_path / "rep" / "sensitivity.csv").read_text().splitlines()
    assert table[0].startswith("metric,parameter,S1,S1_conf,ST,ST_conf")
    assert len(table) - 1 in (4, 8)  # four parameters per metric that varies (rooms lost may not)
    assert "churn.mean_offline_minutes" in page
