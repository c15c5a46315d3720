"""Liveness under fairness: "a member waiting for a room key, while a holder can serve it, is
eventually served", checked on the state graph the search built, with a lasso when it fails.

Theory of operation.  While :mod:`.explorer` expands a state it records the state's edges (every
enabled operation and the state it leads to, the state itself for an operation that changes
nothing) and two labels (:func:`label`): which members **wait** (a functional member of an
encrypted room lacking its current key, while another member's subscription stores that key on
the server, so a holder could serve it) and which **fair** operations are enabled.  Fair are the
clients' own loops, which a device runs again and again while it is logged in: every user's
``tick`` (the key-distribution loop, RC ``E2ERoom.ts`` ``initiateKeyDistribution``) and
``accept`` (the subscription sync), and under ``ratchet`` ``send`` (a joiner is served by the
next sender's new session).  Logging in, resets, joins and leaves are not fair: a user may stay
offline for ever.

A member waits for ever when the graph has a cycle, reachable from the start, on which it waits
in every state, on which a holder of the room's key is logged in and READY at least once, and
that is **strongly fair**: every fair operation enabled somewhere on the cycle
is taken on it (Streett's condition).  :func:`fair_cycle` finds one as in Emerson and Lei (1987):
the strongly connected components of the waiting states (networkx), and in a component that
fails the condition, the states enabling an operation it never takes are dropped and the rest
searched again.  :func:`lasso` turns it into operations: the shortest prefix to the component's
first-found state, then a loop through one edge of every fair operation and back.

States at the last depth are not expanded and carry no edges: a cycle through them is not seen,
so the check is complete only when the search exhausted its scope.  May import :mod:`protocol`,
:mod:`.world`, :mod:`.membership` and :mod:`.operations`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import networkx as nx

from protocol import ProtocolError
from protocol.crypto import codec

from .membership import holds_key
from .operations import Op
from .world import World

__all__ = ["FAIR", "Graph", "Lasso", "fair_cycle", "label", "lasso", "waiting"]

#: the operations a logged-in client repeats by itself (strong fairness); ``send`` under ratchet
FAIR = ("tick", "accept")


def _kid(wrapped: str | None) -> str | None:
    if not wrapped:
        return None
    try:
        return codec.split_prefixed(wrapped)[0]
    except ProtocolError:
        return None


def waiting(w: World) -> frozenset[tuple[int, int]]:
    """(user, room) of every member waiting for a key a holder could serve."""
    srv, out = w.d.server, set()
    for r, rid in enumerate(w.rooms):
        room = srv.room(rid)
        if not room.encrypted or room.e2e_key_id is None:
            continue
        stored = {u for u, s in room.subscriptions.items() if _kid(s.e2e_key) == room.e2e_key_id}
        for uid in room.subscriptions:
            client = w.d.clients[uid]
            if client.functional and not client.holds_current_key(rid) and stored - {uid}:
                out.add((w.users.index(uid), r))
    return frozenset(out)


def served(w: World) -> frozenset[int]:
    """The rooms whose current key a logged-in, READY member's device holds: it can serve."""
    return frozenset(
        r
        for r, rid in enumerate(w.rooms)
        if any(holds_key(w, uid, rid) for uid in w.d.server.room(rid).subscriptions)
    )


def label(
    w: World, enabled: Iterable[Op]
) -> tuple[frozenset[tuple[int, int]], frozenset[Op], frozenset[int]]:
    """A state's labels: who waits, which fair operations are enabled, which rooms a holder
    online could serve."""
    fair = (*FAIR, "send") if w.d.server.mechanisms.ratchet else FAIR
    return waiting(w), frozenset(op for op in enabled if op.kind in fair), served(w)


