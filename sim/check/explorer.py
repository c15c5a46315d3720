"""The ``keysim check`` search: breadth-first, over every interleaving within a small scope.

Theory of operation.  :func:`explore` applies every enabled operation (:mod:`.operations`) to
every state, **breadth-first**, so the first violation found has a shortest trace; it stops there
or after ``max_states`` distinct states (:class:`~.identity.Seen`).  A new state is checked for
safety, then (on itself) for liveness (:mod:`.properties`); a crash of the protocol is a finding.

A state is stored as its trace and rebuilt by replaying it from a snapshot of the initial world
(:func:`~.world.dump`); entropy sources are part of the snapshot, so a state is a function of its
trace, and any process can rebuild it: expanding and checking go to forked workers in chunks,
their results are taken in order (:class:`_Search`).  :class:`CheckResult` carries the statistics and the shortest failing trace as readable
steps.  May import :mod:`protocol` and every other module of the checker.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from protocol import POLICIES, Violation

from .identity import Seen, Symmetry, exact_key, symmetries
from .liveness import Graph, Labels, fair_cycle, labels, lasso
from .operations import Op, apply, describe, enabled_ops
from .properties import check_eventually, check_state
from .world import World, dump, load

__all__ = ["CheckResult", "Progress", "compare", "explore"]

T = TypeVar("T")


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
    #: the scope's room plan (:data:`sim.check.world.PLANS`)
    plan: str = "mixed"
    #: users u0 .. u{phones-1} also have a phone
    phones: int = 0
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
    #: the renamings of users and rooms the search merged states by (1: no symmetry reduction)
    symmetries: int = 1
    #: processes that expanded and checked states
    workers: int = 1

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def complete(self) -> bool:
        """Whether every trace up to ``depth`` was explored (no cap, no interruption)."""
        return not self.capped and not self.interrupted

    @property
    def plan_label(self) -> str:
        parts = [self.plan] if self.plan != "mixed" else []
        parts += [f"{self.phones} phone{'s' if self.phones > 1 else ''}"] if self.phones else []
        return f" ({', '.join(parts)})" if parts else ""

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def report(self, narrated: Sequence[str] | None = None) -> str:
        """The statistics, and on a violation the shortest trace: as numbered steps, or as
        ``narrated`` (:func:`sim.check.narrate.listing`: each step with what it moved)."""
        lines = [
            f"keysim check: policy {self.policy}, {self.users} users, {self.rooms} rooms{self.plan_label},"
            f" depth {self.depth}",
            f"  states explored  {self.states:,}",
            f"  transitions      {self.transitions:,}",
            f"  states/second    {self.states_per_second:,.0f}",
            f"  elapsed          {self.elapsed_s:.2f} s",
            f"  depth completed  {self.depth_done}{' (no new state beyond it)' if self.exhausted else ''}",
        ]
        if self.symmetries > 1:
            lines.append(
                f"  symmetry reduction  {self.symmetries} renamings of users and rooms, joining orders merged"
            )
        if self.workers > 1:
            lines.append(f"  workers          {self.workers}")
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


def compare(before: CheckResult, after: CheckResult) -> str:
    """``keysim check --stats``: one scope searched without (``before``) and with (``after``)
    symmetry reduction, as a table."""
    scope = f"{after.users}x{after.rooms}{after.plan_label} d{after.depth} {after.policy}"
    ratio = before.states / after.states if after.states else float("nan")
    speed = before.elapsed_s / after.elapsed_s if after.elapsed_s > 0 else float("nan")
    rows = [
        ("scope", "symmetry", "states", "transitions", "time s", "states/s", "complete"),
        (scope, "off", *_figures(before)),
        (scope, f"{after.symmetries} renamings", *_figures(after)),
    ]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(n) if k < 2 else c.rjust(n) for k, (c, n) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.append(
        f"states {ratio:.2f}x fewer, time {speed:.2f}x shorter; the reduction is at most {after.symmetries}x"
    )
    return "\n".join(lines)


def _figures(r: CheckResult) -> tuple[str, ...]:
    done = "yes" if r.complete else "no"
    return f"{r.states:,}", f"{r.transitions:,}", f"{r.elapsed_s:.2f}", f"{r.states_per_second:,.0f}", done


def _start(w: World) -> str:
    def tags(i: int, uid: str) -> str:
        has = [t for t, yes in (("TOTP", uid in w.totp_secret), ("phone", w.phone(i) is not None)) if yes]
        return f" ({', '.join(has)})" if has else ""

    users = ", ".join(w.names[u] + tags(i, u) for i, u in enumerate(w.users))
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
    workers: int = 1,
    plan: str = "mixed",
    phones: int = 0,
) -> CheckResult:
    """Breadth-first search of every interleaving of :data:`OPERATIONS` up to ``depth`` steps;
    stops at the first violation (a shortest trace) or after ``max_states`` distinct states.
    ``progress`` is called after every new state; Ctrl-C (KeyboardInterrupt) stops the search and
    returns what it found so far, marked ``interrupted``.  ``late_after_login`` widens the scope:
    a late suggestion for a reset user's old key pair may also arrive after its next login.
    ``fair``: once no safety violation is found, check liveness under fairness on the state graph
    (:mod:`.liveness`): a member waiting for a key is eventually served.  ``symmetry``: one
    state per renaming of interchangeable users and rooms (:mod:`.identity`).  ``workers``:
    processes that expand and check states (forked; the result is the same for any number).
    ``plan``: the scope's rooms and roles (:data:`sim.check.world.PLANS`); ``phones``: users
    u0 .. u{phones-1} also have a phone (:class:`~.world.World`)."""
    if policy not in POLICIES:
        raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
    if depth < 0:
        raise ValueError(f"depth: must be >= 0, got {depth}")
    if max_states is not None and max_states < 1:
        raise ValueError(f"max-states: must be >= 1, got {max_states}")
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
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
        workers=workers,
        plan=plan,
        phones=phones,
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


#: frontier states a worker expands at a time
CHUNK = 16


@dataclass(frozen=True, slots=True)
class _Work:
    """What expanding and checking states needs: the initial world and the scope's options."""

    snapshot: bytes
    #: computes identities (its set of seen states is the search's business, not a worker's)
    identity: Seen
    fair: bool
    ratchet: bool
    eventually: bool


