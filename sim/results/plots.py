"""The figures of one run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from ..engine import RunResult
from .figures import _fit_ylim, _legend, save_figure
from .load import KM_FLOOR_HOURS, km_frame
from .tables import outcomes_frame, restore_ends

__all__ = ["plot_run"]


def plot_run(result: RunResult, summary: dict[str, Any], folder: Path) -> list[Path]:
    """The run's three figures as PNG (returned), each also as SVG and PDF beside it."""
    outcomes = outcomes_frame(result)
    return [
        _restored_vs_holders(outcomes, result, folder / "restored_vs_holders_online.png", summary),
        _kaplan_meier(outcomes, result, folder / "time_to_restore_km.png", summary),
        _rooms_without_holder(result, folder / "rooms_without_holder.png", summary),
    ]


def _save(fig: Any, path: Path, summary: dict[str, Any]) -> Path:
    save_figure(fig, path, path.stem.replace("_", " "), summary)
    plt.close(fig)
    return path


def _restored_vs_holders(outcomes: Any, result: RunResult, path: Path, summary: dict[str, Any]) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 4.2), layout="constrained")
    policy = result.scenario.get("simulation.policy")
    if not outcomes.empty:  # a user who never logged in again has no holders online at relogin
        outcomes = outcomes[outcomes["relogin_at"].notna()]
    if not outcomes.empty:
        tick = float(result.scenario.get("simulation.tick_seconds"))
        delay = outcomes["restored_at"] - outcomes["relogin_at"]
        outcomes = outcomes.assign(at_once=(delay <= tick) & outcomes["restored"])
        by = outcomes.groupby("holders_online_at_relogin")
        x = list(by.groups)
        left.plot(x, by["restored"].mean().values, "o-", label="restored by the horizon")
        left.plot(x, by["at_once"].mean().values, "s--", label="restored at once (one tick)")
        for xi, count in zip(x, by.size().values, strict=True):
            left.annotate(f"n={count}", (xi, 0.02), ha="center", fontsize=7, color="gray")
        groups = outcomes.assign(any_online=outcomes["holders_online_at_relogin"] > 0).groupby("room_size")
        sizes = list(groups.groups)
        right.plot(sizes, groups["any_online"].mean().values, "o", label="simulated")
        p = result.stationary_online
        if p is not None and result.scenario.get("churn.model") == "exponential" and sizes:
            ks = list(range(2, max(sizes) + 1))
            right.plot(ks, [1 - (1 - p) ** (k - 1) for k in ks], "-", label=f"1 - (1 - p)^(k-1), p = {p:.3f}")
    left.set_xlabel("holders online at relogin")
    left.set_ylabel("fraction of (reset, room)")
    left.set_ylim(-0.02, 1.02)  # the n= labels sit at the bottom
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title(f"Restoration against holders online ({policy})")
    _legend_or_note(left, "no reset with a relogin")
    right.set_xlabel("room size k")
    right.set_ylabel("P(at least one holder online at relogin)")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    ys = [y for line in right.lines for y in line.get_ydata()]
    _fit_ylim(right, ys or [math.nan], ys or [math.nan])
    right.set_title("A holder online at relogin")
    _legend_or_note(right, "no reset with a relogin")
    return _save(fig, path, summary)


def _kaplan_meier(outcomes: Any, result: RunResult, path: Path, summary: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    rows = outcomes[outcomes["relogin_at"].notna()] if not outcomes.empty else outcomes
    if not rows.empty:
        horizon = result.scenario.horizon_s
        durations = (restore_ends(rows, horizon) - rows["relogin_at"]).clip(lower=0.0) / 3600.0
        curve = km_frame(durations, rows["restored"].astype(bool))
        hours = curve["hours"].clip(lower=KM_FLOOR_HOURS)
        (line,) = ax.step(hours, curve["survival"], where="post", label=f"not yet restored (n={len(rows)})")
        ax.fill_between(
            hours, curve["ci_low"], curve["ci_high"], step="post", color=line.get_color(), alpha=0.2
        )
        ax.set_xscale("log")
        ax.set_xlim(KM_FLOOR_HOURS / 1.6, max(float(curve["hours"].max()), 1.0) * 1.2)
        _fit_ylim(ax, curve["ci_low"], curve["ci_high"])
    ax.set_xlabel("hours since relogin (log scale)")
    ax.set_ylabel("fraction not restored (Kaplan-Meier, 95 % band)")
    ax.set_title(f"Time to restore ({result.scenario.get('simulation.policy')})")
    _legend_or_note(ax, "no reset with a relogin")
    return _save(fig, path, summary)


def _legend_or_note(ax: Any, empty: str) -> None:
    """A legend for the labelled lines of ``ax``; with none (nothing to plot), say why it is empty.

    ``Axes.legend`` with no labelled artist warns ("No artists with labels found").
    """
    if ax.get_legend_handles_labels()[0]:
        _legend(ax)
    elif not ax.lines:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", color="gray")


def _rooms_without_holder(result: RunResult, path: Path, summary: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    timeline = [*result.lost_timeline, (result.scenario.horizon_s, result.lost_timeline[-1][1])]
    xs = [t / 86400.0 for t, _ in timeline]
    ys = [c for _, c in timeline]
    ax.step(xs, ys, where="post")
    ax.set_xlabel("days")
    ax.set_ylabel("encrypted rooms with no key holder")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Rooms whose current key nobody holds")
    ax.set_ylim(bottom=0, top=max(1, max(ys) * 1.1 if not math.isnan(max(ys)) else 1))
    return _save(fig, path, summary)
