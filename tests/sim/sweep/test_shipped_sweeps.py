"""The sweep files shipped in scenarios/sweeps: each plans (every point a valid scenario), and
policies-world compares every policy the protocol knows, without and with phones."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.policies import POLICIES
from sim.sweep.plan import plan_sweep
from sim.sweep.sweepfile import load_sweep

SWEEPS = sorted((Path(__file__).parents[3] / "scenarios" / "sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_shipped_sweep_plans(path: Path) -> None:
    specs = plan_sweep(load_sweep(path))
    assert specs
    assert len({spec.record.run_key for spec in specs}) == len(specs)


def test_policies_world_has_every_policy_once() -> None:
    sweep = load_sweep(Path(__file__).parents[3] / "scenarios" / "sweeps" / "policies-world.toml")
    points = [
        (spec.point["simulation.policy"], spec.point["devices.phone_fraction"]) for spec in plan_sweep(sweep)
    ]
    assert sorted({policy for policy, _ in points}) == sorted(POLICIES)
    # every policy with web clients only and with phones
    assert len(points) == len(POLICIES) * 2 * sweep.replications
    assert {phones for _, phones in points} == {0.0, 0.6}
