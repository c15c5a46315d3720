"""``keysim report``: figures and one page from a run or a sweep; the helpers the notebooks call.

Theory of operation.  A report reads results and never runs the simulator.  :func:`load_results`
turns either input into one :class:`Results`: the outcome rows and room rows of every finished run,
each row carrying its run's ``run_key``, ``replicate``, ``horizon_s``, ``tick_s`` and ``p_online``,
and one column per swept axis named by its dotted key.  A single run is a sweep of one point, so
everything after loading is one code path.  ``simulation.policy`` always has a column; it counts
as an axis when it is swept or merely differs between runs, and then it colours the lines.

Statistics.  A proportion at a grid point pools the point's replicates (k and n summed) with a
Wilson 95 % interval (:func:`sim.outputs.proportion`); each replicate's own fraction is drawn as a
dot, so the spread between seeds stays visible beside the interval.  Time to restore is measured
from relogin and estimated by Kaplan-Meier (lifelines): a reset not restored by its run's horizon
is censored at that horizon, never dropped and never counted as a restoration.  Every run keeps its
own horizon, which may itself be swept.

Output.  Everything is written into a temporary directory beside ``out`` that replaces ``out``
only once complete (as :func:`sim.outputs.write_run` does); an existing ``out`` is replaced only if
it is a previous report, and never if it is or contains the input.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from protocol import Server

from . import __version__
from .engine import RunResult
from .outputs import kaplan_meier, outcomes_frame, proportion, rooms_frame

__all__ = [
    "FORMATS",
    "METRICS",
    "POLICY",
    "ReportError",
    "Results",
    "collect",
    "format_headline",
    "headline",
    "load_results",
    "make_report",
    "online_vs_size",
    "plot_bars",
    "plot_km",
    "plot_metric",
    "plot_online_vs_size",
    "plot_vs_holders",
    "proportions",
    "server_tables",
]

FORMATS = ("md", "html")
POLICY = "simulation.policy"
#: metric -> what it counts; ``rooms_lost`` counts encrypted rooms, the others (reset, room) rows
METRICS = {
    "restored": "restored by the horizon",
    "at_once": "restored at once (within one tick)",
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
    kind: str, source: str, parts: list[tuple[dict[str, Any], Any, Any]], swept: list[str], notes: list[str]
) -> Results:
    """``parts``: (run identity and axis values, outcomes frame, rooms frame) per run."""
    outcomes = _concat([_tag(o, run) for run, o, _ in parts])
    rooms = _concat([_tag(r, run) for run, _, r in parts])
    runs = pd.DataFrame([run for run, _, _ in parts])
    if POLICY not in runs:
        first = [(o if not o.empty else r)["policy"] for _, o, r in parts]
        runs[POLICY] = [str(p.iloc[0]) if len(p) else "" for p in first]
    axes = list(swept)
    if POLICY not in axes and runs[POLICY].nunique() > 1:
        axes.append(POLICY)
    return Results(kind, source, outcomes, rooms, runs, tuple(axes), tuple(notes))


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


def _read(folder: Path, outcomes: Path, rooms: Path, summary: Path) -> tuple[Any, Any, dict[str, Any]]:
    for f in (outcomes, rooms, summary):
        if not f.is_file():
            raise ReportError(folder, f"{f.relative_to(folder)} is missing")
    try:
        return pd.read_parquet(outcomes), pd.read_parquet(rooms), json.loads(summary.read_text())
    except (OSError, ValueError) as exc:  # pyarrow's errors are ValueError or OSError
        raise ReportError(folder, f"cannot read a result file: {exc}") from None


def _load_run(path: Path) -> Results:
    outcomes, rooms, summary = _read(path, *(path / name for name in RUN_FILES))
    run = _run_identity(str(summary.get("run_id") or path.name), 0, summary)
    return _assemble("run", str(path), [(run, outcomes, rooms)], [], [])


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
        outcomes, rooms, summary = _read(
            path,
            path / "outcomes" / f"{run_key}.parquet",
            path / "rooms" / f"{run_key}.parquet",
            path / "summaries" / f"{run_key}.json",
        )
        run = _run_identity(str(run_key), int(replicate), summary)
        scalars = {
            k: v if isinstance(v, str | int | float | bool) else json.dumps(v) for k, v in point.items()
        }
        parts.append(({**run, **scalars}, outcomes, rooms))
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
        parts.append((run, outcomes_frame(result), rooms_frame(result)))
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
    """Rows with a relogin; unrestored ones end at their own run's horizon (censored there)."""
    rows = outcomes[outcomes["relogin_at"].notna()]
    return rows.assign(restored_at=rows["restored_at"].fillna(rows["horizon_s"]))


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


