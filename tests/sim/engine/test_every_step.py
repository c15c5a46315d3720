"""``--check-invariants=every-step``: the invariants checked after every step of a run catch what
is wrong for a while and mended before the horizon, which the check at the horizon cannot see."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import api
from sim.engine.simulation import Simulation
from sim.inputs.scenario import load_scenario

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"
SMALL = {"simulation.horizon_days": 1, "population.users": 30, "rooms.dms": 10, "rooms.groups": 4}


def _with_a_transient_leak(every_step: bool) -> list[str]:
    """A run in which the server holds a member's E2E password in a room's name from 6 h to 12 h."""
    sim = Simulation(load_scenario(SMOKE, SMALL), check_invariants=True, check_every_step=every_step)
    saved: dict[str, str] = {}

    def leak() -> None:  # the rooms are made when the run starts
        room = saved["room"] = sim.server.room_ids[0]
        member = next(iter(sim.server.room(room).subscriptions))
        password = sim.devices.e2e_password[sim.user_ids.index(member)]
        assert password, "the member has a saved E2E password"
        saved["name"] = sim.server.room(room).name
        sim.server.room(room).name = f"leaked {password}"

    def mend() -> None:
        sim.server.room(saved["room"]).name = saved["name"]

    sim.clock.at(6 * 3600.0, leak)
    sim.clock.at(12 * 3600.0, mend)
    return sim.run().violations


def test_a_leak_mended_before_the_horizon_is_seen_only_step_by_step() -> None:
    assert _with_a_transient_leak(every_step=False) == []
    found = _with_a_transient_leak(every_step=True)
    assert len(found) == 1, found  # once, at the step it first showed
    assert found[0] == "at t = 21600.0 s: no_secrets_on_server: the dump contains the password"


def test_every_step_leaves_the_results_unchanged() -> None:
    plain = api.run(SMOKE, SMALL, check_invariants=True)
    stepped = api.run(SMOKE, SMALL, check_invariants="every-step")
    assert plain.violations == stepped.violations == []
    assert api.outcomes(plain).equals(api.outcomes(stepped)) and api.rooms(plain).equals(api.rooms(stepped))


@pytest.mark.parametrize("mode", ["horizon", "every-step"])
def test_the_cli_takes_both(mode: str, tmp_path: Path) -> None:
    from sim.cli import main

    argv = [
        "run",
        str(SMOKE),
        "--quiet",
        "--no-plots",
        "--out",
        str(tmp_path / "r"),
        f"--check-invariants={mode}",
    ]
    argv += [f"--set={k}={v}" for k, v in SMALL.items()]
    assert main(argv) == 0
