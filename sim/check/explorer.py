"""The ``keysim check`` search: breadth-first, over every interleaving within a small scope.

Theory of operation.  :func:`explore` applies every enabled operation (:mod:`.operations`) to
every state, **breadth-first**, so the first violation found has a shortest trace; it stops there
or after ``max_states`` distinct states (:class:`~.identity.Seen`).  A new state is checked for
safety, then (on itself) for liveness (:mod:`.properties`); a crash of the protocol is a finding.

A state is stored as its trace and rebuilt by replaying it from a snapshot of the initial world
(:func:`~.world.dump`); entropy sources are part of the snapshot, so a state is a function of its
trace.  :class:`CheckResult` carries the statistics and the shortest failing trace as readable
steps.  May import :mod:`protocol` and every other module of the checker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol import POLICIES, Violation

from .identity import Seen, Symmetry, exact_key, symmetries
from .liveness import Graph, fair_cycle, lasso
from .operations import Op, apply, describe, enabled_ops
from .properties import check_eventually, check_state
from .world import World, dump, load

__all__ = ["CheckResult", "Progress", "explore"]


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
    #: True when Ctrl-C stopped the search: the figures are those reached so far
    interrupted: bool = False
    #: the violations of the shortest failing trace; empty when none was found
    violations: tuple[str, ...] = ()
    #: that trace as readable steps: the start, the operations, then the suffix if any
    trace: tuple[str, ...] = ()
    #: that trace's operations, which :func:`sim.check.narrate.narrate` replays
    ops: tuple[Op, ...] = ()
    #: the seed of the initial world (with the scope, it rebuilds the world the trace starts from)
    seed: int = 0
    #: the scope's option: late suggestions after the next login too
    late_after_login: bool = False
    #: "sometimes" properties: each way a device got a room key back after its user's reset
    #: (``suggestion``, ``E2EKey``, ``old``, ``backup``, ``created``, ...), with the depth of the
    #: shortest trace reaching it; a path a policy should offer and that is missing is a blind spot
    coverage: tuple[tuple[str, int], ...] = ()
    #: on a liveness violation, where the loop starts in ``ops``: ``ops[loop:]`` repeats for ever
    loop: int | None = None
    #: on a liveness violation, who waits for ever: (user, room)
    waiter: tuple[int, int] | None = None
    #: whether liveness under fairness was checked on the state graph the search built (it is
    #: complete only when the search is ``exhausted``: deeper cycles are not seen)
    fair_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def complete(self) -> bool:
        """Whether every trace up to ``depth`` was explored (no cap, no interruption)."""
        return not self.capped and not self.interrupted

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def report(self, narrated: Sequence[str] | None = None) -> str:
        """The statistics, and on a violation the shortest trace: as numbered steps, or as
        ``narrated`` (:func:`sim.check.narrate.listing`: each step with what it moved)."""
        lines = [
            f"keysim check: policy {self.policy}, {self.users} users, {self.rooms} rooms, depth {self.depth}",
            f"  states explored  {self.states:,}",
            f"  transitions      {self.transitions:,}",
            f"  states/second    {self.states_per_second:,.0f}",
            f"  elapsed          {self.elapsed_s:.2f} s",
            f"  depth completed  {self.depth_done}{' (no new state beyond it)' if self.exhausted else ''}",
        ]
        if self.coverage:
            reached = ", ".join(f"{source} (depth {depth})" for source, depth in self.coverage)
            lines.append(f"  restoration paths reached  {reached}")
        else:
            lines.append("  restoration paths reached  none")
        if self.fair_checked:
            scope = "whole scope" if self.exhausted else f"the graph to depth {self.depth_done}"
            lines.append(f"  liveness under fairness  checked on {scope}")
        if self.capped:
            lines.append(f"  --max-states reached: the search stopped at {self.states:,} states, incomplete")
        if self.interrupted:
            lines.append(
                f"  interrupted: the search stopped at {self.states:,} states in depth {self.depth_done + 1}, incomplete"
            )
        if self.ok:
            lines.append("no violation found")
            return "\n".join(lines)
        lines.append("VIOLATION")
        lines += [f"  {v}" for v in self.violations]
        if self.loop is not None:
            lines.append(
                f"lasso: steps 1 to {self.loop} lead to a loop; steps {self.loop + 1} to {len(self.ops)} "
                "repeat for ever:"
            )
        else:
            lines.append(f"shortest trace ({len(self.trace) - 1} steps):")
        if narrated is not None:
            lines += [f"  0. {self.trace[0]}", *narrated]
            if len(self.trace) - 1 > len(self.ops):  # the settle after the operations
                lines.append(f"  {len(self.ops) + 1}. {self.trace[-1]}")
        else:
            lines += [f"  {k}. {step}" for k, step in enumerate(self.trace)]
        if self.loop is not None:
            lines.append(f"  then again from step {self.loop + 1}, for ever")
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
    progress: Callable[[Progress], None] | None = None,
    late_after_login: bool = False,
    fair: bool = True,
    symmetry: bool = True,
) -> CheckResult:
    """Breadth-first search of every interleaving of :data:`OPERATIONS` up to ``depth`` steps;
    stops at the first violation (a shortest trace) or after ``max_states`` distinct states.
    ``progress`` is called after every new state; Ctrl-C (KeyboardInterrupt) stops the search and
    returns what it found so far, marked ``interrupted``.  ``late_after_login`` widens the scope:
    a late suggestion for a reset user's old key pair may also arrive after its next login.
    ``fair``: once no safety violation is found, check liveness under fairness on the state graph
    (:mod:`.liveness`): a member waiting for a key is eventually served."""
    if policy not in POLICIES:
        raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
    if depth < 0:
        raise ValueError(f"depth: must be >= 0, got {depth}")
    if max_states is not None and max_states < 1:
        raise ValueError(f"max-states: must be >= 1, got {max_states}")
    search = _Search(
        users,
        rooms,
        depth,
        policy,
        max_states,
        eventually=eventually,
        seed=seed,
        late_after_login=late_after_login,
        fair=fair,
        symmetry=symmetry,
    )
    search.progress = progress
    try:
        return search.run()
    except KeyboardInterrupt:
        return search.result(interrupted=True)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a search is: what ``keysim check`` shows while it runs."""

    states: int
    transitions: int
    #: the level being expanded (0: the operations from the initial state)
    level: int
    elapsed_s: float

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _onto(child: Symmetry | None, stored: Symmetry | None) -> Symmetry | None:
    """The renaming of a child world onto the stored world of its state: both canonicalise to
    the same walk, so the child's user ``i`` is the stored world's ``stored^-1(child(i))``."""
    if child is None or stored is None:
        return None
    onto = child.then(stored.inverse())
    return None if onto.trivial else onto


