"""``keysim sweep``: sweep files, the plan, both executors, resume after kill -9, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.cli import main
from sim.sweep.runner import (
    SweepError,
    execute_run,
    load_sweep,
    plan_sweep,
    replicate_seed,
    run_sweep,
)
from sim.sweep.store import RunStore, read_runs, run_files

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "scenarios" / "smoke.toml"
AXES = ["churn.mean_offline_minutes", "simulation.policy"]

SMALL = """
[sweep]
base = "{base}"
replications = 2
seed = 42

[sweep.set]
"population.users" = 40
"simulation.horizon_days" = 0.5

[sweep.axes]
"churn.mean_offline_minutes" = [60, 180]
"simulation.policy" = ["queue", "live"]
"""


def write_sweep(directory: Path, text: str = SMALL, name: str = "small.toml", base: Path = SMOKE) -> Path:
    path = directory / name
    path.write_text(text.replace("{base}", os.path.relpath(base, directory)))
    return path


def frames(out: Path, kind: str) -> pd.DataFrame:
    """Every run's rows of one kind, in a canonical order."""
    frame = pd.concat([pd.read_parquet(p) for p in sorted((out / kind).glob("*.parquet"))], ignore_index=True)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def log_rows(out: Path) -> list[tuple[object, ...]]:
    """The run log without the columns that measure time."""
    keep = (
        "run_key",
        "point_json",
        "replicate",
        "seed",
        "config_hash",
        "keysim_version",
        "status",
        "command",
    )
    return [tuple(row[k] for k in keep) for row in read_runs(out)]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("local")
    path = write_sweep(directory)
    out = directory / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    return path, out


# --------------------------------------------------------------------------- end to end


def test_local_sweep_writes_every_run_once(local_sweep: tuple[Path, Path]) -> None:
    path, out = local_sweep
    assert (out / "sweep.toml").read_bytes() == path.read_bytes()
    rows = read_runs(out)
    assert len(rows) == 2 * 2 * 2 and {r["status"] for r in rows} == {"done"}
    assert len({r["run_key"] for r in rows}) == len(rows)
    points = {(r["point_json"], r["replicate"]) for r in rows}
    assert len(points) == len(rows)
    for row in rows:
        # common random numbers: replicate r has the same seed at every point
        assert row["seed"] == replicate_seed(42, row["replicate"])
        assert row["run_key"] == row["config_hash"][:16] and len(row["config_hash"]) == 64
        assert row["wall_s"] > 0 and row["finished_at"] >= row["started_at"] and row["error"] is None
        assert row["command"].startswith(f"keysim run {SMOKE} --seed {row['seed']} --set population.users=40")
        point = json.loads(row["point_json"])
        assert list(point) == AXES and isinstance(point["churn.mean_offline_minutes"], float)
        outcomes, rooms, summary, joins = run_files(out, row["run_key"])
        for frame in (pd.read_parquet(outcomes), pd.read_parquet(rooms), pd.read_parquet(joins)):
            assert (frame["replicate"] == row["replicate"]).all()
            for axis in AXES:
                assert (frame[axis] == point[axis]).all()
            assert (frame["seed"] == row["seed"]).all()
            assert (frame["policy"] == point["simulation.policy"]).all()
        doc = json.loads(summary.read_text())
        assert (doc["point"], doc["replicate"], doc["run_key"]) == (point, row["replicate"], row["run_key"])
        assert doc["parameters"]["churn"]["mean_offline_minutes"] == point["churn.mean_offline_minutes"]
    assert len(frames(out, "outcomes")) > 0
    assert len(frames(out, "rooms")) == len(rows) * len(
        pd.read_parquet(run_files(out, rows[0]["run_key"])[1])
    )
    assert not list(out.rglob("*.tmp"))


def test_dask_executor_gives_identical_rows(local_sweep: tuple[Path, Path], tmp_path: Path) -> None:
    path, local_out = local_sweep
    out = tmp_path / "dask"
    others = {p.pid for p in children()}  # left by other tests
    assert (
        main(["sweep", str(path), "--out", str(out), "--workers", "2", "--executor", "dask", "--quiet"]) == 0
    )
    assert log_rows(out) == log_rows(local_out)
    for kind in ("outcomes", "rooms"):
        pd.testing.assert_frame_equal(frames(out, kind), frames(local_out, kind), check_exact=True)
    # the LocalCluster (scheduler, nannies, workers) is gone
    deadline = time.monotonic() + 10
    while {p.pid for p in children()} - others and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {p.pid for p in children()} - others == set()


