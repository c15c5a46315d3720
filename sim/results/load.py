"""Results of runs and sweeps as tidy frames, and the statistics a report draws.

:func:`load_results` reads a run directory (``keysim run``) or a sweep directory (``keysim sweep``)
into one :class:`Results`; :func:`collect` does the same for results held in memory.  A single run
is a sweep of one point, so everything after loading is one code path.  Proportions pool a grid
point's replicates with a Wilson 95 % interval; time to restore is Kaplan-Meier, censoring-aware.
"""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..engine import JOIN_COLUMNS, RunResult
from .tables import joins_frame, kaplan_meier, outcomes_frame, proportion, restore_ends, rooms_frame

__all__ = [
    "METRICS",
    "POLICY",
    "ReportError",
    "Results",
    "collect",
    "headline",
    "joiners",
    "load_results",
    "online_vs_size",
    "proportions",
    "sensitivity",
]

FORMATS = ("md", "html")
POLICY = "simulation.policy"
#: metric -> what it counts; ``rooms_lost`` counts encrypted rooms, the others (reset, room) rows
METRICS = {
    "restored": "restored by the horizon",
    "at_once": "restored at once (within one tick)",
    "with_history": "restored with all earlier messages readable",
    "rooms_lost": "encrypted rooms lost",
}
RUN_FILES = ("outcomes.parquet", "rooms.parquet", "summary.json")
#: more lines than this in one panel and the other axes are pooled
MAX_LINES = 8