# ---------------------------------------------------------------------------------------- figures


def _err(stats: pd.DataFrame) -> Any:
    """Wilson interval as matplotlib's 2 x n error array (distances below and above)."""
    value = stats["value"].to_numpy(dtype=float)
    return np.vstack(
        [value - stats["ci_low"].to_numpy(dtype=float), stats["ci_high"].to_numpy(dtype=float) - value]
    )


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return (
        ", ".join(
            f"{k.split('.')[-1]}={v}" if k != POLICY else str(v) for k, v in zip(keys, values, strict=True)
        )
        or "all"
    )


def _positions(values: pd.Series) -> tuple[pd.Series, list[Any] | None]:
    """Numeric axes are plotted on their own scale; others at 0, 1, 2, ... with tick labels."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float), None
    order = sorted(values.unique(), key=str)
    return values.map({v: i for i, v in enumerate(order)}).astype(float), order


def _styles(hue: Sequence[str], keys: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Colour by the non-policy part of a line's key, line style by its policy."""
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    dashes = ["-", "--", ":", "-."]
    at = hue.index(POLICY) if POLICY in hue and len(hue) > 1 else None
    rest = sorted({k[:at] + k[at + 1 :] if at is not None else k for k in keys}, key=str)
    policies = sorted({k[at] for k in keys}, key=str) if at is not None else []
    out = []
    for k in keys:
        base = k[:at] + k[at + 1 :] if at is not None else k
        style = dashes[policies.index(k[at]) % len(dashes)] if at is not None else "-"
        out.append({"color": colors[rest.index(base) % len(colors)], "linestyle": style})
    return out