def children() -> list[psutil.Process]:
    """This process's children but multiprocessing's resource tracker, which lives as long as it."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())
    ]


def test_recorded_command_reproduces_the_run(local_sweep: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = local_sweep
    rows = read_runs(out)
    row = max(rows, key=lambda r: len(pd.read_parquet(run_files(out, r["run_key"])[0])))
    words = shlex.split(row["command"])
    assert words[:2] == ["keysim", "run"]
    assert main([*words[1:], "--out", str(tmp_path / "alone"), "--quiet", "--no-plots"]) == 0
    alone = pd.read_parquet(tmp_path / "alone" / "outcomes.parquet")
    swept = pd.read_parquet(run_files(out, row["run_key"])[0]).drop(columns=[*AXES, "replicate"])
    assert len(alone) > 0
    pd.testing.assert_frame_equal(alone, swept, check_exact=True)


def test_running_a_finished_sweep_again_runs_nothing(local_sweep: tuple[Path, Path]) -> None:
    path, out = local_sweep
    before = read_runs(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    assert read_runs(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == stamps


# --------------------------------------------------------------------------- resume


RESUMABLE = """
[sweep]
base = "{base}"
replications = 3
seed = 5

[sweep.set]
"population.users" = 500
"rooms.dms" = 250
"rooms.groups" = 100
"simulation.horizon_days" = 4

[sweep.axes]
"churn.mean_offline_minutes" = [60, 180, 600]
"simulation.policy" = ["queue", "live"]
"""


def test_resume_after_kill_9(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, RESUMABLE, name="resumable.toml")
    out = tmp_path / "out"
    total = 3 * 3 * 2
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [r for r in read_runs(out) if r["status"] == "done"]
            if len(done) >= 2:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.02)
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # the pool's workers notice that the sweep is gone and exit
    clock = time.monotonic()
    _, alive = psutil.wait_procs(workers, timeout=10)
    print(f"workers gone in {time.monotonic() - clock:.1f} s")
    assert alive == []
    killed = {r["run_key"]: r for r in read_runs(out)}
    finished = {k: r for k, r in killed.items() if r["status"] == "done"}
    assert 2 <= len(finished) < total, "kill the sweep in the middle"
    assert any(r["status"] == "running" for r in killed.values())
    stamps = {k: [p.stat().st_mtime_ns for p in run_files(out, k)] for k in finished}

    clock = time.monotonic()
    assert main(["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    print(f"resumed in {time.monotonic() - clock:.1f} s")

    rows = read_runs(out)
    planned = {spec.run_key for spec in plan_sweep(load_sweep(path))}
    assert sorted(r["run_key"] for r in rows) == sorted(planned) and len(rows) == total
    assert {r["status"] for r in rows} == {"done"}
    for kind, suffix in (("outcomes", ".parquet"), ("rooms", ".parquet"), ("summaries", ".json")):
        assert sorted(p.name for p in (out / kind).iterdir()) == sorted(k + suffix for k in planned)
    assert not list(out.rglob("*.tmp"))
    for row in rows:
        point = json.loads(row["point_json"])
        for frame in (pd.read_parquet(run_files(out, row["run_key"])[i]) for i in (0, 1)):
            assert (frame["replicate"] == row["replicate"]).all()
            assert (frame["simulation.policy"] == point["simulation.policy"]).all()
        json.loads(run_files(out, row["run_key"])[2].read_text())
    # finished runs were not redone: same log entries, same files
    after = {r["run_key"]: r for r in rows}
    for key, row in finished.items():
        assert after[key] == row
        assert [p.stat().st_mtime_ns for p in run_files(out, key)] == stamps[key]


def test_ctrl_c_says_how_far_the_sweep_got_and_how_to_resume(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, RESUMABLE, name="resumable.toml")
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]
    # its own process group, as a terminal's Ctrl-C reaches the sweep and its workers at once
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", *argv],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len([r for r in read_runs(out) if r["status"] == "done"]) < 2:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    done = [r for r in read_runs(out) if r["status"] == "done"]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    found = re.search(
        r"resumable: interrupted: (\d+) of 18 runs done \(\d+ in this invocation, 0 failed\); "
        r"resume with: (.+)$",
        err.strip(),
        re.MULTILINE,
    )
    assert found, err
    assert int(found[1]) == len(done) and 2 <= len(done) < 18
    assert shlex.split(found[2])[1:] == [*argv[:2], "--out", str(out), "--workers", "2"]
    # the command it names finishes the sweep, without redoing what was done
    assert main([*shlex.split(found[2])[1:], "--quiet"]) == 0
    rows = read_runs(out)
    assert len(rows) == 18 and {r["status"] for r in rows} == {"done"}
    assert {r["run_key"]: r["wall_s"] for r in rows if r["run_key"] in {d["run_key"] for d in done}} == {
        d["run_key"]: d["wall_s"] for d in done
    }


def test_an_error_found_inside_a_worker_fails_that_run_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scenario error that shows only once the graph is built (karate club's 34 members in 20
    users) is raised in the worker, crosses the pool whole and is logged with its traceback; the
    pool keeps running the other runs."""
    text = (
        '[sweep]\nbase = "{base}"\nreplications = 2\n[sweep.set]\n"simulation.horizon_days" = 0.5\n'
        '"rooms.generator" = "networkx"\n"rooms.graph" = "karate_club"\n'
        '[sweep.axes]\n"population.users" = [40, 20, 50]\n'
    )
    out = tmp_path / "out"
    assert (
        main(["sweep", str(write_sweep(tmp_path, text)), "--out", str(out), "--workers", "2", "--quiet"]) == 1
    )
    rows = read_runs(out)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 6 and len(failed) == 2 and {r["status"] for r in rows} == {"done", "failed"}
    for row in failed:
        assert json.loads(row["point_json"]) == {"population.users": 20}
        assert "Traceback (most recent call last):" in row["error"] and "sim/engine/setup.py" in row["error"]
        assert "sim.inputs.scenario.ScenarioError: rooms.graph: networkx's karate_club" in row["error"]
    assert "2 failed, 0 not started" in capsys.readouterr().err


