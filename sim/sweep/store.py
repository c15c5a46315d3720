"""The results store of a sweep: a SQLite run log and one set of files per run.

Theory of operation
-------------------
Layout (``keysim report`` reads it; keep it stable)::

    OUT/sweep.toml                  the sweep file as given
    OUT/runs.sqlite                 table runs, one row per run_key (WAL mode)
    OUT/outcomes/<run_key>.parquet  the run's outcome rows + one column per axis + "replicate"
    OUT/rooms/<run_key>.parquet     the run's room rows + the same columns
    OUT/summaries/<run_key>.json    sim.results.summarize() + point, replicate, run_key
    OUT/joins/<run_key>.parquet     the run's join rows + the same columns as outcomes

Crash safety rests on one ordering.  A worker writes its run's four files, each under a temporary
name in the destination directory, fsynced, renamed over the final name (``os.replace``, atomic)
and the directory fsynced; only after the worker has returned does the parent mark the run
``done``, in one SQLite transaction (``synchronous=FULL``).  So a ``done`` row always has complete
files, and a file without a ``done`` row belongs to a run killed after writing: it is run again
and its files replaced by identical ones (a run is a function of its scenario and seed).  A run is
skipped on resume only if its row is ``done`` *and* its four files exist.  Names are the run_key,
and run_key is the table's primary key, so nothing can be duplicated.

A run's name is its content: ``config_hash`` is the SHA-256 of the canonical JSON of everything
that determines the run (scenario values with the seed, tables, the files it reads) and run_key
its first 16 hex digits, so a re-run sweep finds its runs again, and :func:`check_out` refuses a
directory holding runs the sweep does not plan instead of mixing them in.

Only the parent process writes SQLite (single writer); a worker writes only its own run's files
and knows nothing of the log.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..inputs.scenario import Scenario
from ..results.files import atomic_path

__all__ = [
    "RUN_COLUMNS",
    "RunRecord",
    "RunStore",
    "check_out",
    "config_hash",
    "read_runs",
    "run_files",
    "write_durably",
    "write_run_files",
]

RUN_COLUMNS = (
    "run_key",
    "point_json",
    "replicate",
    "seed",
    "config_hash",
    "keysim_version",
    "status",
    "started_at",
    "finished_at",
    "wall_s",
    "command",
    "error",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    point_json TEXT NOT NULL,
    replicate INT NOT NULL,
    seed INT NOT NULL,
    config_hash TEXT NOT NULL,
    keysim_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    started_at REAL,
    finished_at REAL,
    wall_s REAL,
    command TEXT NOT NULL,
    error TEXT
)
"""

#: The four per-run directories and their file suffixes, in the order they are written.
_KINDS = (("outcomes", ".parquet"), ("rooms", ".parquet"), ("summaries", ".json"), ("joins", ".parquet"))


