"""Liveness under fairness: "a member waiting for a room key, while a holder is online again and
again and ticks, is eventually served", checked on the state graph the search built, with a
lasso (a prefix, then a loop repeated for ever) when it fails.

Theory of operation.  While :mod:`.explorer` expands a state it records the state's edges (every
enabled operation, the state it leads to, and under symmetry reduction the renaming between the
child and the stored world of that state: :class:`~.identity.Symmetry`) and its labels
(:func:`labels`): which members **wait** (a functional member of an encrypted room lacking its
current key while another member's subscription stores that key, so a holder could serve it),
which rooms have a holder online (logged in, READY, holding the key), and who could do what.

The property is about one waiting member ``u`` of room ``r`` at a time, so the graph searched is
the product of states and waiters: a node is (state, (u, r)) with ``u`` waiting there, an edge
follows ``u`` through the renaming.  Fair (strong fairness: taken on the loop whenever enabled on
it) are what the clients repeat by themselves while logged in: ``u``'s own ``accept`` (the
subscription sync), a ``tick`` of a holder of ``r`` (RC ``E2ERoom.ts``'s key-distribution loop)
and under ``ratchet`` a holder's ``send`` in ``r`` (a joiner is served by the next sender's new
session).  Logging in, resets, joins and leaves are not fair: a user may stay offline for ever,
but the loop must have a holder online in at least one of its states.

:func:`fair_cycle` finds a strongly fair component as in Emerson and Lei (1987): the strongly
connected components of the product (networkx); in one that fails the condition the nodes
enabling an operation class it never takes are dropped and the rest searched again.
:func:`lasso` makes it concrete: the shortest prefix to the component's nearest state, then a
loop through one edge of every fair class and back, followed round again (renamed) until the
renamings compose to the identity, so that the loop ends in exactly the state it began in.

States at the last depth are not expanded and carry no edges: a cycle through them is not seen,
so the check is complete only when the search exhausted its scope.  May import :mod:`protocol`,
:mod:`.world`, :mod:`.membership`, :mod:`.operations` and :mod:`.identity`.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import networkx as nx

from .identity import Symmetry
from .membership import holds_key, kid_of
from .operations import Op
from .world import World

__all__ = ["Graph", "Labels", "Lasso", "fair_cycle", "labels", "lasso", "served", "waiting"]

#: a waiting member: (user, room); it waits on its web client
Waiter = tuple[int, int]
#: in :func:`holders`, u{i}'s phone is device ``PHONE + i`` (its web client is ``i``)
PHONE = 1 << 8
#: a node of the product graph: (state, waiter)
Node = tuple[int, Waiter]


def waiting(w: World) -> frozenset[Waiter]:
    """(user, room) of every member waiting for a key a holder could serve."""
    srv, out = w.d.server, set()
    for r, rid in enumerate(w.rooms):
        room = srv.room(rid)
        if not room.encrypted or room.e2e_key_id is None:
            continue
        stored = {u for u, s in room.subscriptions.items() if kid_of(s.e2e_key) == room.e2e_key_id}
        for uid in room.subscriptions:
            client = w.d.clients[uid]
            if client.functional and not client.holds_current_key(rid) and stored - {uid}:
                out.add((w.users.index(uid), r))
    return frozenset(out)


def holders(w: World) -> tuple[frozenset[int], ...]:
    """For each room, the devices (logged in, READY) that hold its current key: u{i}'s web
    client as ``i``, its phone as ``PHONE + i``."""
    srv = w.d.server
    out = []
    for rid in w.rooms:
        subs = srv.room(rid).subscriptions
        held = {i for i, uid in enumerate(w.users) if uid in subs and holds_key(w, uid, rid)}
        held |= {
            PHONE + i
            for i, uid in enumerate(w.users)
            if uid in subs and (p := w.phone(i)) is not None and p.functional and p.holds_current_key(rid)
        }
        out.append(frozenset(held))
    return tuple(out)


def served(w: World) -> frozenset[int]:
    """The rooms a holder online could serve."""
    return frozenset(r for r, held in enumerate(holders(w)) if held)


def _fair_class(op: Op, who: Waiter, held: tuple[frozenset[int], ...], ratchet: bool) -> str | None:
    """Which fair operation ``op`` is for waiter ``who``, or None."""
    u, r = who
    if op.kind == "accept" and op.user == u:
        return "accept"
    if (op.kind == "tick" and op.user in held[r]) or (op.kind == "phone_tick" and PHONE + op.user in held[r]):
        return "tick"  # a holder's phone ticks too
    if ratchet and op.kind == "send" and op.room == r and op.user in held[r]:
        return "send"
    return None


#: what liveness needs of an expanded state: who waits, who holds each room's key, and for
#: each waiter the fair classes enabled for it
Labels = tuple[frozenset[Waiter], tuple[frozenset[int], ...], dict[Waiter, frozenset[str]]]


def labels(w: World, enabled: Sequence[Op], ratchet: bool) -> Labels:
    """The labels of a state whose stored world is ``w``, with ``enabled`` operations."""
    waits, held = waiting(w), holders(w)
    fair = {
        who: frozenset(c for op in enabled if (c := _fair_class(op, who, held, ratchet))) for who in waits
    }
    return waits, held, fair


@dataclass(slots=True)
class Graph:
    """The expanded states (64-bit identities): edges, labels, shortest-path parents."""

    ratchet: bool = False
    #: state -> (operation, the state it leads to, renaming of the child onto that state's
    #: stored world, None for none)
    edges: dict[int, list[tuple[Op, int, Symmetry | None]]] = field(default_factory=dict)
    waits: dict[int, frozenset[Waiter]] = field(default_factory=dict)
    held: dict[int, tuple[frozenset[int], ...]] = field(default_factory=dict)
    #: state -> waiter -> the fair classes enabled for it
    fair: dict[int, dict[Waiter, frozenset[str]]] = field(default_factory=dict)
    #: state -> (its parent, the operation) on a shortest path from the start; None for the start
    parent: dict[int, tuple[int, Op] | None] = field(default_factory=dict)

    def label(self, state: int, labels: Labels) -> None:
        """Record that ``state`` is expanded, with its :func:`labels`; its edges follow."""
        self.waits[state], self.held[state], self.fair[state] = labels
        self.edges[state] = []

    def prefix(self, state: int) -> list[Op]:
        ops: list[Op] = []
        while (step := self.parent[state]) is not None:
            state, op = step
            ops.append(op)
        return ops[::-1]

    def successors(self, node: Node) -> list[tuple[Op, Node, str | None]]:
        """The product edges from ``node``: the operation, the next node, its fair class."""
        s, who = node
        out = []
        for op, t, sym in self.edges[s]:
            if t not in self.edges:
                continue  # at the last depth: not expanded, so not labelled
            after = who if sym is None else (sym.users[who[0]], sym.rooms[who[1]])
            if after in self.waits[t]:
                out.append((op, (t, after), _fair_class(op, who, self.held[s], self.ratchet)))
        return out


def fair_cycle(g: Graph) -> tuple[set[Node], frozenset[str]] | None:
    """A strongly fair cycle of the product on which a member waits throughout and a holder of
    its room is online somewhere: its nodes and the fair classes it must take; or None."""
    return _fair(g, {(s, who) for s, waits in g.waits.items() for who in waits})


def _fair(g: Graph, nodes: set[Node]) -> tuple[set[Node], frozenset[str]] | None:
    sub = nx.DiGraph()
    sub.add_nodes_from(nodes)
    sub.add_edges_from((n, m) for n in nodes for _, m, _ in g.successors(n) if m in nodes)
    for scc in sorted(nx.strongly_connected_components(sub), key=min):
        some = next(iter(scc))
        if len(scc) == 1 and not sub.has_edge(some, some):
            continue  # a single node without a self-loop is no cycle
        if not any(g.held[s][who[1]] for s, who in scc):
            continue  # no holder ever online: nobody could serve
        taken = frozenset(c for n in scc for _, m, c in g.successors(n) if m in scc and c is not None)
        required = frozenset().union(*(g.fair[s][who] for s, who in scc))
        if required <= taken:
            return scc, required
        missing = required - taken
        rest = {(s, who) for s, who in scc if not g.fair[s][who] & missing}
        if rest and (found := _fair(g, rest)) is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class Lasso:
    """A run that waits for ever: ``ops[:loop]`` leads to the loop ``ops[loop:]``, repeated; the
    member waiting is ``user`` of ``room`` (in the concrete world's indices)."""

    user: int
    room: int
    ops: tuple[Op, ...]
    loop: int


def lasso(g: Graph, scc: set[Node], required: frozenset[str]) -> Lasso:
    """The lasso of a fair component: see the module's docstring."""
    entry = min(scc, key=lambda n: (len(g.prefix(n[0])), n))
    steps: list[tuple[Op, Node]] = []
    here = entry
    if not g.held[entry[0]][entry[1][1]]:  # through a node with a holder online
        path, here = _path(g, scc, here, lambda c, m: bool(g.held[m[0]][m[1][1]]))
        steps += path
    for wanted in sorted(required):
        path, here = _path(g, scc, here, functools.partial(_is_class, wanted))
        steps += path
    if not steps or here != entry:
        path, here = _path(g, scc, here, lambda c, m: m == entry)
        steps += path
    # concrete: ``alias`` maps the stored world of the current node onto the concrete world
    prefix = g.prefix(entry[0])
    loop: list[Op] = []
    alias: Symmetry | None = None
    for _ in range(720):  # at most |G| rounds, |G| <= 6!
        node = entry
        for op, following in steps:
            loop.append(_rename(op, alias))
            sym = next(sym for o, t, sym in g.edges[node[0]] if o == op and t == following[0])
            if sym is not None:  # the next stored world's j is this world's sym^-1(j)
                inverse = sym.inverse()
                alias = inverse if alias is None else inverse.then(alias)
            node = following
        if alias is None or alias.trivial:
            break
    user, room = entry[1]
    return Lasso(user, room, (*prefix, *loop), len(prefix))


def _is_class(wanted: str, c: str | None, m: Node) -> bool:
    return c == wanted


def _rename(op: Op, alias: Symmetry | None) -> Op:
    if alias is None:
        return op
    return Op(op.kind, alias.users[op.user], None if op.room is None else alias.rooms[op.room])


def _path(
    g: Graph, scc: set[Node], start: Node, done: Callable[[str | None, Node], bool]
) -> tuple[list[tuple[Op, Node]], Node]:
    """Breadth-first inside ``scc`` from ``start`` to the first edge ``done(class, next)``
    accepts, that edge included: its steps (operation, node reached) and where it ends."""
    back: dict[Node, tuple[Node, Op, Node] | None] = {start: None}
    queue = deque([start])
    while queue:
        n = queue.popleft()
        for op, m, c in g.successors(n):
            if m not in scc:
                continue
            if done(c, m):
                steps = [(op, m)]
                while (step := back[n]) is not None:
                    prev, prev_op, _ = step
                    steps.append((prev_op, n))
                    n = prev
                return steps[::-1], m
            if m not in back:
                back[m] = (n, op, m)
                queue.append(m)
    raise AssertionError("a strongly connected component is connected")