def plot_metric(
    ax: Axes,
    results: Results,
    axis: str,
    metric: str = "restored",
    hue: Sequence[str] = (),
    *,
    legend: bool = True,
) -> None:
    """``metric`` against ``axis``, one line per value of ``hue`` (other axes pooled): the pooled
    fraction with its Wilson 95 % band, and each replicate's fraction as a dot."""
    rows = _hits(results, metric)
    if rows.empty:
        return
    x_all, ticks = _positions(rows[axis])
    rows = rows.assign(_x=x_all)
    lines = list(_groups(rows, list(hue)))
    styles = _styles(hue, [key for key, _ in lines])
    alpha = 0.2 if len(lines) <= 3 else 0.1
    for i, ((key, g), style) in enumerate(zip(lines, styles, strict=True)):
        pooled = proportions(g, ["_x"])
        shift = (i - (len(lines) - 1) / 2) * 0.06 if ticks is not None else 0.0
        x = pooled["_x"] + shift
        if ticks is not None:  # categories have no order to draw a line along
            style = {**style, "linestyle": "none"}
        ax.plot(x, pooled["value"], marker="o", label=_label(hue, key), **style)
        if ticks is None:
            ax.fill_between(x, pooled["ci_low"], pooled["ci_high"], color=style["color"], alpha=alpha)
        else:
            err = _err(pooled)
            ax.errorbar(x, pooled["value"], yerr=err, fmt="none", ecolor=style["color"], capsize=3)
        spread = proportions(g, ["_x", "run_key"])
        ax.plot(spread["_x"] + shift, spread["value"], ".", color=style["color"], alpha=0.45, markersize=5)
    if ticks is not None:
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
    elif rows["_x"].nunique() <= 12:
        ax.set_xticks(sorted(rows["_x"].unique()))
    ax.set_xlabel(axis)
    ax.set_ylabel("fraction of encrypted rooms" if metric == "rooms_lost" else "fraction of (reset, room)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(METRICS[metric])
    if hue and legend:
        ax.legend(fontsize=7)


def plot_bars(ax: Axes, results: Results, by: str, metric: str = "restored", at: Sequence[str] = ()) -> None:
    """``metric`` for each value of ``by`` side by side (bars with Wilson 95 % intervals), at each
    point of the columns ``at`` (everything else pooled)."""
    at = list(at)
    points = results.runs[at].drop_duplicates().sort_values(at) if at else pd.DataFrame(index=[0])
    points = points.assign(_x=np.arange(len(points)))
    stats = proportions(_hits(results, metric), [*at, by])
    stats = stats.merge(points, on=at) if at else stats.assign(_x=0)
    labels = sorted(results.runs[by].unique(), key=str)
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        mine = stats[stats[by] == label]
        x = mine["_x"] + (i - (len(labels) - 1) / 2) * width
        err = _err(mine)
        ax.bar(x, mine["value"], width, yerr=err, capsize=3, label=str(label))
    if at:
        ticks = [", ".join(map(str, row)) for row in points[at].itertuples(index=False)]
        ax.set_xticks(range(len(points)), ticks)
        ax.set_xlabel(", ".join(at))
        ax.legend(fontsize=7)
    else:  # one group of bars: name each bar on the axis
        positions = [(i - (len(labels) - 1) / 2) * width for i in range(len(labels))]
        ax.set_xticks(positions, [str(v) for v in labels], rotation=15 if len(labels) > 3 else 0)
        ax.set_xlabel(by)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction (Wilson 95 %)")
    ax.set_title(METRICS[metric])


def plot_km(ax: Axes, results: Results, by: Sequence[str] = ()) -> None:
    """Kaplan-Meier curves of the time from relogin to restoration, one per group of ``by``,
    with their 95 % bands; resets not restored by their run's horizon are censored there."""
    from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]

    for key, g in _groups(_censored(results.outcomes), list(by)):
        if g.empty:
            continue
        hours = (g["restored_at"] - g["relogin_at"]).clip(lower=0.0) / 3600.0
        kmf = KaplanMeierFitter().fit(hours, event_observed=g["restored"].astype(bool))
        sf, ci = kmf.survival_function_.iloc[:, 0], kmf.confidence_interval_survival_function_
        (line,) = ax.step(sf.index, sf.to_numpy(), where="post", label=f"{_label(by, key)} (n={len(g)})")
        ax.fill_between(
            ci.index, ci.iloc[:, 0], ci.iloc[:, 1], step="post", color=line.get_color(), alpha=0.15
        )
    ax.set_xlabel("hours since relogin")
    ax.set_ylabel("fraction not yet restored")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)


def plot_vs_holders(ax: Axes, results: Results, by: Sequence[str] = ()) -> None:
    """The fraction restored against the number of holders online at relogin (Wilson 95 %)."""
    for key, g in _groups(_hits(results, "restored"), list(by)):
        stats = proportions(g, ["holders_online_at_relogin"])
        err = _err(stats)
        ax.errorbar(
            stats["holders_online_at_relogin"],
            stats["value"],
            yerr=err,
            fmt="o-",
            capsize=3,
            label=_label(by, key),
        )
    ax.set_xlabel("holders online at relogin")
    ax.set_ylabel("fraction restored by the horizon")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if by:
        ax.legend(fontsize=7)