class ReportError(ValueError):
    """The input is missing, not a run or sweep directory, or has no finished run."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Results:
    """Tidy rows of one or more runs; ``axes`` are the dotted keys that vary between them."""

    kind: str  # "run", "sweep" or "collected"
    source: str
    outcomes: pd.DataFrame
    rooms: pd.DataFrame
    runs: pd.DataFrame  # one row per run: run_key, replicate, horizon_s, ..., the axis values
    axes: tuple[str, ...]
    notes: tuple[str, ...] = ()
    #: one row per join (``JOIN_COLUMNS``), tagged like the outcome rows; empty for runs written
    #: before keysim kept joins
    joins: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(JOIN_COLUMNS)))


# ---------------------------------------------------------------------------------------- loading


def _tag(frame: pd.DataFrame, run: Mapping[str, Any]) -> pd.DataFrame:
    out = frame.assign(**{k: [v] * len(frame) for k, v in run.items()})
    if POLICY not in run:
        out[POLICY] = out["policy"]
    return out


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    full = [f for f in frames if not f.empty]
    return pd.concat(full or frames[:1], ignore_index=True)


def _assemble(
    kind: str,
    source: str,
    parts: list[tuple[dict[str, Any], Any, Any, Any]],
    swept: list[str],
    notes: list[str],
) -> Results:
    """``parts``: (run identity and axis values, outcomes, rooms and joins frames) per run."""
    outcomes = _concat([_tag(o, run) for run, o, _, _ in parts])
    rooms = _concat([_tag(r, run) for run, _, r, _ in parts])
    joins = _concat([_tag(j, run) for run, _, _, j in parts])
    runs = pd.DataFrame([run for run, _, _, _ in parts])
    if POLICY not in runs:
        first = [(o if not o.empty else r)["policy"] for _, o, r, _ in parts]
        runs[POLICY] = [str(p.iloc[0]) if len(p) else "" for p in first]
    axes = list(swept)
    if POLICY not in axes and runs[POLICY].nunique() > 1:
        axes.append(POLICY)
    return Results(kind, source, outcomes, rooms, runs, tuple(axes), tuple(notes), joins)


def _run_identity(run_key: str, replicate: int, summary: Mapping[str, Any]) -> dict[str, Any]:
    simulation = (summary.get("parameters") or {}).get("simulation") or {}
    p = summary.get("stationary_online")
    return {
        "run_key": run_key,
        "replicate": replicate,
        "horizon_s": float(simulation.get("horizon_days", math.nan)) * 86400.0,
        "tick_s": float(simulation.get("tick_seconds", 10.0)),
        "p_online": math.nan if p is None else float(p),
        "keysim_version": str(summary.get("keysim_version", "?")),
    }


def _read(
    folder: Path, outcomes: Path, rooms: Path, summary: Path, joins: Path
) -> tuple[Any, Any, dict[str, Any], Any]:
    """The files of one run; ``joins`` may be absent (a run written before keysim kept joins)."""
    for f in (outcomes, rooms, summary):
        if not f.is_file():
            raise ReportError(folder, f"{f.relative_to(folder)} is missing")
    try:
        joined = pd.read_parquet(joins) if joins.is_file() else pd.DataFrame(columns=list(JOIN_COLUMNS))
        return pd.read_parquet(outcomes), pd.read_parquet(rooms), json.loads(summary.read_text()), joined
    except (OSError, ValueError) as exc:  # pyarrow's errors are ValueError or OSError
        raise ReportError(folder, f"cannot read a result file: {exc}") from None


def _load_run(path: Path) -> Results:
    o, r, s = (path / name for name in RUN_FILES)
    outcomes, rooms, summary, joins = _read(path, o, r, s, path / "joins.parquet")
    run = _run_identity(str(summary.get("run_id") or path.name), 0, summary)
    return _assemble("run", str(path), [(run, outcomes, rooms, joins)], [], [])


def _load_sweep(path: Path) -> Results:
    db = path / "runs.sqlite"
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT run_key, point_json, replicate FROM runs WHERE status = 'done' ORDER BY run_key"
            ).fetchall()
            unfinished = con.execute("SELECT COUNT(*) FROM runs WHERE status != 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ReportError(db, f"cannot read the run log: {exc}") from None
    if not rows:
        raise ReportError(path, "no finished runs (status 'done') in runs.sqlite")
    parts, swept = [], {}
    for run_key, point_json, replicate in rows:
        point = json.loads(point_json or "{}")
        swept.update(dict.fromkeys(point))
        outcomes, rooms, summary, joins = _read(
            path,
            path / "outcomes" / f"{run_key}.parquet",
            path / "rooms" / f"{run_key}.parquet",
            path / "summaries" / f"{run_key}.json",
            path / "joins" / f"{run_key}.parquet",
        )
        run = _run_identity(str(run_key), int(replicate), summary)
        scalars = {
            k: v if isinstance(v, str | int | float | bool) else json.dumps(v) for k, v in point.items()
        }
        parts.append(({**run, **scalars}, outcomes, rooms, joins))
    notes = (
        [f"{unfinished} run(s) not finished (status other than 'done') are left out."] if unfinished else []
    )
    return _assemble("sweep", str(path), parts, list(swept), notes)


def load_results(path: Path) -> Results:
    """Read a run directory (``keysim run``) or a sweep directory (``keysim sweep``)."""
    path = Path(path)
    if not path.exists():
        raise ReportError(path, "does not exist")
    if not path.is_dir():
        raise ReportError(path, "is not a directory")
    if (path / "runs.sqlite").is_file():
        return _load_sweep(path)
    if any((path / name).exists() for name in RUN_FILES):
        return _load_run(path)
    raise ReportError(
        path,
        "neither a run directory (outcomes.parquet, rooms.parquet, summary.json) nor a sweep directory (runs.sqlite)",
    )


def collect(runs: Mapping[Any, RunResult], axis: str = "variant") -> Results:
    """In-memory results of :func:`sim.engine.run_scenario`, labelled by ``axis`` (for notebooks)."""
    parts = []
    for label, result in runs.items():
        sc = result.scenario
        p = result.stationary_online
        run = {
            "run_key": result.run_id if len(runs) == 1 else f"{label}:{result.run_id}",
            "replicate": 0,
            "horizon_s": sc.horizon_s,
            "tick_s": float(sc.get("simulation.tick_seconds")),
            "p_online": math.nan if p is None else p,
            "keysim_version": __version__,
            axis: label,
        }
        if axis != POLICY:
            run[POLICY] = sc.get("simulation.policy")
        parts.append((run, outcomes_frame(result), rooms_frame(result), joins_frame(result)))
    return _assemble("collected", "in memory", parts, [axis], [])


# ---------------------------------------------------------------------------------------- statistics


def _groups(frame: pd.DataFrame, by: Sequence[str]) -> Iterator[tuple[tuple[Any, ...], pd.DataFrame]]:
    if not by:
        yield (), frame
        return
    for key, group in frame.groupby(list(by), sort=True, dropna=False):
        yield key if isinstance(key, tuple) else (key,), group


def _hits(results: Results, metric: str) -> pd.DataFrame:
    """The rows a metric counts, with a boolean ``hit`` column."""
    if metric == "rooms_lost":
        rooms = results.rooms[results.rooms["encrypted"].astype(bool)]
        return rooms.assign(hit=rooms["lost"].astype(bool))
    o = results.outcomes
    hit = o["restored"].astype(bool)
    if metric == "at_once":
        hit &= (o["restored_at"] - o["relogin_at"]) <= o["tick_s"]
    elif metric == "with_history":
        hit &= o["history_unreadable"] == 0
    elif metric != "restored":
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    return o.assign(hit=hit)


def proportions(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: k hits of n rows, fraction and Wilson 95 % interval."""
    out = [
        {**dict(zip(by, key, strict=True)), **proportion(int(g["hit"].sum()), len(g))}
        for key, g in _groups(rows, by)
    ]
    return pd.DataFrame(out, columns=[*by, "k", "n", "value", "ci_low", "ci_high"])


