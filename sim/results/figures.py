"""Figures that draw on a given matplotlib axes, for reports and notebooks; and the server's
state as tables (for the protocol walkthrough)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from protocol import Server

from .load import (
    KM_FLOOR_HOURS,
    METRICS,
    POLICY,
    Results,
    _groups,
    _hits,
    _label,
    km_curves,
    online_vs_size,
    proportions,
)
from .provenance import png_metadata

__all__ = [
    "plot_bars",
    "plot_km",
    "plot_metric",
    "plot_online_vs_size",
    "plot_vs_holders",
    "save_figure",
    "server_tables",
]

# ---------------------------------------------------------------------------------------- figures


def save_figure(fig: Any, png: Path, title: str, summary: Mapping[str, Any] | None = None) -> None:
    """``fig`` as ``png`` and as SVG and PDF beside it, each saying what it shows and where it
    came from (keysim's version and commit, the command, the time: ``summary``'s provenance, or
    this process's) in its format's own metadata fields."""
    text = png_metadata(title, summary)
    described = f"{text['Software']}; {text['Source']}".strip("; ")
    fig.savefig(png, dpi=110, metadata=text)
    fig.savefig(
        png.with_suffix(".svg"),
        metadata={"Title": title, "Creator": text["Software"], "Description": described},
    )
    fig.savefig(
        png.with_suffix(".pdf"), metadata={"Title": title, "Creator": text["Software"], "Subject": described}
    )


def _err(stats: pd.DataFrame) -> Any:
    """Wilson interval as matplotlib's 2 x n error array (distances below and above)."""
    value = stats["value"].to_numpy(dtype=float)
    return np.vstack(
        [value - stats["ci_low"].to_numpy(dtype=float), stats["ci_high"].to_numpy(dtype=float) - value]
    )


def _legend(ax: Axes) -> None:
    """The legend beside the axes, on the right, where it hides no data (constrained layout makes
    room for it)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def _fit_ylim(ax: Axes, low: Any, high: Any, *, top: float = 1.0) -> None:
    """Y-limits that fit the data (``low`` and ``high``: its lowest and highest values, bands
    included), within [0, ``top``], with a margin of 5 % of the span (at least 0.02)."""
    lows = np.asarray(low, dtype=float)
    highs = np.asarray(high, dtype=float)
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if not len(lows) or not len(highs):
        ax.set_ylim(-0.02, top + 0.02)
        return
    lo, hi = float(lows.min()), float(highs.max())
    margin = max(0.05 * (hi - lo), 0.02)
    ax.set_ylim(max(lo - margin, -0.02), min(hi + margin, top + 0.02))


def _integer_ticks(ax: Axes, values: pd.Series) -> None:
    """Whole-number ticks on the x axis when every value on it is a whole number (a count)."""
    x = values.to_numpy(dtype=float)
    if len(x) and np.all(np.isfinite(x)) and np.all(x == np.round(x)):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


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
    lows, highs = [], []
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
        lows += [pooled["ci_low"], spread["value"]]
        highs += [pooled["ci_high"], spread["value"]]
    if ticks is not None:
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
    elif rows["_x"].nunique() <= 12:
        ax.set_xticks(sorted(rows["_x"].unique()))
    else:
        _integer_ticks(ax, rows["_x"])
    ax.set_xlabel(axis)
    ax.set_ylabel("fraction of encrypted rooms" if metric == "rooms_lost" else "fraction of (reset, room)")
    _fit_ylim(ax, np.concatenate(lows), np.concatenate(highs))
    ax.set_title(METRICS[metric])
    if hue and legend:
        _legend(ax)


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
        _legend(ax)
    else:  # one group of bars: name each bar on the axis
        positions = [(i - (len(labels) - 1) / 2) * width for i in range(len(labels))]
        ax.set_xticks(positions, [str(v) for v in labels], rotation=15 if len(labels) > 3 else 0)
        ax.set_xlabel(by)
    ax.set_ylim(0, min(1.05, max(0.1, float(stats["ci_high"].max()) * 1.1)) if len(stats) else 1.05)
    ax.set_ylabel("fraction (Wilson 95 %)")
    ax.set_title(METRICS[metric])


def plot_km(ax: Axes, results: Results, by: Sequence[str] = ()) -> None:
    """Kaplan-Meier curves of the time from relogin to restoration (:func:`km_curves`), one per
    group of ``by``, with their 95 % bands, on a log time axis (restorations within a minute are
    drawn at one minute); a reset not restored is censored at its run's horizon, or earlier at
    the user's next reset or its leaving the room."""
    curves = km_curves(results, by)
    for _, curve in curves.groupby("label", sort=False):
        hours = curve["hours"].clip(lower=KM_FLOOR_HOURS)
        (line,) = ax.step(hours, curve["survival"], where="post", label=curve["label"].iloc[0])
        ax.fill_between(
            hours, curve["ci_low"], curve["ci_high"], step="post", color=line.get_color(), alpha=0.15
        )
    ax.set_xscale("log")
    if len(curves):
        ax.set_xlim(KM_FLOOR_HOURS / 1.6, max(float(curves["hours"].max()), 1.0) * 1.2)
    ax.set_xlabel("hours since relogin (log scale)")
    ax.set_ylabel("fraction not yet restored")
    _fit_ylim(ax, curves["ci_low"], curves["ci_high"])
    _legend(ax)


def plot_vs_holders(ax: Axes, results: Results, by: Sequence[str] = ()) -> None:
    """The fraction restored against the number of holders online at relogin (Wilson 95 %);
    rows whose user never logged in again are left out."""
    rows = _hits(results, "restored")
    lows: list[float] = []
    highs: list[float] = []
    for key, g in _groups(rows[rows["relogin_at"].notna()], list(by)):
        stats = proportions(g, ["holders_online_at_relogin"])
        lows += list(stats["ci_low"])
        highs += list(stats["ci_high"])
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
    _fit_ylim(ax, lows or [np.nan], highs or [np.nan])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if by:
        _legend(ax)


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
    _fit_ylim(ax, [*table["ci_low"], *table["analytic"]], [*table["ci_high"], *table["analytic"]])
    _legend(ax)


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
