"""One run's results as tidy tables and a summary with confidence intervals.

:func:`summarize` turns a :class:`~sim.engine.RunResult` into the headline figures (fractions with
Wilson 95 % intervals from scipy, the Kaplan-Meier median time to restore from lifelines, which
treats rows not restored as censored rather than dropping them: at the user's next reset, its
leaving the room or the horizon, whichever comes first, :func:`restore_ends`).

A restoration is not always a full one: a user who gets the current key back but not the old
ones reads new messages only.  ``fraction_restored_with_history`` counts the rows restored with
every message sent before the reset readable, and ``history_readable`` is the share of those
messages readable over the restored rows (a ratio of sums, with a bootstrap interval over rows,
since one row's messages stand or fall together).  Writing them to disk is
:mod:`sim.results.rundir`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .. import __version__
from ..engine import JOIN_COLUMNS, OUTCOME_COLUMNS, ROOM_COLUMNS, RunResult
from .provenance import provenance

__all__ = [
    "joins_frame",
    "joins_summary",
    "kaplan_meier",
    "outcomes_frame",
    "restore_ends",
    "rooms_frame",
    "summarize",
    "terminal_table",
    "timeline_frame",
]


def outcomes_frame(result: RunResult) -> pd.DataFrame:
    return pd.DataFrame(result.outcomes, columns=list(OUTCOME_COLUMNS))


def joins_frame(result: RunResult) -> pd.DataFrame:
    return pd.DataFrame(result.joins, columns=list(JOIN_COLUMNS))


def rooms_frame(result: RunResult) -> pd.DataFrame:
    return pd.DataFrame(result.rooms, columns=list(ROOM_COLUMNS))


def timeline_frame(result: RunResult, step_s: float = 3600.0) -> pd.DataFrame:
    """The run at every ``step_s`` from 0 to the horizon (see :func:`sim.api.timeline`)."""
    import numpy as np

    if not (isinstance(step_s, int | float) and step_s > 0 and math.isfinite(step_s)):
        raise ValueError(f"step_s: must be a positive number of seconds, got {step_s!r}")
    horizon = result.scenario.horizon_s
    t = np.arange(0.0, horizon + step_s / 2, step_s)
    o = outcomes_frame(result)
    # a row waits from its reset until it is restored or stops waiting (superseded, left); a
    # row still open waits at the horizon too
    ends = restore_ends(o, math.inf).to_numpy(dtype=float)
    starts = o["reset_at"].to_numpy(dtype=float)
    waiting = (starts[None, :] <= t[:, None]) & (t[:, None] < ends[None, :])
    restored_at = o["restored_at"].to_numpy(dtype=float)
    rooms = pd.factorize(o["room"])[0] if len(o) else np.zeros(0, dtype=int)
    rooms_waiting = [len(set(rooms[row])) for row in waiting]
    lost_t, lost_n = zip(*result.lost_timeline, strict=True) if result.lost_timeline else ((0.0,), (0,))
    at = np.searchsorted(np.asarray(lost_t), t, side="right") - 1
    return pd.DataFrame(
        {
            "t_s": t,
            "hour": t / 3600.0,
            "resets_waiting": waiting.sum(axis=1),
            "rooms_waiting": rooms_waiting,
            "restored": (restored_at[None, :] <= t[:, None]).sum(axis=1),
            "rooms_lost": np.asarray(lost_n)[np.clip(at, 0, None)],
        }
    )


def proportion(k: int, n: int) -> dict[str, float | int]:
    """``k`` of ``n`` with a Wilson 95 % confidence interval (scipy)."""
    if n == 0:
        return {"k": 0, "n": 0, "value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"k": k, "n": n, "value": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def ratio(numerators: pd.Series, denominators: pd.Series) -> dict[str, float | int]:
    """``sum(numerators) / sum(denominators)`` over rows, with a 95 % percentile bootstrap interval
    that resamples rows (scipy, a fixed seed: the same rows give the same interval)."""
    import numpy as np
    from scipy.stats import bootstrap

    y, x = numerators.to_numpy(dtype=float), denominators.to_numpy(dtype=float)
    k, n = int(y.sum()), int(x.sum())
    if n == 0:
        return {"k": 0, "n": 0, "rows": len(x), "value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    value = k / n
    if len(x) < 2 or np.all(y == x) or np.all(y == 0):
        low = high = value  # every resample gives the same ratio
    else:
        ci = bootstrap(
            (y, x),
            lambda a, b, axis: a.sum(axis=axis) / np.maximum(b.sum(axis=axis), 1e-300),
            paired=True,
            vectorized=True,
            n_resamples=2000,
            method="percentile",
            random_state=np.random.default_rng(0),
        ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {"k": k, "n": n, "rows": len(x), "value": value, "ci_low": low, "ci_high": high}


def restore_ends(outcomes: pd.DataFrame, horizon_s: float | pd.Series) -> pd.Series:
    """When each row's wait ended: ``restored_at``; for a row not restored, the moment it is
    censored: the earliest of the user's next reset (``superseded_at``), its leaving the room
    (``left_at``) and the horizon (a number, or one per row)."""
    censor = pd.Series(horizon_s, index=outcomes.index, dtype="float64")
    for column in ("superseded_at", "left_at"):
        if column in outcomes:
            censor = censor.where(~(outcomes[column] < censor), outcomes[column])
    return outcomes["restored_at"].fillna(censor)


def kaplan_meier(outcomes: pd.DataFrame, horizon_s: float) -> dict[str, Any]:
    """Median time from relogin to restoration, censoring-aware (lifelines): a row not restored
    is censored where :func:`restore_ends` says, never dropped."""
    rows = outcomes[outcomes["relogin_at"].notna()]
    if rows.empty:
        return {"n": 0, "events": 0, "median_s": math.nan, "ci_low_s": math.nan, "ci_high_s": math.nan}
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    durations = (restore_ends(rows, horizon_s) - rows["relogin_at"]).clip(lower=0.0)
    events = rows["restored"].astype(bool)
    kmf = KaplanMeierFitter()
    kmf.fit(durations, event_observed=events)
    median = float(kmf.median_survival_time_)
    ci = median_survival_times(kmf.confidence_interval_)
    return {
        "n": len(rows),
        "events": int(events.sum()),
        "median_s": median if math.isfinite(median) else math.inf,
        "ci_low_s": float(ci.iloc[0, 0]),
        "ci_high_s": float(ci.iloc[0, 1]),
    }


def joins_summary(joins: pd.DataFrame, horizon_s: float) -> dict[str, Any]:
    """What joiners got: the share that held the room's key, the share of those who joined a room
    with a past that read all of it, the share of that past readable (a ratio of sums), and the
    Kaplan-Meier median from the join to holding the key (censored where the row closed, or at
    the horizon)."""
    n = len(joins)
    keyed = joins["keyed"].astype(bool)
    past = joins[joins["history_messages"] > 0]
    out: dict[str, Any] = {
        "n": n,
        "invites": int((joins["kind"] == "invite").sum()),
        "bundles": int((joins["bundle_keys"] > 0).sum()),
        "fraction_keyed": proportion(int(keyed.sum()), n),
        "fraction_with_history": proportion(int((past["history_unreadable"] == 0).sum()), len(past)),
        "history_readable": ratio(
            past["history_messages"] - past["history_unreadable"], past["history_messages"]
        ),
    }
    if n == 0:
        out["time_to_key_km"] = {"n": 0, "events": 0, "median_s": math.nan}
        return out
    from lifelines import KaplanMeierFitter

    ends = joins["keyed_at"].fillna(joins["closed_at"].fillna(horizon_s))
    kmf = KaplanMeierFitter().fit((ends - joins["joined_at"]).clip(lower=0.0), event_observed=keyed)
    median = float(kmf.median_survival_time_)
    out["time_to_key_km"] = {
        "n": n,
        "events": int(keyed.sum()),
        "median_s": median if math.isfinite(median) else math.inf,
    }
    return out


def summarize(result: RunResult, command: Sequence[str] | str | None = None) -> dict[str, Any]:
    """The run's headline figures and where they came from (``provenance``: ``command`` is the
    command line that made the run, None from Python)."""
    sc = result.scenario
    outcomes = outcomes_frame(result)
    rooms = rooms_frame(result)
    tick = float(sc.get("simulation.tick_seconds"))
    n = len(outcomes)
    restored = int(outcomes["restored"].sum()) if n else 0
    delay = outcomes["restored_at"] - outcomes["relogin_at"]
    at_once = int(((delay <= tick) & outcomes["restored"]).sum()) if n else 0
    restored_rows = outcomes[outcomes["restored"].astype(bool)] if n else outcomes
    with_history = int((restored_rows["history_unreadable"] == 0).sum()) if n else 0
    encrypted = rooms[rooms["encrypted"].astype(bool)]
    lost = int(encrypted["lost"].sum())
    return {
        "keysim_version": __version__,
        "scenario": sc.name,
        "scenario_file": str(sc.path) if sc.path else None,
        "seed": sc.seed,
        "run_id": result.run_id,
        "policy": sc.get("simulation.policy"),
        "crypto": sc.get("simulation.crypto"),
        "parameters": {section: dict(values) for section, values in sc.values.items()},
        "users": sc.users,
        "rooms": len(rooms),
        "encrypted_rooms": len(encrypted),
        "resets": int(outcomes["reset_id"].nunique()) if n else 0,
        "outcomes": n,
        "outcomes_superseded": int(outcomes["superseded_at"].notna().sum()) if n else 0,
        "outcomes_left": int(outcomes["left_at"].notna().sum()) if n else 0,
        "fraction_restored": proportion(restored, n),
        "fraction_restored_at_once": proportion(at_once, n),
        "fraction_restored_later": proportion(restored - at_once, n),
        "fraction_restored_with_history": proportion(with_history, n),
        "history_readable": ratio(
            restored_rows["history_messages"] - restored_rows["history_unreadable"],
            restored_rows["history_messages"],
        ),
        "rooms_lost": proportion(lost, len(encrypted)),
        "time_to_restore_km": kaplan_meier(outcomes, sc.horizon_s),
        "joins": joins_summary(joins_frame(result), sc.horizon_s),
        "trace_fit": result.trace_fit,
        "stationary_online": result.stationary_online,
        "adversary": result.adversary,
        "faults": result.faults,
        # null when not checked (--check-invariants), so that "[]" means checked and none found
        "invariant_violations": result.violations if result.invariants_checked else None,
        "performance": result.stats,
        "provenance": provenance(command, seeds=[sc.seed]),
    }


def terminal_table(summary: dict[str, Any]) -> str:
    def pct(p: dict[str, Any]) -> str:
        if not p["n"]:
            return "n/a"
        return f"{100 * p['value']:5.1f} %  [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]  ({p['k']}/{p['n']})"

    km = summary["time_to_restore_km"]
    median = km["median_s"]
    if not km["n"]:
        median_text = "n/a (no reset with a relogin)"
    else:
        median_text = "not reached" if not math.isfinite(median) else _duration(median)
    fit = summary.get("trace_fit")
    lines = _fit_lines(fit) if fit else []
    lines += [
        f"{summary['run_id']}  policy={summary['policy']}  users={summary['users']}  "
        f"encrypted rooms={summary['encrypted_rooms']}  resets={summary['resets']}",
        f"  restored            {pct(summary['fraction_restored'])}",
        f"    at once (1 tick)  {pct(summary['fraction_restored_at_once'])}",
        f"    later             {pct(summary['fraction_restored_later'])}",
        f"    with its history  {pct(summary['fraction_restored_with_history'])}",
        f"  history readable    {pct(summary['history_readable'])}",
        f"  rooms lost          {pct(summary['rooms_lost'])}",
        f"  median time to restore (Kaplan-Meier): {median_text}",
    ]
    joins = summary.get("joins")
    if joins and joins["n"]:
        key_median = joins["time_to_key_km"]["median_s"]
        lines += [
            f"  joiners {joins['n']} ({joins['invites']} invited, {joins['bundles']} with a key bundle)",
            f"    held the room key {pct(joins['fraction_keyed'])}; median "
            + ("not reached" if not math.isfinite(key_median) else _duration(key_median)),
            f"    read the whole past {pct(joins['fraction_with_history'])}",
        ]
    stopped = [
        f"{summary[key]} {what}"
        for key, what in (
            ("outcomes_superseded", "superseded by the user's next reset"),
            ("outcomes_left", "left the room"),
        )
        if summary.get(key)
    ]
    if stopped:
        lines.append(f"  stopped waiting unrestored: {', '.join(stopped)}")
    lines += [
        f"  wall {summary['performance'].get('wall_s', 0):.1f} s, "
        f"{summary['performance'].get('events', 0):,} SimPy events",
    ]
    adversary = summary.get("adversary")
    if adversary:
        lines.append(
            f"  malicious server ({', '.join(adversary['attacks'])}; mitigation {adversary['mitigation']}): "
            f"keys of {adversary['rooms_with_stolen_keys']} rooms stolen, "
            f"{adversary.get('e2e_passwords_stolen', 0)} E2E passwords stolen, "
            f"{adversary['planted_keys_accepted']} planted keys accepted, "
            f"{adversary['messages_readable_by_server']} messages readable"
        )
    faults = summary.get("faults")
    if faults:
        lines.append(
            f"  faulty network: {faults.get('requests_lost', 0)} requests and {faults.get('pushes_lost', 0)} pushes lost, "
            f"{faults.get('crashes', 0)} device crashes, {faults['server_restarts']} server restarts; "
            f"{faults['members_silently_lost']} members left waiting nowhere"
        )
    if summary["invariant_violations"]:
        lines.append(f"  INVARIANT VIOLATIONS: {len(summary['invariant_violations'])}")
    return "\n".join(lines)


def _fit_lines(fit: dict[str, Any]) -> list[str]:
    """How well the churn laws fit the CollegeMsg sessions, before any policy result."""
    lines = [f"CollegeMsg presence: {fit['users_online']} users online at all, {fit['sessions']} sessions"]
    for name, what in (("online", "session lengths"), ("offline", "gaps between sessions")):
        laws = fit[name]
        ks = ", ".join(
            f"{law} {laws[law]['ks']:.3f}" for law in ("exponential", "weibull", "lognormal") if law in laws
        )
        lines.append(f"  {what}: mean {_duration(laws['mean_minutes'] * 60)}; KS distance {ks}")
    share = fit["hourly_online_share"]
    peak = max(range(24), key=lambda h: share[h])
    low = min(range(24), key=lambda h: share[h])
    lines.append(
        f"  online time by hour of the trace's clock: most at {peak}:00 ({100 * share[peak]:.1f} %), "
        f"least at {low}:00 ({100 * share[low]:.1f} %)"
    )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