def _censored(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Rows with a relogin; unrestored ones end where they are censored: the user's next reset,
    its leaving the room, or their own run's horizon (:func:`~sim.results.tables.restore_ends`)."""
    rows = outcomes[outcomes["relogin_at"].notna()]
    return rows.assign(restored_at=restore_ends(rows, rows["horizon_s"]))


def headline(results: Results, by: Sequence[str] | None = None) -> pd.DataFrame:
    """The headline figures per group of run-level columns ``by`` (default: the grid points):
    runs, resets, each metric as ``<metric>_k``, ``_n``, ``_value``, ``_ci_low``, ``_ci_high``
    (replicates pooled), and the Kaplan-Meier median time to restore with its 95 % interval in
    seconds (``inf`` when fewer than half are restored by the horizon)."""
    by = list(results.axes if by is None else by)
    groups = list(_groups(results.runs, by))
    group_of = {run_key: i for i, (_, runs) in enumerate(groups) for run_key in runs["run_key"]}

    def split(frame: pd.DataFrame) -> dict[int, pd.DataFrame]:
        parts = frame.groupby(frame["run_key"].map(group_of), sort=False)
        return {int(i): part for i, part in parts}

    outcomes, censored = split(results.outcomes), split(_censored(results.outcomes))
    hits = {metric: split(_hits(results, metric)) for metric in METRICS}
    empty = results.outcomes.iloc[:0]
    rows = []
    for i, (key, runs) in enumerate(groups):
        row: dict[str, Any] = {**dict(zip(by, key, strict=True)), "runs": len(runs)}
        row["resets"] = int(outcomes.get(i, empty).groupby("run_key")["reset_id"].nunique().sum())
        for metric, parts in hits.items():
            mine = parts.get(i, pd.DataFrame({"hit": []}))
            stats = proportion(int(mine["hit"].sum()), len(mine))
            row.update({f"{metric}_{name}": value for name, value in stats.items()})
        # restored_at is already filled with each run's horizon, so the horizon argument is unused
        km = kaplan_meier(censored.get(i, _censored(empty)), math.nan)
        row.update(km_median_s=km["median_s"], km_ci_low_s=km["ci_low_s"], km_ci_high_s=km["ci_high_s"])
        rows.append(row)
    return pd.DataFrame(rows)


def joiners(results: Results, by: Sequence[str] | None = None) -> pd.DataFrame:
    """What joiners got, per group of run-level columns ``by`` (default: the grid points), the
    replicates pooled: joins, invites, bundles, the share that held the room's key and the share
    of joins into a room with a past that read all of it (each ``_k``, ``_n``, ``_value``,
    ``_ci_low``, ``_ci_high``), and the Kaplan-Meier median from join to key (``key_median_s``,
    censored where a row closed or at its run's horizon).  Empty when no run has joins."""
    by = list(results.axes if by is None else by)
    joins = results.joins
    if joins.empty:
        return pd.DataFrame()
    from lifelines import KaplanMeierFitter

    horizon = joins["run_key"].map(dict(zip(results.runs["run_key"], results.runs["horizon_s"], strict=True)))
    joins = joins.assign(_end=joins["keyed_at"].fillna(joins["closed_at"].fillna(horizon)))
    rows = []
    for key, runs in _groups(results.runs, by):
        mine = joins[joins["run_key"].isin(runs["run_key"])]
        keyed = mine["keyed"].astype(bool)
        past = mine[mine["history_messages"] > 0]
        row: dict[str, Any] = {**dict(zip(by, key, strict=True)), "runs": len(runs), "joins": len(mine)}
        row["invites"] = int((mine["kind"] == "invite").sum())
        row["bundles"] = int((mine["bundle_keys"] > 0).sum())
        for name, (k, n) in (
            ("keyed", (int(keyed.sum()), len(mine))),
            ("whole_past", (int((past["history_unreadable"] == 0).sum()), len(past))),
        ):
            row.update({f"{name}_{c}": v for c, v in proportion(k, n).items()})
        median = math.nan
        if len(mine):
            kmf = KaplanMeierFitter().fit(
                (mine["_end"] - mine["joined_at"]).clip(lower=0.0), event_observed=keyed
            )
            median = float(kmf.median_survival_time_)
        row["key_median_s"] = median
        rows.append(row)
    return pd.DataFrame(rows)


#: the metrics sensitivity indices are computed for: per run, restored rows over rows
SENSITIVITY_METRICS = {"restored": "restored by the horizon", "rooms_lost": "encrypted rooms lost"}


def sensitivity(path: Path, results: Results) -> tuple[str, pd.DataFrame] | None:
    """For a sweep with a ``[sweep.design]``: the design's method and, per metric and
    parameter, its indices (:func:`sim.inputs.design.indices`), the metric per point pooled over
    replicates; None for any other run or sweep."""
    import tomllib

    from ..inputs.design import DesignError, indices, parse_design, sample

    stored = Path(path) / "sweep.toml"
    if results.kind != "sweep" or not stored.is_file():
        return None
    try:
        sweep = tomllib.loads(stored.read_text(encoding="utf-8")).get("sweep", {})
        if "design" not in sweep:
            return None
        design = parse_design(sweep["design"])
    except (tomllib.TOMLDecodeError, DesignError) as exc:
        raise ReportError(stored, f"cannot read the design: {exc}") from None
    seed = int(sweep.get("seed", 0))
    points = sample(design, seed)
    runs = results.runs
    rows = []
    for metric, label in SENSITIVITY_METRICS.items():
        hits = _hits(results, metric)
        y = []
        for point in points:
            mine = runs
            for key, value in point.items():
                mine = mine[mine[key] == value]
            part = hits[hits["run_key"].isin(mine["run_key"])]
            if mine.empty or part.empty:
                return design.method, pd.DataFrame()  # a point not run yet, or without rows
            y.append(float(part["hit"].mean()))
        if len(set(y)) == 1:
            continue  # the same at every point: nothing to apportion
        with warnings.catch_warnings(record=True) as caught:  # SALib's caveats go in the table
            warnings.simplefilter("always")
            entries = indices(design, seed, y)
        caveat = "; ".join(sorted({str(w.message).split(",")[0] for w in caught}))
        for entry in entries:
            rows.append({"metric": label, **entry, "caveat": caveat})
    return design.method, pd.DataFrame(rows)


def online_vs_size(results: Results) -> pd.DataFrame:
    """Per room size k: the fraction of (reset, room) rows with at least one holder online at
    relogin (Wilson 95 %), beside the analytic 1 - (1 - p)^(k - 1) for stationary presence p
    (NaN where p is unknown: non-exponential churn or user classes)."""
    o = results.outcomes[results.outcomes["relogin_at"].notna()]
    rows = o.assign(
        hit=o["holders_online_at_relogin"] > 0, analytic=1 - (1 - o["p_online"]) ** (o["room_size"] - 1)
    )
    table = proportions(rows, ["room_size"])
    table["analytic"] = rows.groupby("room_size")["analytic"].mean().to_numpy() if len(rows) else []
    return table