#: the search in progress: set before the workers fork, so they inherit it (planted faults too)
_WORK: _Work | None = None


class _Child(NamedTuple):
    """An operation applied to an expanded state: the child's identity and renaming, or the
    violations the step showed and the trace as readable steps."""

    op: Op
    key: int = 0
    sym: Symmetry | None = None
    found: tuple[Violation, ...] = ()
    steps: tuple[str, ...] = ()


def _expand(traces: Sequence[tuple[Op, ...]]) -> list[tuple[Labels | None, list[_Child]]]:
    """Rebuild each state and apply every enabled operation to a copy; stops after a step that
    shows a violation (the search ends there)."""
    work = _WORK
    assert work is not None
    out = []
    for trace in traces:
        parent = _rebuild(work.snapshot, trace)
        parent_bytes, enabled = dump(parent), enabled_ops(parent)
        children = []
        for op in enabled:
            child = load(parent_bytes)
            try:
                found = apply(child, op)
                if not found:
                    children.append(_Child(op, *work.identity.key_and_symmetry(child)))
                    continue
            except Exception as exc:  # a crash of the protocol is a finding, not an accident
                found = [_crashed(exc)]
            children.append(
                _Child(op, found=tuple(found), steps=tuple(describe(child, o) for o in (*trace, op)))
            )
            break
        out.append((labels(parent, enabled, work.ratchet) if work.fair else None, children))
        if children and children[-1].found:
            break
    return out


def _check(
    traces: Sequence[tuple[Op, ...]],
) -> list[tuple[dict[str, int], tuple[Violation, ...], tuple[str, ...]]]:
    """For each new state: the restoration paths it reached (coverage), then its safety
    properties and (on the rebuilt world itself) its liveness ones; stops at a violation."""
    work = _WORK
    assert work is not None
    out = []
    for trace in traces:
        w = _rebuild(work.snapshot, trace)
        reached: dict[str, int] = {}
        for uid in w.users:  # coverage: how keys came back after a reset
            for _, client in w.devices(uid):
                for got in client.acquired[client.reset_marks[-1] :] if client.reset_marks else ():
                    reached.setdefault(got.source, len(trace))
        suffix: list[str] = []
        try:
            found = check_state(w)
            if not found and work.eventually:
                found, suffix = check_eventually(w)
        except Exception as exc:  # a crash of the protocol is a finding, not an accident
            found, suffix = [_crashed(exc)], ["settle"]
        steps = tuple(describe(w, op) for op in trace) + tuple(suffix) if found else ()
        out.append((reached, tuple(found), steps))
        if found:
            break
    return out


