"""The sweep results store: the run log's layout and transitions, atomic and durable files."""

from __future__ import annotations

import json
import math
import sqlite3
import stat
from pathlib import Path

import pandas as pd
import pytest

from sim.sweep.store import RUN_COLUMNS, RunRecord, RunStore, read_runs, run_files, write_run_files


def record(key: str = "0123456789abcdef", replicate: int = 0) -> RunRecord:
    return RunRecord(
        run_key=key,
        point_json=json.dumps({"simulation.policy": "live"}),
        replicate=replicate,
        seed=17,
        config_hash=key + "0" * 48,
        keysim_version="0.1.0",
        command="keysim run base.toml --seed 17 --set simulation.policy=live",
    )


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    outcomes = pd.DataFrame({"room": ["r1", "r2"], "restored_at": [12.5, math.nan], "replicate": [0, 0]})
    rooms = pd.DataFrame({"room": ["r1", "r2", "r3"], "lost": [False, True, False]})
    return outcomes, rooms


JOINS = pd.DataFrame({"room": ["r2"], "joined_at": [40.0], "keyed": [True]})


def test_layout_schema_and_wal(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    with RunStore(out):
        pass
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["joins", "outcomes", "rooms", "summaries"]
    db = sqlite3.connect(out / "runs.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        info = db.execute("PRAGMA table_info(runs)").fetchall()
    finally:
        db.close()
    assert tuple(row[1] for row in info) == RUN_COLUMNS
    assert [row[1] for row in info if row[5]] == ["run_key"]  # the primary key
    assert {row[1]: row[2] for row in info}["replicate"] == "INT"


def test_transitions_keep_one_row_per_run(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.start(record(), now=100.0)
        store.start(record(), now=101.0)  # a killed run submitted again
        rows = store.rows()
        assert list(rows) == ["0123456789abcdef"]
        assert rows["0123456789abcdef"]["status"] == "running"
        assert rows["0123456789abcdef"]["started_at"] == 101.0
        with pytest.raises(RuntimeError, match="files are missing"):
            store.finish("0123456789abcdef", started_at=101.5, wall_s=2.0, now=104.0)
        assert store.rows()["0123456789abcdef"]["status"] == "running"
        write_run_files(tmp_path, "0123456789abcdef", *frames(), {"replicate": 0}, JOINS)
        store.finish("0123456789abcdef", started_at=101.5, wall_s=2.0, now=104.0)
        row = store.rows()["0123456789abcdef"]
        assert (row["status"], row["started_at"], row["finished_at"], row["wall_s"]) == (
            "done",
            101.5,
            104.0,
            2.0,
        )
        assert store.finished() == {"0123456789abcdef"}
        run_files(tmp_path, "0123456789abcdef")[1].unlink()  # done, but a file is gone: run again
        assert store.finished() == set()
        store.start(record(), now=200.0)
        store.fail("0123456789abcdef", "Traceback ...\nValueError: boom", now=201.0)
        row = store.rows()["0123456789abcdef"]
        assert (row["status"], row["error"], row["finished_at"]) == (
            "failed",
            "Traceback ...\nValueError: boom",
            201.0,
        )
        store.start(record(), now=300.0)
        assert store.rows()["0123456789abcdef"]["error"] is None
    assert [r["run_key"] for r in read_runs(tmp_path)] == ["0123456789abcdef"]


def test_status_is_checked(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store, pytest.raises(sqlite3.IntegrityError):
        store._db.execute(
            "INSERT INTO runs (run_key, point_json, replicate, seed, config_hash, keysim_version, status,"
            " command) VALUES ('k', '{}', 0, 0, 'h', 'v', 'maybe', 'c')"
        )


def test_run_files_round_trip_readable_by_all(tmp_path: Path) -> None:
    outcomes, rooms = frames()
    summary = {"fraction": math.nan, "point": {"rooms.group_size": 4.0}, "replicate": 1, "inf": math.inf}
    with RunStore(tmp_path):
        write_run_files(tmp_path, "k1", outcomes, rooms, summary, JOINS)
    paths = run_files(tmp_path, "k1")
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "outcomes/k1.parquet",
        "rooms/k1.parquet",
        "summaries/k1.json",
        "joins/k1.parquet",
    ]
    pd.testing.assert_frame_equal(pd.read_parquet(paths[0]), outcomes)
    pd.testing.assert_frame_equal(pd.read_parquet(paths[1]), rooms)
    pd.testing.assert_frame_equal(pd.read_parquet(paths[3]), JOINS)
    assert json.loads(paths[2].read_text()) == {
        "fraction": None,
        "inf": None,
        "point": {"rooms.group_size": 4.0},
        "replicate": 1,
    }
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(tmp_path.rglob("*.tmp"))


def test_failed_write_leaves_neither_file_nor_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RunStore(tmp_path):
        pass
    outcomes, rooms = frames()

    def explode(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", explode)
    with pytest.raises(OSError, match="disk full"):
        write_run_files(tmp_path, "k2", outcomes, rooms, {}, JOINS)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "runs.sqlite"]


def test_stray_temporaries_are_cleaned(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        write_run_files(tmp_path, "k3", *frames(), {}, JOINS)
        strays = [
            tmp_path / "outcomes" / ".k4.parquet.ab12cd.tmp",
            tmp_path / "summaries" / ".k4.json.ef34gh.tmp",
            tmp_path / ".sweep.toml.xy.tmp",
        ]
        for stray in strays:
            stray.write_bytes(b"torn")
        assert sorted(store.clean_temporaries()) == sorted(strays)
    assert not list(tmp_path.rglob("*.tmp"))
    assert all(p.is_file() for p in run_files(tmp_path, "k3"))


def test_read_runs_without_a_log(tmp_path: Path) -> None:
    assert read_runs(tmp_path) == []
    (tmp_path / "runs.sqlite").touch()  # killed while creating the database
    assert read_runs(tmp_path) == []