def config_hash(scenario: Scenario) -> str:
    """SHA-256 of the canonical JSON of everything that determines a run: the scenario's values
    (seed included), its tables, and the contents of the files it reads."""
    files = {}
    for dotted, used in (("churn.trace", "churn.model"), ("rooms.file", "rooms.generator")):
        if scenario.get(used) in ("trace", "file", "bipartite"):
            files[dotted] = hashlib.sha256(scenario.resolve(scenario.get(dotted)).read_bytes()).hexdigest()
    doc = {
        "values": scenario.values,
        "explicit_rooms": [asdict(r) for r in scenario.explicit_rooms],
        "scripted_resets": [asdict(r) for r in scenario.scripted_resets],
        "classes": [asdict(c) for c in scenario.classes],
        "files": files,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_files(out: Path, run_key: str) -> tuple[Path, Path, Path, Path]:
    """The outcomes, rooms, summary and joins files of one run."""
    o, r, s, j = (Path(out) / kind / f"{run_key}{suffix}" for kind, suffix in _KINDS)
    return o, r, s, j


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What the log knows about a run before it starts."""

    run_key: str
    point_json: str
    replicate: int
    seed: int
    config_hash: str
    keysim_version: str
    command: str


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity (null instead); numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_durably(path: Path, data: pd.DataFrame | bytes) -> None:
    """Write a Parquet file or bytes under a temporary name beside ``path``, fsync it, rename it
    over ``path`` and fsync the directory: after a crash, ``path`` is whole or absent."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data.to_parquet(tmp, index=False)
        _fsync_file(tmp)
    _fsync_dir(path.parent)


def write_run_files(
    out: Path,
    run_key: str,
    outcomes: pd.DataFrame,
    rooms: pd.DataFrame,
    summary: Mapping[str, Any],
    joins: pd.DataFrame,
) -> None:
    """Write one run's files, each atomically and durably (called in the worker)."""
    text = json.dumps(_json_safe(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"
    paths = run_files(out, run_key)
    for path, data in zip(paths, (outcomes, rooms, text.encode("utf-8"), joins), strict=True):
        write_durably(path, data)


class RunStore:
    """The parent's handle on ``OUT``: creates the layout, owns the SQLite log."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        for kind, _ in _KINDS:
            (self.out / kind).mkdir(parents=True, exist_ok=True)
        self.db_path = self.out / "runs.sqlite"
        # isolation_level=None: no implicit transactions; every write below is one explicit one.
        self._db = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def clean_temporaries(self) -> list[Path]:
        """Remove temporary files left by runs killed while writing; returns what was removed."""
        removed = []
        for kind, _ in _KINDS:
            for path in (self.out / kind).glob(".*.tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
        for path in self.out.glob(".sweep.toml.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every row of the log, by run_key."""
        cursor = self._db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs")
        return {row[0]: dict(zip(RUN_COLUMNS, row, strict=True)) for row in cursor}

    def finished(self) -> set[str]:
        """Runs that need not run again: status 'done' and all four files present."""
        keys = self._db.execute("SELECT run_key FROM runs WHERE status = 'done'")
        return {k for (k,) in keys if all(p.is_file() for p in run_files(self.out, k))}

    def start(self, record: RunRecord, now: float) -> None:
        """Log a run as 'running' (a new row, or a failed or killed run tried again)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs (run_key, point_json, replicate, seed, config_hash, keysim_version,"
                " status, started_at, finished_at, wall_s, command, error)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, NULL, NULL, ?, NULL)"
                " ON CONFLICT (run_key) DO UPDATE SET point_json = excluded.point_json,"
                " replicate = excluded.replicate, seed = excluded.seed,"
                " config_hash = excluded.config_hash, keysim_version = excluded.keysim_version,"
                " status = 'running', started_at = excluded.started_at, finished_at = NULL,"
                " wall_s = NULL, command = excluded.command, error = NULL",
                (
                    record.run_key,
                    record.point_json,
                    record.replicate,
                    record.seed,
                    record.config_hash,
                    record.keysim_version,
                    now,
                    record.command,
                ),
            )

    def finish(self, run_key: str, *, started_at: float, wall_s: float, now: float) -> None:
        """Mark a run 'done'; its files must already be in place."""
        missing = [str(p) for p in run_files(self.out, run_key) if not p.is_file()]
        if missing:
            raise RuntimeError(f"run {run_key} reported done but its files are missing: {missing}")
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'done', started_at = ?, finished_at = ?, wall_s = ?,"
                " error = NULL WHERE run_key = ?",
                (started_at, now, wall_s, run_key),
            )

    def fail(self, run_key: str, error: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE run_key = ?",
                (now, error, run_key),
            )


def read_runs(out: Path) -> list[dict[str, Any]]:
    """The log of a sweep directory, read-only (empty if there is none), sorted by run_key."""
    path = Path(out) / "runs.sqlite"
    if not path.is_file():
        return []
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        try:
            cursor = db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY run_key")
        except sqlite3.OperationalError:  # an empty database: the sweep was killed while creating it
            return []
        return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in cursor]


def check_out(out: Path, planned: Mapping[str, str]) -> str | None:
    """Why ``out`` cannot take the sweep whose runs are ``planned`` (run_key -> point_json), or
    None.  Reads only: called before anything is written."""
    out = Path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        return f"{str(out)!r} exists and is not a directory"
    if not (out / "runs.sqlite").is_file():
        return (
            f"{str(out)!r} is not empty and holds no sweep (no runs.sqlite)" if any(out.iterdir()) else None
        )
    foreign = [row for row in read_runs(out) if planned.get(row["run_key"]) != row["point_json"]]
    if foreign:
        return (
            f"{str(out)!r} holds {len(foreign)} runs that this sweep does not plan (an axis value removed, "
            "the base scenario edited, or keysim's scenario keys changed?); choose another --out"
        )
    return None