def test_failed_runs_are_logged_and_retried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base.toml"
    base.write_text(SMOKE.read_text())
    sweep = load_sweep(write_sweep(tmp_path, base=base))
    plan = plan_sweep(sweep)
    base.write_text(SMOKE.read_text().replace("dms = 30", "dms = 31"))  # edited after planning
    result = run_sweep(sweep, plan, tmp_path / "out", workers=1)
    assert result.done == 0 and len(result.failed) == len(plan) == 8
    rows = read_runs(tmp_path / "out")
    assert {r["status"] for r in rows} == {"failed"}
    assert all("differs from the one planned" in r["error"] for r in rows)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".parquet", ".json")]
    base.write_text(SMOKE.read_text())
    result = run_sweep(sweep, plan, tmp_path / "out", workers=1)
    assert (result.done, result.failed, result.skipped) == (8, [], 0)
    assert {r["status"] for r in read_runs(tmp_path / "out")} == {"done"}


# --------------------------------------------------------------------------- the plan


def test_plan_grid_seeds_and_keys(tmp_path: Path) -> None:
    sweep = load_sweep(write_sweep(tmp_path))
    plan = plan_sweep(sweep)
    assert [(s.record.replicate, dict(s.point)) for s in plan[:4]] == [
        (0, {"churn.mean_offline_minutes": 60.0, "simulation.policy": "queue"}),
        (0, {"churn.mean_offline_minutes": 60.0, "simulation.policy": "live"}),
        (0, {"churn.mean_offline_minutes": 180.0, "simulation.policy": "queue"}),
        (0, {"churn.mean_offline_minutes": 180.0, "simulation.policy": "live"}),
    ]
    assert [s.record.seed for s in plan] == [replicate_seed(42, 0)] * 4 + [replicate_seed(42, 1)] * 4
    assert all(0 <= s.record.seed < 2**31 for s in plan)
    assert len({s.run_key for s in plan}) == 8
    assert [s.run_key for s in plan_sweep(load_sweep(write_sweep(tmp_path, name="again.toml")))] == [
        s.run_key for s in plan
    ]
    more = dataclasses.replace(sweep, replications=3)
    assert [s.run_key for s in plan_sweep(more)][:8] == [s.run_key for s in plan]