def plot_online_vs_size(ax: Axes, results: Results) -> None:
    """At least one holder online at relogin against room size, simulated beside analytic."""
    table = online_vs_size(results)
    err = _err(table)
    ax.errorbar(
        table["room_size"], table["value"], yerr=err, fmt="o", capsize=3, label="simulated (Wilson 95 %)"
    )
    if table["analytic"].notna().any():
        ax.plot(table["room_size"], table["analytic"], "-", label="1 - (1 - p)^(k - 1)")
    ax.set_xlabel("room size k")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("P(a holder online at relogin)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)


def server_tables(server: Server) -> dict[str, pd.DataFrame]:
    """Excerpts of ``Server.dump()`` for people to read: users, rooms, subscriptions (which
    key each member holds or is offered) and the queue (``usersWaitingForE2EKeys``)."""
    dump = server.dump()
    names = {u["_id"]: u["username"] for u in dump["users"]}
    rooms = {r["_id"]: r for r in dump["rooms"]}
    users = [
        {"user": u["username"], "totp": u["services"]["totp"]["enabled"], "e2e keys": bool(u.get("e2e"))}
        for u in dump["users"]
    ]
    room_rows = [
        {
            "room": r["name"],
            "t": r["t"],
            "encrypted": r["encrypted"],
            "e2eKeyId": (r.get("e2eKeyId") or "")[:8],
            "waiting": len(r.get("usersWaitingForE2EKeys") or []),
        }
        for r in dump["rooms"]
    ]
    subs = [
        {
            "room": rooms[s["rid"]]["name"],
            "user": names[s["u"]["_id"]],
            "E2EKey": "E2EKey" in s,
            "E2ESuggestedKey": "E2ESuggestedKey" in s,
            "oldRoomKeys": len(s.get("oldRoomKeys") or []),
        }
        for s in dump["subscriptions"]
    ]
    queue = [
        {"room": r["name"], "user": names[w["userId"]], "since": w["ts"]}
        for r in dump["rooms"]
        for w in r.get("usersWaitingForE2EKeys") or []
    ]
    return {
        "users": pd.DataFrame(users),
        "rooms": pd.DataFrame(room_rows),
        "subscriptions": pd.DataFrame(subs),
        "queue": pd.DataFrame(queue, columns=["room", "user", "since"]),
    }


# ---------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class _Shown:
    title: str
    caption: str
    file: str


def _subset(results: Results, column: str, value: Any) -> Results:
    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame[column] == value]

    axes = tuple(a for a in results.axes if a != column)
    return Results(
        results.kind, results.source, keep(results.outcomes), keep(results.rooms), keep(results.runs), axes
    )


def _show(shown: list[_Shown], fig: Figure, folder: Path, name: str, title: str, caption: str) -> None:
    fig.savefig(folder / name, dpi=110)
    shown.append(_Shown(title, caption, name))


