"""The ``keysim check`` search: breadth-first, over every interleaving within a small scope.

Theory of operation.  :func:`explore` applies every enabled operation (:mod:`.operations`) to
every state, **breadth-first**, so the first violation found has a shortest trace; it stops there
or after ``max_states`` distinct states (:class:`~.identity.Seen`).  A new state is checked for
safety, then (on itself) for liveness (:mod:`.properties`); a crash of the protocol is a finding.

A state is stored as its trace and rebuilt by replaying it from a snapshot of the initial world
(:func:`~.world.dump`); entropy sources are part of the snapshot, so a state is a function of its
trace.  :class:`CheckResult` carries the statistics and the shortest failing trace as readable
steps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import POLICIES, Violation

from .identity import Seen
from .operations import Op, apply, describe, enabled_ops
from .properties import check_eventually, check_state
from .world import World, dump, load

__all__ = ["CheckResult", "explore"]


def _rebuild(root: bytes, trace: Sequence[Op]) -> World:
    """Replay ``trace`` from the initial world; entropy included, so exactly."""
    w = load(root)
    for op in trace:
        apply(w, op)
    return w


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What :func:`explore` found, with the statistics ``keysim check`` prints."""

    users: int
    rooms: int
    depth: int
    policy: str
    #: distinct states reached (the initial one included)
    states: int
    #: operations applied
    transitions: int
    elapsed_s: float
    #: the levels fully expanded: ``depth`` when the search is complete
    depth_done: int
    #: True when ``max_states`` stopped the search
    capped: bool = False
    #: True when no operation led to a new state before ``depth``: the scope is exhausted
    exhausted: bool = False
    #: the violations of the shortest failing trace; empty when none was found
    violations: tuple[str, ...] = ()
    #: that trace as readable steps: the start, the operations, then the suffix if any
    trace: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def report(self) -> str:
        lines = [
            f"keysim check: policy {self.policy}, {self.users} users, {self.rooms} rooms, depth {self.depth}",
            f"  states explored  {self.states:,}",
            f"  transitions      {self.transitions:,}",
            f"  states/second    {self.states_per_second:,.0f}",
            f"  elapsed          {self.elapsed_s:.2f} s",
            f"  depth completed  {self.depth_done}{' (no new state beyond it)' if self.exhausted else ''}",
        ]
        if self.capped:
            lines.append(f"  --max-states reached: the search stopped at {self.states:,} states, incomplete")
        if self.ok:
            lines.append("no violation found")
            return "\n".join(lines)
        lines.append("VIOLATION")
        lines += [f"  {v}" for v in self.violations]
        lines.append(f"shortest trace ({len(self.trace) - 1} steps):")
        lines += [f"  {k}. {step}" for k, step in enumerate(self.trace)]
        return "\n".join(lines)


def _start(w: World) -> str:
    users = ", ".join(w.names[u] + (" (TOTP)" if u in w.totp_secret else "") for u in w.users)
    rooms = "; ".join(
        f"{w.names[rid]} ({', '.join(w.names[u] for u in w.d.server.room(rid).subscriptions)})"
        for rid in w.rooms
    )
    return f"start: {users} log in; rooms {rooms}"


def explore(
    users: int = 3,
    rooms: int = 2,
    depth: int = 8,
    policy: str = "queue",
    max_states: int | None = None,
    *,
    eventually: bool = True,
    seed: int = 0,
) -> CheckResult:
    """Breadth-first search of every interleaving of :data:`OPERATIONS` up to ``depth`` steps;
    stops at the first violation (a shortest trace) or after ``max_states`` distinct states."""
    if policy not in POLICIES:
        raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
    if depth < 0:
        raise ValueError(f"depth: must be >= 0, got {depth}")
    if max_states is not None and max_states < 1:
        raise ValueError(f"max-states: must be >= 1, got {max_states}")
    started = time.perf_counter()
    root = World(users, rooms, policy, seed=seed)
    snapshot = dump(root)
    seen = Seen()
    seen.add(root)
    transitions = level = 0

    def result(found: Sequence[Violation] = (), steps: Sequence[str] = (), **flags: bool) -> CheckResult:
        violations = tuple(root.name(str(v)) for v in found)
        trace = (_start(root), *(root.name(s) for s in steps)) if found else ()
        elapsed = time.perf_counter() - started
        return CheckResult(
            users,
            rooms,
            depth,
            policy,
            seen.count,
            transitions,
            elapsed,
            level,
            violations=violations,
            trace=trace,
            **flags,
        )

    def check(w: World, trace: tuple[Op, ...], *, new: bool) -> CheckResult | None:
        """The safety properties of a new state, then (on ``w`` itself) the liveness ones."""
        found: list[Violation] = []
        suffix: list[str] = []
        try:
            found = check_state(w) if new else []
            if not found and new and eventually:
                found, suffix = check_eventually(w)
        except Exception as exc:  # a crash of the protocol is a finding, not an accident
            found, suffix = [Violation("operation_failed", f"{type(exc).__name__}: {exc}")], ["settle"]
        return result(found, [describe(w, op) for op in trace] + suffix) if found else None

    if failed := check(load(snapshot), (), new=True):
        return failed
    frontier: list[tuple[Op, ...]] = [()]
    for level in range(depth):
        following: list[tuple[Op, ...]] = []
        for trace in frontier:
            parent = _rebuild(snapshot, trace)
            parent_bytes = dump(parent)
            for op in enabled_ops(parent):
                transitions += 1
                child, child_trace = load(parent_bytes), (*trace, op)
                try:
                    found = apply(child, op)
                    new = not found and seen.add(child)
                except Exception as exc:  # a crash of the protocol is a finding, not an accident
                    found, new = [Violation("operation_failed", f"{type(exc).__name__}: {exc}")], False
                if found:
                    return result(found, [describe(child, o) for o in child_trace])
                if not new:
                    continue
                following.append(child_trace)
                if failed := check(child, child_trace, new=True):
                    return failed
                if max_states is not None and seen.count >= max_states:
                    return result(capped=True)
        frontier = following
        if not frontier:
            level += 1
            return result(exhausted=True)
    level = depth
    return result()