def test_int_ranges_include_stop(tmp_path: Path) -> None:
    @given(st.integers(2, 20), st.integers(0, 30), st.integers(1, 7))
    def check(start: int, length: int, step: int) -> None:
        text = f'[sweep]\nbase = "{SMOKE}"\n[sweep.axes]\n"rooms.group_size" = {{ start = {start}, stop = {start + length}, step = {step} }}\n'
        (tmp_path / "r.toml").write_text(text)
        axes = load_sweep(tmp_path / "r.toml").axes
        assert axes == (("rooms.group_size", tuple(range(start, start + length + 1, step))),)

    check()


def test_float_ranges_are_clean(tmp_path: Path) -> None:
    text = f'[sweep]\nbase = "{SMOKE}"\n[sweep.axes]\n"resets.twofa_fraction" = {{ start = 0.1, stop = 0.5, step = 0.1 }}\n'
    (tmp_path / "f.toml").write_text(text)
    assert load_sweep(tmp_path / "f.toml").axes == (("resets.twofa_fraction", (0.1, 0.2, 0.3, 0.4, 0.5)),)


def test_no_axes_means_replications_of_the_base(tmp_path: Path) -> None:
    (tmp_path / "n.toml").write_text(f'[sweep]\nbase = "{SMOKE}"\nreplications = 3\n')
    sweep = load_sweep(tmp_path / "n.toml")
    assert sweep.name == "n"
    plan = plan_sweep(sweep)
    assert [(dict(s.point), s.record.replicate) for s in plan] == [({}, 0), ({}, 1), ({}, 2)]
    assert plan[0].record.command == f"keysim run {SMOKE} --seed {replicate_seed(0, 0)}"


@pytest.mark.parametrize("name", ["offline-vs-size", "policies", "forgetful"])
def test_shipped_sweeps_plan_and_run(name: str, tmp_path: Path) -> None:
    sweep = load_sweep(REPO / "scenarios" / "sweeps" / f"{name}.toml")
    plan = plan_sweep(sweep)  # every point of the real grid is a valid scenario
    points = 1
    for _, values in sweep.axes:
        points *= len(values)
    assert len(plan) == points * sweep.replications >= 18
    tiny = {"population.users": 60, "simulation.horizon_days": 0.5, "rooms.dms": 20, "rooms.groups": 10}
    spec = plan_sweep(dataclasses.replace(sweep, fixed={**sweep.fixed, **tiny}, replications=1))[-1]
    with RunStore(tmp_path):
        execute_run(str(sweep.base), spec, str(tmp_path))
    outcomes = pd.read_parquet(run_files(tmp_path, spec.run_key)[0])
    rooms = pd.read_parquet(run_files(tmp_path, spec.run_key)[1])
    assert len(rooms) > 0 and list(rooms.columns)[-len(spec.point) - 1 :] == [*spec.point, "replicate"]
    assert set(outcomes.columns) >= {*spec.point, "replicate", "restored"}


# --------------------------------------------------------------------------- bad input

