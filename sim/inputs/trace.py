"""Presence replayed from a recorded trace (``churn.model = "trace"``).

:class:`TracePresence` answers the same questions as :class:`sim.inputs.churn.Presence` (the semantics
are described in :mod:`sim.inputs.presence_queries`: half-open online periods, strictly increasing
change times) from a CSV of online sessions instead of a renewal process.  May import the standard
library and :mod:`sim.inputs.presence_queries`, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from os import PathLike

from .presence_queries import _check_time, _Queries, _Timeline

__all__ = ["TracePresence"]

_EMPTY: list[float] = []


class TracePresence(_Queries):
    """Presence replayed from recorded online intervals; users absent from the trace never log in."""

    def __init__(self, intervals: Mapping[int, Iterable[tuple[float, float]]]) -> None:
        self._timelines: dict[int, _Timeline] = {}
        for user, spans in intervals.items():
            merged: list[float] = []
            for on, off in sorted(spans):
                _check_time("online_at", on)
                _check_time("offline_at", off)
                if off <= on:
                    raise ValueError(f"offline_at: must be after online_at for user {user} ({on!r}, {off!r})")
                if merged and on <= merged[-1]:  # overlapping or touching: extend the last session
                    # (from_csv rejects overlaps; this constructor merges them)
                    merged[-1] = max(merged[-1], float(off))
                else:
                    merged += [float(on), float(off)]
            self._timelines[user] = _Timeline(False, merged)

    def _timeline(self, user: int) -> _Timeline:
        tl = self._timelines.get(user)
        if tl is None:
            return _Timeline(False, _EMPTY)
        return tl

    @classmethod
    def from_csv(cls, path: str | PathLike[str], user_index: Mapping[str, int]) -> TracePresence:
        """Read ``user,online_at,offline_at`` lines (seconds; an optional header; ``#`` comments).

        Each line is one online session ``[online_at, offline_at)``.  One user's lines may come in
        any order (they are sorted by time), but two sessions of one user must not overlap: a
        :class:`ValueError` names the later of the two lines in the file and the line it overlaps.
        Sessions that touch (one ends exactly when the next begins) are merged into one session:
        with half-open periods the user is online throughout, and the stored change times stay
        strictly increasing, so :meth:`session_end`, :meth:`next_change` and :meth:`intervals` see
        one session and no logout/login at the shared instant.
        """
        lines: dict[int, list[tuple[float, float, int, str]]] = {}
        first = True
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                where = f"{path}:{lineno}"
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                fields = [c.strip() for c in row]
                if first and fields == ["user", "online_at", "offline_at"]:
                    first = False
                    continue
                first = False
                if len(fields) != 3:
                    raise ValueError(
                        f"{where}: expected 3 fields user,online_at,offline_at, got {len(fields)}"
                    )
                name, on_s, off_s = fields
                if name not in user_index:
                    raise ValueError(f"{where}: unknown user {name!r}")
                try:
                    on, off = float(on_s), float(off_s)
                except ValueError:
                    raise ValueError(
                        f"{where}: online_at and offline_at must be numbers of seconds"
                    ) from None
                if not (math.isfinite(on) and math.isfinite(off) and on >= 0):
                    raise ValueError(f"{where}: times must be finite and >= 0 (got {on_s}, {off_s})")
                if off <= on:
                    raise ValueError(f"{where}: offline_at {off_s} is not after online_at {on_s}")
                lines.setdefault(user_index[name], []).append((on, off, lineno, f"{name},{on_s},{off_s}"))
        for sessions in lines.values():
            sessions.sort()
            _, end, end_line, end_text = sessions[0]
            for on, off, lineno, text in sessions[1:]:
                if on < end:
                    (early, early_text), (late, late_text) = sorted([(end_line, end_text), (lineno, text)])
                    raise ValueError(
                        f"{path}:{late}: session {late_text} overlaps session {early_text} on line {early}"
                        " (one user's sessions must not overlap)"
                    )
                if off > end:
                    end, end_line, end_text = off, lineno, text
        return cls({user: [(on, off) for on, off, _, _ in sessions] for user, sessions in lines.items()})