class _Now(Generic[T]):
    """A task run in the search's own process, when it is asked for (one worker)."""

    def __init__(self, fn: Callable[[Any], T], arg: Any) -> None:
        self._fn, self._arg = fn, arg

    def ready(self) -> bool:
        return True

    def get(self) -> T:
        return self._fn(self._arg)


def _quiet() -> None:
    """A worker leaves Ctrl-C to the search, which stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Search:
    """One search: its scope, the initial world and its snapshot, the states seen, the counters.

    Level by level, each level in chunks of :data:`CHUNK` states: a worker expands a chunk
    (:func:`_expand`: the children's identities), the search keeps the new ones in order, and a
    worker checks them (:func:`_check`).  With ``workers`` > 1 the chunks go to a pool of
    forked processes a few ahead; results are taken in order, so the states, the counters and
    the first violation are those of one worker."""

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
        workers: int = 1,
        plan: str = "mixed",
        phones: int = 0,
    ) -> None:
        self.users, self.rooms, self.depth, self.policy = users, rooms, depth, policy
        self.max_states, self.eventually, self.seed = max_states, eventually, seed
        self.workers = workers
        self.started = time.perf_counter()
        self.root = World(
            users, rooms, policy, seed=seed, late_after_login=late_after_login, plan=plan, phones=phones
        )
        self.late_after_login, self.plan, self.phones = late_after_login, plan, phones
        self.snapshot = dump(self.root)
        #: symmetry reduction: the renamings that map the scope onto itself (identity included)
        self.symmetries = symmetries(self.root) if symmetry else None
        self.seen = Seen(self.symmetries)
        self.root_key, root_sym = self.seen.key_and_symmetry(self.root)
        self.seen.add_key(self.root_key)
        #: the state graph, for liveness under fairness (:mod:`.liveness`); None when not checked
        ratchet = self.root.d.server.mechanisms.ratchet
        self.graph: Graph | None = Graph(ratchet, parent={self.root_key: None}) if fair else None
        self.work = _Work(self.snapshot, Seen(self.symmetries), fair, ratchet, eventually)
        #: under symmetry reduction, the renaming that canonicalised each state's stored world
        self.renaming: dict[int, Symmetry | None] = {self.root_key: root_sym}
        #: operations applied, and the level being expanded
        self.transitions = self.level = 0
        self.progress: Callable[[Progress], None] | None = None
        #: restoration path -> depth of the first (so shortest, breadth-first) trace reaching it
        self.reached: dict[str, int] = {}
        #: whether liveness under fairness was checked on the whole graph
        self.fair_checked = False
        #: one object per operation: the traces and edges of a large graph share them
        self.ops: dict[Op, Op] = {}
        self.pool: Any = None

    def run(self) -> CheckResult:
        """The search, in this process or with a pool of workers."""
        global _WORK
        _WORK = self.work
        if self.workers > 1:
            self.pool = multiprocessing.get_context("fork").Pool(self.workers, initializer=_quiet)
        try:
            return self._levels()
        finally:
            if self.pool is not None:
                self.pool.terminate()
                self.pool.join()
            _WORK = None

    def submit(self, fn: Callable[[Any], T], arg: Any) -> Any:
        return _Now(fn, arg) if self.pool is None else self.pool.apply_async(fn, (arg,))

    def _levels(self) -> CheckResult:
        """Level by level, from the initial state."""
        ((reached, found, steps),) = _check([()])
        self.reached.update(reached)
        if found:
            return self.result(found, steps)
        frontier: list[tuple[tuple[Op, ...], int]] = [((), self.root_key)]
        for level in range(self.depth):
            self.level = level
            following: list[tuple[tuple[Op, ...], int]] = []
            if stopped := self.expand(frontier, following):
                return stopped
            frontier = following
            if not frontier:
                self.level += 1
                return self.live(exhausted=True)
        self.level = self.depth
        return self.live()

    def expand(
        self, frontier: list[tuple[tuple[Op, ...], int]], following: list[tuple[tuple[Op, ...], int]]
    ) -> CheckResult | None:
        """Expand the states of ``frontier`` (trace, identity), adding the new ones to
        ``following``; the result if the search stops in this level."""
        chunks = [frontier[k : k + CHUNK] for k in range(0, len(frontier), CHUNK)]
        ahead: deque[Any] = deque()
        checks: deque[tuple[Any, list[tuple[tuple[Op, ...], tuple[int, int]]]]] = deque()
        graph, submitted = self.graph, 0
        for chunk in chunks:
            while submitted < len(chunks) and len(ahead) < 2 * self.workers:
                ahead.append(self.submit(_expand, [trace for trace, _ in chunks[submitted]]))
                submitted += 1
            #: the new states, each with the counters (states, transitions) when it was found
            batch: list[tuple[tuple[Op, ...], tuple[int, int]]] = []
            stop: tuple[_Child, tuple[Op, ...], tuple[int, int]] | None = None
            for (trace, key), (labelled, children) in zip(chunk, ahead.popleft().get(), strict=False):
                if graph is not None and labelled is not None:
                    graph.label(key, labelled)
                for child in children:
                    self.transitions += 1
                    op = self.ops.setdefault(child.op, child.op)
                    child_trace = (*trace, op)
                    if child.found:
                        stop = child, child_trace, (self.seen.count, self.transitions)
                        break
                    new = self.seen.add_key(child.key)
                    if graph is not None:
                        if new:
                            graph.parent[child.key] = (key, op)
                            self.renaming[child.key] = child.sym
                        graph.edges[key].append((op, child.key, _onto(child.sym, self.renaming[child.key])))
                    if not new:
                        continue
                    following.append((child_trace, child.key))
                    batch.append((child_trace, (self.seen.count, self.transitions)))
                    if self.progress is not None:
                        elapsed = time.perf_counter() - self.started
                        self.progress(Progress(self.seen.count, self.transitions, self.level, elapsed))
                    if self.max_states is not None and self.seen.count >= self.max_states:
                        stop = child, (), (self.seen.count, self.transitions)
                        break
                if stop is not None:
                    break
            if batch:
                checks.append((self.submit(_check, [trace for trace, _ in batch]), batch))
            if failed := self.drain(checks, block=stop is not None):
                return failed
            if stop is not None:
                child, child_trace, (states, transitions) = stop
                if child.found:
                    return self.result(child.found, child.steps, child_trace, counters=(states, transitions))
                return self.result(capped=True, counters=(states, transitions))
        return self.drain(checks, block=True)

    def drain(
        self, checks: deque[tuple[Any, list[tuple[tuple[Op, ...], tuple[int, int]]]]], *, block: bool
    ) -> CheckResult | None:
        """Take the checks done (all of them if ``block``), in order; the first violation's result."""
        while checks and (block or checks[0][0].ready()):
            future, batch = checks.popleft()
            for (trace, counters), (reached, found, steps) in zip(batch, future.get(), strict=False):
                for source, depth in reached.items():
                    self.reached.setdefault(source, depth)
                if found:
                    return self.result(found, steps, trace, counters=counters)
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
        counters: tuple[int, int] | None = None,
    ) -> CheckResult:
        """The result as of now, or with the ``counters`` (states, transitions) as they were
        when the search found what stops it: the statistics, and the violations ``found`` with
        their trace."""
        root = self.root
        states, transitions = counters or (self.seen.count, self.transitions)
        violations = tuple(root.name(str(v)) for v in found)
        trace = (_start(root), *(root.name(s) for s in steps)) if found else ()
        elapsed = time.perf_counter() - self.started
        return CheckResult(
            self.users,
            self.rooms,
            self.depth,
            self.policy,
            states,
            transitions,
            elapsed,
            self.level,
            violations=violations,
            trace=trace,
            ops=tuple(ops) if found else (),
            seed=self.seed,
            late_after_login=self.late_after_login,
            plan=self.plan,
            phones=self.phones,
            coverage=tuple(sorted(self.reached.items(), key=lambda kv: (kv[1], kv[0]))),
            loop=loop,
            waiter=waiter,
            fair_checked=self.fair_checked,
            symmetries=len(self.symmetries) if self.symmetries is not None else 1,
            workers=self.workers,
            capped=capped,
            exhausted=exhausted,
            interrupted=interrupted,
        )