@dataclass(slots=True)
class Graph:
    """The explored states (64-bit identities), their edges, labels and shortest-path parents."""

    edges: dict[int, list[tuple[Op, int]]] = field(default_factory=dict)
    waits: dict[int, frozenset[tuple[int, int]]] = field(default_factory=dict)
    fair: dict[int, frozenset[Op]] = field(default_factory=dict)
    online: dict[int, frozenset[int]] = field(default_factory=dict)
    #: state -> (its parent, the operation) on a shortest path from the start; None for the start
    parent: dict[int, tuple[int, Op] | None] = field(default_factory=dict)

    def expanded(self, state: int, w: World, enabled: Sequence[Op]) -> None:
        self.waits[state], self.fair[state], self.online[state] = label(w, enabled)
        self.edges[state] = []

    def prefix(self, state: int) -> list[Op]:
        ops: list[Op] = []
        while (step := self.parent[state]) is not None:
            state, op = step
            ops.append(op)
        return ops[::-1]


def fair_cycle(g: Graph, who: tuple[int, int]) -> tuple[set[int], frozenset[Op]] | None:
    """A strongly fair cycle on which ``who`` waits in every state and a holder of the room's key
    is online in some state: its states and the fair operations it must take, or None."""
    return _fair(g, {s for s, w in g.waits.items() if who in w}, who[1])


def _fair(g: Graph, nodes: set[int], room: int) -> tuple[set[int], frozenset[Op]] | None:
    sub = nx.DiGraph()
    sub.add_nodes_from(nodes)
    sub.add_edges_from((s, t) for s in nodes for _, t in g.edges[s] if t in nodes)
    for scc in sorted(nx.strongly_connected_components(sub), key=min):
        if len(scc) == 1 and not sub.has_edge(next(iter(scc)), next(iter(scc))):
            continue  # a single state without a self-loop is no cycle
        if not any(room in g.online[s] for s in scc):
            continue  # no holder ever online: nobody can serve, and nobody is to blame
        taken = frozenset(op for s in scc for op, t in g.edges[s] if t in scc)
        missing = frozenset().union(*(g.fair[s] for s in scc)) - taken
        if not missing:
            return scc, frozenset(op for op in taken if any(op in g.fair[s] for s in scc))
        rest = {s for s in scc if not g.fair[s] & missing}
        if rest and (found := _fair(g, rest, room)) is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class Lasso:
    """A run that waits for ever: ``ops[:loop]`` leads to the loop ``ops[loop:]``, repeated."""

    user: int
    room: int
    ops: tuple[Op, ...]
    loop: int


def lasso(g: Graph, who: tuple[int, int], scc: set[int], required: frozenset[Op]) -> Lasso:
    """The shortest prefix to a state of ``scc`` (the one nearest the start), then a loop that
    takes an edge of every ``required`` operation inside ``scc`` and comes back."""
    entry = min(scc, key=lambda s: (len(g.prefix(s)), s))
    loop: list[Op] = []
    here = entry
    if who[1] not in g.online[entry]:  # through a state in which a holder is online
        loop, here = _path(g, scc, here, lambda s, t, o: who[1] in g.online[t])
    for op in sorted(required, key=lambda o: (o.kind, o.user, o.room or 0)):
        path, here = _path(g, scc, here, lambda s, t, o, want=op: o == want)
        loop += path
    if not loop or here != entry:
        path, here = _path(g, scc, here, lambda s, t, o: t == entry)
        loop += path
    return Lasso(who[0], who[1], (*g.prefix(entry), *loop), len(g.prefix(entry)))


def _path(g: Graph, scc: set[int], start: int, done: object) -> tuple[list[Op], int]:
    """Breadth-first inside ``scc`` from ``start`` to the first edge ``done(s, t, op)`` accepts,
    that edge included: its operations and where it ends."""
    assert callable(done)
    back: dict[int, tuple[int, Op] | None] = {start: None}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        for op, t in g.edges[s]:
            if t not in scc:
                continue
            if done(s, t, op):
                ops = [op]
                while (step := back[s]) is not None:
                    s, prev = step
                    ops.append(prev)
                return ops[::-1], t
            if t not in back:
                back[t] = (s, op)
                queue.append(t)
    raise AssertionError("a strongly connected component is connected")
