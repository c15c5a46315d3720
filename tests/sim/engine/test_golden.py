"""Golden runs: whole outcome and room tables of a few small runs, checked in as CSV.

A change that moves any simulated figure shows up here as a diff of the tables.  When the change
is intended, regenerate the files and commit them with it, saying in the commit why they moved::

    KEYSIM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/sim/engine/test_golden.py

Floats are written with 17 significant digits (they round-trip exactly), NaN as an empty field.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from sim.engine import run_scenario
from sim.inputs.scenario import load_scenario
from sim.results import outcomes_frame, rooms_frame

ROOT = Path(__file__).parents[3]
GOLDEN = Path(__file__).parents[2] / "golden"
RUNS = {
    "smoke-queue": ("scenarios/smoke.toml", {"simulation.policy": "queue"}),
    "smoke-live": ("scenarios/smoke.toml", {"simulation.policy": "live"}),
    "smoke-backup": ("scenarios/smoke.toml", {"simulation.policy": "backup"}),
    "scripted-queue": ("scenarios/scripted.toml", {}),
    # every cause of reset, joins and leaves, owners' room-key resets and rotations, traffic, hardened
    "smoke-everything": (
        "scenarios/smoke.toml",
        {
            "simulation.profile": "hardened",
            "resets.forgot_password_rate_per_user_day": 0.3,
            "resets.twofa_fraction": 0.5,
            "resets.lost_authenticator_rate_per_user_day": 0.05,
            "resets.admin_delay_hours": 4,
            "membership.join_rate_per_room_day": 0.5,
            "membership.leave_rate_per_room_day": 3,
            "recovery.owner_resets_lost_rooms": True,
            "recovery.room_key_rotation_per_room_day": 1,
            "traffic.messages_per_room_day": 20,
        },
    ),
}


def tables(name: str) -> dict[str, str]:
    path, overrides = RUNS[name]
    result = run_scenario(load_scenario(ROOT / path, overrides))
    return {
        f"{name}-outcomes.csv": outcomes_frame(result).to_csv(index=False, float_format="%.17g"),
        f"{name}-rooms.csv": rooms_frame(result).to_csv(index=False, float_format="%.17g"),
    }


@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_matches_its_golden_tables(name: str) -> None:
    for filename, text in tables(name).items():
        path = GOLDEN / filename
        if os.environ.get("KEYSIM_UPDATE_GOLDEN"):
            path.write_text(text)
            continue
        expected = path.read_text()
        if text != expected:
            diff = difflib.unified_diff(
                expected.splitlines(), text.splitlines(), "golden/" + filename, "this run", n=0, lineterm=""
            )
            shown = "\n".join(list(diff)[:30])
            pytest.fail(
                f"{filename} differs from the golden table (regenerate with KEYSIM_UPDATE_GOLDEN=1 if the "
                f"change is intended):\n{shown}"
            )
