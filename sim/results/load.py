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
    "km_curves",
    "load_results",
    "online_vs_size",
    "proportions",
    "sensitivity",
    "trace_fit",
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
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # so that it crosses a process pool whole
        return (type(self), (self.path, self.message))


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
    #: each run's summary.json (parameters, provenance, trace fit), in the order of ``runs``;
    #: empty for results collected in memory
    summaries: tuple[Mapping[str, Any], ...] = ()


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
    summaries: Sequence[Mapping[str, Any]] = (),
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
    return Results(kind, source, outcomes, rooms, runs, tuple(axes), tuple(notes), joins, tuple(summaries))


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
    return _assemble("run", str(path), [(run, outcomes, rooms, joins)], [], [], [summary])


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
    parts, swept, summaries = [], {}, []
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
        summaries.append(summary)
    notes = (
        [f"{unfinished} run(s) not finished (status other than 'done') are left out."] if unfinished else []
    )
    return _assemble("sweep", str(path), parts, list(swept), notes, summaries)


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


#: an axis with more distinct numeric values than this (a design's sample) is drawn binned
MAX_AXIS_VALUES = 12
#: into this many bins of about equal counts
AXIS_BINS = 8


def binned(results: Results, axis: str) -> tuple[Results, str]:
    """``results`` with a numeric ``axis`` of more than :data:`MAX_AXIS_VALUES` distinct values (the
    samples of a sensitivity design) replaced by the median of its bin, :data:`AXIS_BINS` bins of
    about equal numbers of runs, so that a figure draws one point per bin; and a note saying so
    (empty when nothing was binned)."""
    values = results.runs[axis]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return results, ""
    if values.nunique() <= MAX_AXIS_VALUES:
        return results, ""
    # distinct values ranked, so that the replicates of one point share its bin
    bins = pd.qcut(values.astype(float).rank(method="dense"), AXIS_BINS, labels=False, duplicates="drop")
    centre = values.astype(float).groupby(bins).transform("median")
    shown = dict(zip(results.runs["run_key"], centre.map(lambda v: float(f"{v:.4g}")), strict=True))

    def swap(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty or axis not in frame:
            return frame
        return frame.assign(**{axis: frame["run_key"].map(shown)})

    out = Results(
        results.kind,
        results.source,
        swap(results.outcomes),
        swap(results.rooms),
        swap(results.runs),
        results.axes,
        results.notes,
        swap(results.joins),
        results.summaries,
    )
    return out, f"{axis} binned into {AXIS_BINS} bins of about equal runs, each drawn at its median"


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """A group's name for a legend: ``key=value, ...`` (a policy by its name alone)."""
    return (
        ", ".join(
            f"{k.split('.')[-1]}={v}" if k != POLICY else str(v) for k, v in zip(keys, values, strict=True)
        )
        or "all"
    )


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


#: a restoration sooner than this after relogin is drawn at it on a log time axis
KM_FLOOR_HOURS = 1.0 / 60.0


def km_frame(durations: pd.Series, events: pd.Series) -> pd.DataFrame:
    """One Kaplan-Meier curve (lifelines) of ``durations`` in hours: ``hours``, ``survival``, ``ci_low``,
    ``ci_high``, starting at 0 with survival 1 (also when some events are at 0: a restoration
    at the relogin itself)."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(durations, event_observed=events)
    sf, ci = kmf.survival_function_.iloc[:, 0], kmf.confidence_interval_survival_function_
    frame = pd.DataFrame(
        {
            "hours": sf.index.to_numpy(dtype=float),
            "survival": sf.to_numpy(dtype=float),
            "ci_low": ci.iloc[:, 0].to_numpy(dtype=float),
            "ci_high": ci.iloc[:, 1].to_numpy(dtype=float),
        }
    )
    if frame["hours"].iloc[0] > 0 or frame["survival"].iloc[0] < 1:
        start = pd.DataFrame({"hours": [0.0], "survival": [1.0], "ci_low": [1.0], "ci_high": [1.0]})
        frame = pd.concat([start, frame], ignore_index=True)
    return frame


def km_curves(results: Results, by: Sequence[str] = ()) -> pd.DataFrame:
    """Kaplan-Meier curves of the time from relogin to restoration (lifelines), one per group of
    ``by``: the columns of ``by``, ``label``, ``n``, ``hours``, ``survival`` (the share not yet
    restored) and its 95 % band ``ci_low``, ``ci_high``.  A reset not restored is censored where
    :func:`_censored` says.  Each curve starts at 0 hours with survival 1 (:func:`km_frame`)."""
    parts = []
    for key, g in _groups(_censored(results.outcomes), list(by)):
        if g.empty:
            continue
        hours = (g["restored_at"] - g["relogin_at"]).clip(lower=0.0) / 3600.0
        frame = km_frame(hours, g["restored"].astype(bool))
        for column, value in zip(by, key, strict=True):
            frame.insert(0, column, value)
        parts.append(frame.assign(label=f"{_label(by, key)} (n={len(g)})", n=len(g)))
    columns = [*by, "hours", "survival", "ci_low", "ci_high", "label", "n"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def trace_fit(results: Results) -> tuple[str, pd.DataFrame, list[float]] | None:
    """For runs driven by a trace: the first such run's key, how well each churn law fits its
    sessions (one row per sample and law: ``sample``, ``n``, ``mean (min)``, ``law``, the
    maximum-likelihood ``parameters`` and the Kolmogorov-Smirnov distance ``KS``), and the share
    of online time per hour of the day; None when no run has a trace fit."""
    for run_key, summary in zip(results.runs["run_key"], results.summaries, strict=False):
        fit = summary.get("trace_fit")
        if not fit:
            continue
        rows = []
        for sample, label in (("online", "session lengths"), ("offline", "gaps between sessions")):
            laws = fit.get(sample) or {}
            for law in ("exponential", "weibull", "lognormal"):
                params = laws.get(law)
                if not isinstance(params, Mapping):
                    continue
                shown = ", ".join(f"{k} {v:.3g}" for k, v in params.items() if k != "ks")
                rows.append(
                    {
                        "sample": label,
                        "n": laws.get("n", 0),
                        "mean (min)": round(float(laws.get("mean_minutes", math.nan)), 1),
                        "law": law,
                        "parameters": shown,
                        "KS": round(float(params["ks"]), 3),
                    }
                )
        return str(run_key), pd.DataFrame(rows), [float(h) for h in fit.get("hourly_online_share") or []]
    return None


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