HEAD = '[sweep]\nbase = "{base}"\n'
BAD = {
    "unknown key": (HEAD + "colour = 1\n", "sweep.colour: unknown key"),
    "unknown table": (HEAD + "[scenario]\nx = 1\n", "scenario: unknown table"),
    "not toml": ("[sweep\n", "sweep: "),
    "bad axis key": (
        HEAD + '[sweep.axes]\n"rooms.colour" = [1, 2]\n',
        "sweep.axes.rooms.colour: not a scenario key",
    ),
    "bad section": (HEAD + '[sweep.axes]\n"colour.x" = [1]\n', "sweep.axes.colour.x: not a scenario key"),
    "no section": (HEAD + "[sweep.axes]\nusers = [1]\n", "sweep.axes.users: must be a scenario key"),
    "bad axis value": (
        HEAD + '[sweep.axes]\n"rooms.group_size" = [4, 1]\n',
        "sweep.axes.rooms.group_size: value 1: rooms.group_size: must be >= 2",
    ),
    "bad axis type": (
        HEAD + '[sweep.axes]\n"simulation.policy" = ["queue", 5]\n',
        "sweep.axes.simulation.policy: value 5",
    ),
    "empty axis": (
        HEAD + '[sweep.axes]\n"simulation.policy" = []\n',
        "sweep.axes.simulation.policy: has no values",
    ),
    "axis not a list": (
        HEAD + '[sweep.axes]\n"simulation.policy" = "live"\n',
        "sweep.axes.simulation.policy: must be",
    ),
    "zero step": (
        HEAD + '[sweep.axes]\n"rooms.group_size" = { start = 2, stop = 8, step = 0 }\n',
        "sweep.axes.rooms.group_size.step: must be > 0",
    ),
    "range key": (
        HEAD + '[sweep.axes]\n"rooms.group_size" = { start = 2, end = 8, step = 2 }\n',
        "sweep.axes.rooms.group_size.end: unknown key",
    ),
    "duplicate value": (
        HEAD + '[sweep.axes]\n"rooms.group_size" = [2, 3, 2]\n',
        "sweep.axes.rooms.group_size: value 2",
    ),
    "seed axis": (
        HEAD + '[sweep.axes]\n"simulation.seed" = [1, 2]\n',
        "sweep.axes.simulation.seed: seeds come",
    ),
    "fixed and axis": (
        HEAD + '[sweep.set]\n"simulation.policy" = "live"\n[sweep.axes]\n"simulation.policy" = ["queue"]\n',
        "sweep.axes.simulation.policy: is also in sweep.set",
    ),
    "bad fixed value": (HEAD + '[sweep.set]\n"population.users" = 1\n', "sweep.set.population.users: "),
    "replications 0": (HEAD + "replications = 0\n", "sweep.replications: must be an integer >= 1, got 0"),
    "replications text": (HEAD + 'replications = "3"\n', "sweep.replications: must be an integer"),
    "bad seed": (HEAD + "seed = 1.5\n", "sweep.seed: must be an integer"),
    "bad name": (HEAD + 'name = "../up"\n', "sweep.name: "),
    "no base": ("[sweep]\nreplications = 2\n", "sweep.base: is required"),
    "missing base": ('[sweep]\nbase = "nowhere.toml"\n', "sweep.base: file not found"),
    "point conflict": (
        HEAD + '[sweep.set]\n"population.users" = 5\n[sweep.axes]\n"rooms.group_size" = [4, 6]\n',
        "sweep.axes.rooms.group_size: value 6: rooms.group_size: must be <= population.users (5)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_files_exit_2_naming_the_key(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD[case]
    path = write_sweep(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"keysim: error: {message}"), err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SweepError) as exc:
        plan_sweep(load_sweep(path))
    assert str(exc.value).startswith(exc.value.key + ": ")


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "0"]) == 2
    assert "--workers: must be >= 1" in capsys.readouterr().err
    assert (
        main(["sweep", str(path), "--out", str(out), "--executor", "local", "--scheduler", "tcp://x:1"]) == 2
    )
    assert "--scheduler" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    assert "sweep: file not found" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["sweep", str(path), "--out", str(tmp_path / "file")]) == 2
    assert "--out: " in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["sweep", str(path), "--out", str(tmp_path / "other")]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]


def test_a_directory_with_other_runs_is_refused(
    local_sweep: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = local_sweep
    changed = write_sweep(path.parent, SMALL.replace("[60, 180]", "[60, 240]"), name="changed.toml")
    before = read_runs(out)
    assert main(["sweep", str(changed), "--out", str(out), "--quiet"]) == 2
    assert "--out: " in capsys.readouterr().err
    assert read_runs(out) == before and (out / "sweep.toml").read_bytes() == path.read_bytes()


# --------------------------------------------------------------------------- documentation


def test_readme_documents_every_key_and_its_example_plans(tmp_path: Path) -> None:
    from sim.sweep.sweepfile import _SWEEP_KEYS

    text = (REPO / "scenarios" / "README.md").read_text().split("## Sweeps", 1)[1]
    table = {m for m in re.findall(r"^\| `(?:\[sweep\.)?(\w+)\]?` \|", text, flags=re.M)}
    assert table >= set(_SWEEP_KEYS)
    example = re.findall(r"```toml\n(.*?)```", text, flags=re.S)[0]
    (tmp_path / "example.toml").write_text(
        example.replace("../baseline.toml", str(REPO / "scenarios" / "baseline.toml"))
    )
    plan = plan_sweep(load_sweep(tmp_path / "example.toml"))
    assert len(plan) == 3 * 5 * 3 * 3


def test_sweep_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--out", "--workers", "--executor", "--scheduler", "--quiet"))


def test_an_unreachable_scheduler_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sim.sweep.runner

    monkeypatch.setattr(sim.sweep.runner, "SCHEDULER_TIMEOUT_S", 1.0)
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--scheduler", "tcp://127.0.0.1:1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keysim: error: --scheduler: no Dask scheduler answers at 'tcp://127.0.0.1:1'")
    assert "Traceback" not in err
    assert not out.exists()