def _crashed(exc: Exception) -> Violation:
    """The violation a crash of the protocol is reported as."""
    return Violation("operation_failed", f"{type(exc).__name__}: {exc}")


class _Search:
    """One search: its scope, the initial world and its snapshot, the states seen, the counters."""

    def __init__(
        self,
        users: int,
        rooms: int,
        depth: int,
        policy: str,
        max_states: int | None,
        *,
        eventually: bool,
        seed: int,
        late_after_login: bool = False,
        fair: bool = True,
        symmetry: bool = True,
    ) -> None:
        self.users, self.rooms, self.depth, self.policy = users, rooms, depth, policy
        self.max_states, self.eventually, self.seed = max_states, eventually, seed
        self.started = time.perf_counter()
        self.root = World(users, rooms, policy, seed=seed, late_after_login=late_after_login)
        self.late_after_login = late_after_login
        self.snapshot = dump(self.root)
        #: symmetry reduction: the renamings that map the scope onto itself (identity included)
        self.symmetries = symmetries(self.root) if symmetry else None
        self.seen = Seen(self.symmetries)
        self.root_key, root_sym = self.seen.key_and_symmetry(self.root)
        self.seen.add_key(self.root_key)
        #: the state graph, for liveness under fairness (:mod:`.liveness`); None when not checked
        ratchet = self.root.d.server.mechanisms.ratchet
        self.graph: Graph | None = Graph(ratchet, parent={self.root_key: None}) if fair else None
        #: under symmetry reduction, the renaming that canonicalised each state's stored world
        self.renaming: dict[int, Symmetry | None] = {self.root_key: root_sym}
        #: operations applied, and the level being expanded
        self.transitions = self.level = 0
        self.progress: Callable[[Progress], None] | None = None
        #: restoration path -> depth of the first (so shortest, breadth-first) trace reaching it
        self.reached: dict[str, int] = {}
        #: whether liveness under fairness was checked on the whole graph
        self.fair_checked = False

    def run(self) -> CheckResult:
        """Level by level, from the initial state."""
        if failed := self.check(load(self.snapshot), ()):
            return failed
        frontier: list[tuple[tuple[Op, ...], int]] = [((), self.root_key)]
        for level in range(self.depth):
            self.level = level
            following: list[tuple[tuple[Op, ...], int]] = []
            for trace, key in frontier:
                if stopped := self.expand(trace, key, following):
                    return stopped
            frontier = following
            if not frontier:
                self.level += 1
                return self.live(exhausted=True)
        self.level = self.depth
        return self.live()

    def expand(
        self, trace: tuple[Op, ...], key: int, following: list[tuple[tuple[Op, ...], int]]
    ) -> CheckResult | None:
        """Apply every operation enabled after ``trace`` (the state of identity ``key``), adding
        the new states to ``following``; the result if the search stops here."""
        parent = _rebuild(self.snapshot, trace)
        parent_bytes = dump(parent)
        enabled = enabled_ops(parent)
        graph = self.graph
        if graph is not None:
            graph.expanded(key, parent, enabled)
        for op in enabled:
            self.transitions += 1
            child, child_trace = load(parent_bytes), (*trace, op)
            try:
                found = apply(child, op)
                child_key, child_sym = self.seen.key_and_symmetry(child) if not found else (0, None)
                new = not found and self.seen.add_key(child_key)
            except Exception as exc:  # a crash of the protocol is a finding, not an accident
                found, new = [_crashed(exc)], False
            if found:
                return self.result(found, [describe(child, o) for o in child_trace], child_trace)
            if graph is not None:
                if new:
                    graph.parent[child_key] = (key, op)
                    self.renaming[child_key] = child_sym
                graph.edges[key].append((op, child_key, _onto(child_sym, self.renaming[child_key])))
            if not new:
                continue
            following.append((child_trace, child_key))
            if self.progress is not None:
                elapsed = time.perf_counter() - self.started
                self.progress(Progress(self.seen.count, self.transitions, self.level, elapsed))
            if failed := self.check(child, child_trace):
                return failed
            if self.max_states is not None and self.seen.count >= self.max_states:
                return self.result(capped=True)
        return None

    def live(self, *, exhausted: bool = False) -> CheckResult:
        """The search ended without a safety violation: liveness under fairness on its graph."""
        graph = self.graph
        if graph is None:
            return self.result(exhausted=exhausted)
        self.fair_checked = True
        if (cycle := fair_cycle(graph)) is not None:
            found = lasso(graph, *cycle)
            who = (found.user, found.room)
            w = _rebuild(self.snapshot, found.ops)
            # the loop comes back to exactly the state it starts from (else identities collided)
            assert exact_key(w) == exact_key(_rebuild(self.snapshot, found.ops[: found.loop]))
            u, r = w.users[found.user], w.rooms[found.room]
            loop = len(found.ops) - found.loop
            violation = Violation(
                "eventually_served",
                f"{u} waits for the key of {r} for ever: in a loop of {loop} step(s) a holder of the key is "
                "online, the holders tick and it syncs whenever they can, yet nobody serves it",
            )
            steps = [describe(w, op) for op in found.ops]
            return self.result(
                [violation], steps, found.ops, loop=found.loop, waiter=who, exhausted=exhausted
            )
        return self.result(exhausted=exhausted)

    def check(self, w: World, trace: tuple[Op, ...]) -> CheckResult | None:
        """The safety properties of a new state, then (on ``w`` itself) the liveness ones."""
        found: list[Violation] = []
        suffix: list[str] = []
        for client in w.d.clients.values():  # coverage: how keys came back after a reset
            if client.reset_marks:
                for got in client.acquired[client.reset_marks[-1] :]:
                    self.reached.setdefault(got.source, len(trace))
        try:
            found = check_state(w)
            if not found and self.eventually:
                found, suffix = check_eventually(w)
        except Exception as exc:  # a crash of the protocol is a finding, not an accident
            found, suffix = [_crashed(exc)], ["settle"]
        return self.result(found, [describe(w, op) for op in trace] + suffix, trace) if found else None

    def result(
        self,
        found: Sequence[Violation] = (),
        steps: Sequence[str] = (),
        ops: Sequence[Op] = (),
        *,
        loop: int | None = None,
        waiter: tuple[int, int] | None = None,
        capped: bool = False,
        exhausted: bool = False,
        interrupted: bool = False,
    ) -> CheckResult:
        """The result as of now: the statistics, and the violations ``found`` with their trace."""
        root = self.root
        violations = tuple(root.name(str(v)) for v in found)
        trace = (_start(root), *(root.name(s) for s in steps)) if found else ()
        elapsed = time.perf_counter() - self.started
        return CheckResult(
            self.users,
            self.rooms,
            self.depth,
            self.policy,
            self.seen.count,
            self.transitions,
            elapsed,
            self.level,
            violations=violations,
            trace=trace,
            ops=tuple(ops) if found else (),
            seed=self.seed,
            late_after_login=self.late_after_login,
            coverage=tuple(sorted(self.reached.items(), key=lambda kv: (kv[1], kv[0]))),
            loop=loop,
            waiter=waiter,
            fair_checked=self.fair_checked,
            capped=capped,
            exhausted=exhausted,
            interrupted=interrupted,
        )