def _safe(axis: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", axis)


def _plot_lost_per_point(ax: Axes, results: Results) -> None:
    rows = _hits(results, "rooms_lost")
    axes = list(results.axes)
    pooled = proportions(rows, axes)
    y = np.arange(len(pooled))
    err = _err(pooled)
    ax.barh(y, pooled["value"], xerr=err, capsize=3, color="tab:red", alpha=0.6)
    spread = proportions(rows, [*axes, "run_key"]).merge(pooled[axes].assign(_y=y), on=axes)
    ax.plot(spread["value"], spread["_y"], "k.", alpha=0.5, markersize=4)
    ax.set_yticks(y, [_label(axes, tuple(row)) for row in pooled[axes].itertuples(index=False)])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("fraction of encrypted rooms lost (Wilson 95 %; dots: replicates)")


def _figures(results: Results, folder: Path) -> list[_Shown]:
    shown: list[_Shown] = []
    policy = [POLICY] if POLICY in results.axes else []
    policies = sorted(results.runs[POLICY].unique(), key=str)
    for axis in [a for a in results.axes if a != POLICY]:
        rest = [a for a in results.axes if a != axis]
        hue = rest if rest and results.runs.groupby(rest).ngroups <= MAX_LINES else policy
        note = f" (pooled over {', '.join(a for a in rest if a not in hue)})" if set(rest) - set(hue) else ""
        fig = Figure(figsize=(14, 4.3), layout="constrained")
        for i, (ax, metric) in enumerate(zip(fig.subplots(1, 3), METRICS, strict=True)):
            plot_metric(ax, results, axis, metric, hue, legend=i == 0)
        fig.suptitle(f"Restoration against {axis}{note}")
        caption = f"Lines: replicates pooled per point, Wilson 95 % band; dots: single replicates{note}."
        _show(shown, fig, folder, f"restoration_vs_{_safe(axis)}.png", f"Restoration against {axis}", caption)
        fig = Figure(figsize=(5.5 * len(policies), 4.2), layout="constrained")
        for ax, value in zip(np.atleast_1d(fig.subplots(1, len(policies))), policies, strict=True):
            plot_km(ax, _subset(results, POLICY, value), [axis])
            ax.set_title(f"policy {value}")
        fig.suptitle(f"Time to restore by {axis} (Kaplan-Meier, censored at the horizon)")
        caption = f"Kaplan-Meier curves with 95 % bands{note}."
        _show(shown, fig, folder, f"km_by_{_safe(axis)}.png", f"Time to restore by {axis}", caption)
    if policy:
        others = [a for a in results.axes if a != POLICY]
        at = others if others and results.runs.groupby(others).ngroups <= 2 * MAX_LINES else []
        note = f" (pooled over {', '.join(others)})" if others and not at else ""
        tall = len(at) > 0 and results.runs.groupby(at).ngroups > 3
        fig = Figure(figsize=(12, 11) if tall else (15, 4.5), layout="constrained")
        for ax, metric in zip(fig.subplots(3, 1) if tall else fig.subplots(1, 3), METRICS, strict=True):
            plot_bars(ax, results, POLICY, metric, at)
        fig.suptitle(f"Policies side by side{note}")
        caption = f"Bars: replicates pooled, Wilson 95 % interval{note}."
        _show(shown, fig, folder, "policies.png", "Policies side by side", caption)
    fig = Figure(figsize=(7, 4.3), layout="constrained")
    ax = fig.subplots()
    plot_km(ax, results, policy)
    ax.set_title("Time to restore (Kaplan-Meier, censored at the horizon)")
    caption = "Kaplan-Meier curves with 95 % bands; resets not restored by the horizon are censored there."
    _show(shown, fig, folder, "time_to_restore_km.png", "Time to restore", caption)
    fig = Figure(figsize=(12, 4.3), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_vs_holders(left, results, policy)
    left.set_title("Restoration against holders online at relogin")
    plot_online_vs_size(right, results)
    right.set_title("A holder online at relogin, by room size")
    caption = "Right: the analytic curve assumes exponential churn (stationary presence p)."
    _show(shown, fig, folder, "restored_vs_holders_online.png", "Restoration against holders online", caption)
    points = results.runs.groupby(list(results.axes)).ngroups if results.axes else 1
    if points > 1:
        fig = Figure(figsize=(8, min(30.0, 1.5 + 0.32 * points)), layout="constrained")
        _plot_lost_per_point(fig.subplots(), results)
        fig.suptitle("Rooms lost per grid point")
        caption = "Encrypted rooms whose current key nobody holds at the horizon."
        _show(shown, fig, folder, "rooms_lost_per_point.png", "Rooms lost per grid point", caption)
    return shown


def _time(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "not reached"
    for limit, unit, scale in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / scale:.{0 if unit == 's' else 1}f} {unit}"
    return f"{seconds / 86400:.1f} days"


def format_headline(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`headline` as text for people: percentages with their intervals and counts, times
    with units.  A table of one ungrouped row is turned on its side (one figure per line)."""
    groups = list(table.columns[: list(table.columns).index("runs")])
    out = table[groups].astype(str)
    out["runs"], out["resets"] = table["runs"], table["resets"]
    for metric in METRICS:
        k, n, v, lo, hi = (table[f"{metric}_{c}"] for c in ("k", "n", "value", "ci_low", "ci_high"))
        out[METRICS[metric]] = [
            f"{100 * v_:.1f} % [{100 * lo_:.1f}, {100 * hi_:.1f}] ({k_}/{n_})" if n_ else "n/a"
            for k_, n_, v_, lo_, hi_ in zip(k, n, v, lo, hi, strict=True)
        ]
    out["median time to restore [95 %]"] = [
        f"{_time(m)} [{_time(lo)}, {_time(hi)}]" if not math.isnan(m) else "n/a"
        for m, lo, hi in zip(table["km_median_s"], table["km_ci_low_s"], table["km_ci_high_s"], strict=True)
    ]
    if len(out) == 1 and not groups:  # one run: a figure per line reads better
        out = out.T.reset_index().set_axis(["figure", "value"], axis=1)
    return out.astype(str)


def _intro(results: Results) -> list[str]:
    runs = results.runs
    lines = [
        f"Source: `{results.source}` ({results.kind}, {len(runs)} finished run{'s' * (len(runs) != 1)})."
    ]
    if results.kind == "run":
        row = runs.iloc[0]
        lines.append(f"Run `{row['run_key']}`, policy `{row[POLICY]}`, keysim {row['keysim_version']}.")
    for axis in results.axes:
        values = ", ".join(str(v) for v in _positions(runs[axis])[1] or sorted(runs[axis].unique()))
        lines.append(f"Axis `{axis}`: {values}.")
    if results.axes:
        reps = runs.groupby(list(results.axes)).size()
        count = str(reps.min()) if reps.min() == reps.max() else f"{reps.min()}-{reps.max()}"
        lines.append(f"{len(reps)} grid points, {count} replicate{'s' * (count != '1')} each.")
    lines.append(
        "Proportions carry Wilson 95 % intervals and pool the replicates of a grid point. Time to restore runs from "
        "relogin (Kaplan-Meier median with its 95 % interval); resets not restored by the horizon are "
        "censored there. 'At once' means within one key-distribution tick."
    )
    return [*lines, *results.notes]


def _markdown(results: Results, table: pd.DataFrame, shown: list[_Shown]) -> str:
    def cell(value: str) -> str:
        return value.replace("|", "\\|")

    rows = [
        "| " + " | ".join(cell(str(c)) for c in table.columns) + " |",
        "|" + "---|" * len(table.columns),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)),
    ]
    parts = [
        "# keysim report",
        "",
        *(f"{line}  " for line in _intro(results)),
        "",
        "## Headline figures",
        "",
        *rows,
    ]
    for s in shown:
        parts += ["", f"## {s.title}", "", f"![{s.title}]({s.file})", "", f"*{s.caption}*"]
    return "\n".join(parts) + "\n"


def _html(results: Results, table: pd.DataFrame, shown: list[_Shown], folder: Path) -> str:
    body = ["<h1>keysim report</h1>", *(f"<p>{html.escape(line)}</p>" for line in _intro(results))]
    body += ["<h2>Headline figures</h2>", table.to_html(index=False, escape=True, border=0)]
    for s in shown:
        data = base64.b64encode((folder / s.file).read_bytes()).decode("ascii")
        body += [
            f"<h2>{html.escape(s.title)}</h2>",
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(s.title)}" title="{html.escape(s.file)}">',
            f"<figcaption>{html.escape(s.caption)}</figcaption></figure>",
        ]
    style = "body{font-family:sans-serif;max-width:1400px;margin:auto}img{max-width:100%}td,th{padding:2px 8px;text-align:left}"
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>keysim report</title><style>{style}</style></head>\n<body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _check_out(path: Path, out: Path) -> None:
    src, dst = path.resolve(), out.resolve()
    if dst == src or src.is_relative_to(dst):
        raise ReportError(out, "the output directory must not be the input directory or contain it")
    if out.exists() and not out.is_dir():
        raise ReportError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not any((out / f"report.{f}").is_file() for f in FORMATS):
        raise ReportError(out, "exists and is not a keysim report; refusing to replace it")


def make_report(path: Path, out: Path | None = None, fmt: str = "md") -> Path:
    """Figures (PNG), ``headline.csv`` and one page (``report.md`` or ``report.html``) for the run
    or sweep in ``path``, under ``out`` (default ``path/report``); returns the page's path."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ReportError(path, f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    results = load_results(path)
    out = Path(out) if out is not None else path / "report"
    _check_out(path, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
    except OSError as exc:
        raise ReportError(out, f"cannot write here: {exc}") from None
    try:
        shown = _figures(results, tmp)
        table = headline(results)
        table.to_csv(tmp / "headline.csv", index=False)
        text = format_headline(table)
        page = _markdown(results, text, shown) if fmt == "md" else _html(results, text, shown, tmp)
        (tmp / f"report.{fmt}").write_text(page, encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / f"report.{fmt}"
