"""Rooms from a social graph: which users share which DMs and private groups.

Theory of operation
-------------------
:func:`social_graph` builds an undirected networkx graph on the users ``0 .. n_users-1`` (who knows
whom); :func:`generate_rooms` turns it into rooms:

* a DM is an edge of the graph; ``dms`` distinct edges are sampled, so no pair shares two DMs
  (asking for more DMs than the graph has edges is an error);
* a private group is a seed user plus its graph neighbourhood, explored breadth-first in random
  order until the drawn size is reached; under "communities" the members are drawn uniformly inside
  the seed's team (SBM block) instead.  A group whose seed's component or team is too small is
  padded with uniformly random users;
* ``round(unencrypted_fraction * generated rooms)`` generated rooms, chosen at random, are left
  unencrypted; explicit rooms from the scenario are appended unchanged.

Generators.  "random": Erdős–Rényi G(n, p) with ``p = mean_degree / (n - 1)``.  "communities": a
stochastic block model with ``communities`` teams of (almost) equal size over a random permutation
of the users, edge probability ``p_in`` inside a team and ``p_out`` across teams.  It is generated
sparsely by geometric skipping (Batagelj & Brandes 2005, the algorithm of networkx's
``fast_gnp_random_graph``) in O(n + edges), inside each team and once over all pairs for the
cross-team edges, so 100,000 users take seconds; graphs whose expected size exceeds
``MAX_EXPECTED_EDGES`` are refused (for large populations use many small teams: e.g. 1,000 teams of
100 with p_in = 0.1 give a mean degree of 10).  "barabasi_albert" and "watts_strogatz" are
networkx's generators.  "file" reads a social graph from a file, "networkx" takes one of the real
graphs networkx ships (:mod:`sim.inputs.graph_file` has the formats, and how named nodes are
relabelled onto users).  "collegemsg" is who messaged whom in the CollegeMsg trace
(:mod:`sim.inputs.collegemsg`).

User-by-room graphs.  "bipartite" (a file), and "networkx" with Davis's Southern Women, give the
rooms themselves: every room of the graph is a private group of its members, owned by its
lowest-numbered member (``groups`` = 0), or ``groups`` of them drawn at random; DMs are drawn
from the pairs of users who share a room, and the group size keys are not read.

Everything random comes from the ``random.Random`` passed in (the scenario's "topology" stream),
so a run is a function of its seed.  This module knows nothing of keys, presence or the protocol.
Files are read by :mod:`sim.inputs.graph_file`.  May import the standard library, networkx,
:mod:`sim.inputs.graph_file` and :mod:`sim.inputs.collegemsg`, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

import networkx as nx

from .graph_file import NETWORKX_GRAPHS, networkx_graph, read_graph, read_memberships

__all__ = [
    "GENERATORS",
    "MAX_EXPECTED_EDGES",
    "SIZE_DISTRIBUTIONS",
    "RoomSpec",
    "TopologyParams",
    "generate_rooms",
    "memberships",
    "social_graph",
]

GENERATORS = (
    "random",
    "communities",
    "barabasi_albert",
    "watts_strogatz",
    "file",
    "networkx",
    "bipartite",
    "collegemsg",
)
SIZE_DISTRIBUTIONS = ("fixed", "poisson", "geometric", "uniform")
#: Largest social graph generated (expected edges): about 400 MB of networkx graph and 4 s.
MAX_EXPECTED_EDGES = 2_000_000


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """One room to create: its type, members, encryption and owner."""

    t: str
    """Rocket.Chat room type: "p" (private group) or "d" (direct message)."""
    members: tuple[int, ...]
    """Distinct user indices; generated rooms list the owner first."""
    encrypted: bool
    owner: int
    """The user who creates the room (one of ``members``)."""

    def __post_init__(self) -> None:
        if self.t not in ("p", "d"):
            raise ValueError(f"t: room type must be 'p' or 'd' (got {self.t!r})")
        object.__setattr__(self, "members", tuple(self.members))
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"members: a room lists each member once (got {self.members!r})")
        if self.t == "d" and len(self.members) != 2:
            raise ValueError(f"members: a DM has exactly 2 members (got {len(self.members)})")
        if not self.members:
            raise ValueError("members: a room needs at least one member")
        if self.owner not in self.members:
            raise ValueError(f"owner: {self.owner} is not among the members {self.members!r}")


@dataclass(frozen=True, slots=True)
class TopologyParams:
    """How many rooms of which kind, over which social graph; validated at construction."""

    generator: str = "random"
    """"random", "communities", "barabasi_albert", "watts_strogatz" or "file"."""
    dms: int = 0
    """Number of DMs (encrypted or not), each an edge of the social graph."""
    groups: int = 0
    """Number of private groups."""
    group_size: int = 5
    """Mean group size in members, owner included (>= 2)."""
    group_size_dist: str = "fixed"
    """"fixed", "poisson" (2 + Poisson), "geometric" (2 + geometric) or "uniform" (on [2, 2*mean-2]);
    draws are clipped to ``group_size_max`` and to the population, which lowers the mean a little."""
    group_size_max: int = 50
    unencrypted_fraction: float = 0.0
    """Share of the generated rooms left unencrypted, 0..1."""
    communities: int = 10
    """Number of teams (SBM blocks) for "communities"."""
    p_in: float = 0.1
    """"communities": probability of an edge between two members of one team."""
    p_out: float = 0.001
    """"communities": probability of an edge between members of different teams."""
    ba_m: int = 2
    """"barabasi_albert": edges attached from each new user."""
    ws_k: int = 4
    """"watts_strogatz": each user's ring neighbours (k // 2 on each side)."""
    ws_p: float = 0.1
    """"watts_strogatz": rewiring probability."""
    file: str | None = None
    """"file", "bipartite": path of an edge list (.txt, .edges, .csv), GraphML or GML."""
    graph: str | None = None
    """"networkx": the name of one of networkx's real graphs (``graph_file.NETWORKX_GRAPHS``)."""
    mean_degree: float = 8.0
    """"random": expected number of contacts per user."""

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"generator: must be one of {', '.join(GENERATORS)} (got {self.generator!r})")
        for name in ("dms", "groups"):
            _check_int(name, getattr(self, name), 0)
        _check_int("group_size", self.group_size, 2)
        _check_int("group_size_max", self.group_size_max, self.group_size, "group_size")
        if self.group_size_dist not in SIZE_DISTRIBUTIONS:
            raise ValueError(
                f"group_size_dist: must be one of {', '.join(SIZE_DISTRIBUTIONS)} (got {self.group_size_dist!r})"
            )
        for name in ("unencrypted_fraction", "p_in", "p_out", "ws_p"):
            _check_probability(name, getattr(self, name))
        _check_int("communities", self.communities, 1)
        _check_int("ba_m", self.ba_m, 1)
        _check_int("ws_k", self.ws_k, 2)
        if not (isinstance(self.mean_degree, int | float) and 0 <= self.mean_degree < math.inf):
            raise ValueError(f"mean_degree: must be a finite number >= 0 (got {self.mean_degree!r})")
        reads_file = self.generator in ("file", "bipartite")
        if reads_file and not self.file:
            raise ValueError(f"file: is required when generator = {self.generator!r}")
        if not reads_file and self.file:
            raise ValueError(
                f"file: is only read when generator = 'file' or 'bipartite' (generator is {self.generator!r})"
            )
        if self.generator == "networkx" and self.graph not in NETWORKX_GRAPHS:
            raise ValueError(f"graph: must be one of {', '.join(NETWORKX_GRAPHS)} (got {self.graph!r})")
        if self.generator != "networkx" and self.graph:
            raise ValueError(
                f"graph: is only read when generator = 'networkx' (generator is {self.generator!r})"
            )


def _check_int(name: str, value: object, low: int, low_name: str | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        bound = f"{low_name} ({low})" if low_name else str(low)
        raise ValueError(f"{name}: must be an integer >= {bound} (got {value!r})")


def _check_probability(name: str, value: object) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: must be a number between 0 and 1 (got {value!r})")


# --- social graphs ------------------------------------------------------------------------------


def social_graph(params: TopologyParams, n_users: int, rng: Random) -> nx.Graph:
    """The undirected contact graph on users ``0 .. n_users-1``.

    Under "communities", ``graph.graph["blocks"]`` lists each team's members.
    """
    _check_int("n_users", n_users, 1)
    gen = params.generator
    if gen == "random":
        p = params.mean_degree / (n_users - 1) if n_users > 1 else 0.0
        if p > 1:
            raise ValueError(f"mean_degree: {params.mean_degree} exceeds n_users - 1 = {n_users - 1}")
        _check_size(p * n_users * (n_users - 1) / 2, "mean_degree")
        g = nx.Graph()
        g.add_nodes_from(range(n_users))
        g.add_edges_from(_gnp_pairs(n_users, p, rng))
        return g
    if gen == "communities":
        return _communities(params, n_users, rng)
    if gen == "barabasi_albert":
        if params.ba_m >= n_users:
            raise ValueError(f"ba_m: must be < n_users = {n_users} (got {params.ba_m})")
        _check_size(params.ba_m * n_users, "ba_m")
        return nx.barabasi_albert_graph(n_users, params.ba_m, seed=rng)
    if gen == "watts_strogatz":
        if params.ws_k >= n_users:
            raise ValueError(f"ws_k: must be < n_users = {n_users} (got {params.ws_k})")
        _check_size(params.ws_k * n_users / 2, "ws_k")
        return nx.watts_strogatz_graph(n_users, params.ws_k, params.ws_p, seed=rng)
    if gen == "collegemsg":  # who messaged whom in the CollegeMsg trace
        from .collegemsg import STUDENTS, dm_pairs

        if n_users < STUDENTS:
            raise ValueError(
                f"generator: the CollegeMsg trace has {STUDENTS} students, more than {n_users} users"
            )
        g = nx.Graph()
        g.add_nodes_from(range(n_users))
        g.add_edges_from(dm_pairs())
        return g
    if gen == "networkx":
        assert params.graph is not None  # TopologyParams guarantees it
        got = networkx_graph(params.graph, n_users)
        return got if isinstance(got, nx.Graph) else _projection(got, n_users)
    assert params.file is not None  # TopologyParams guarantees it
    if gen == "bipartite":
        return _projection(read_memberships(Path(params.file), n_users), n_users)
    return read_graph(Path(params.file), n_users)


def memberships(params: TopologyParams, n_users: int) -> list[list[int]] | None:
    """The rooms a user-by-room graph gives (each room's members), or None for a social graph."""
    if params.generator == "bipartite":
        assert params.file is not None
        return read_memberships(Path(params.file), n_users)
    if params.generator == "networkx":
        assert params.graph is not None
        got = networkx_graph(params.graph, n_users)
        return None if isinstance(got, nx.Graph) else got
    return None


def _projection(rooms: list[list[int]], n_users: int) -> nx.Graph:
    """Who knows whom in a user-by-room graph: users who share a room."""
    g = nx.Graph(rooms=rooms)
    g.add_nodes_from(range(n_users))
    for members in rooms:
        g.add_edges_from((u, v) for i, u in enumerate(members) for v in members[i + 1 :])
    return g


def _check_size(expected_edges: float, name: str) -> None:
    if expected_edges > MAX_EXPECTED_EDGES:
        raise ValueError(
            f"{name}: the social graph would have about {expected_edges:,.0f} edges, more than "
            f"{MAX_EXPECTED_EDGES:,}; use a sparser graph (for communities: more, smaller teams)"
        )


def _gnp_pairs(n: int, p: float, rng: Random) -> Iterator[tuple[int, int]]:
    """Each pair (v, w), w < v < n, independently with probability p, in O(n + edges).

    Geometric skipping over the pairs in order (Batagelj & Brandes 2005, "Efficient generation of
    large random networks", algorithm G(n, p)).
    """
    if p <= 0.0 or n < 2:
        return
    if p >= 1.0:
        yield from ((v, w) for v in range(1, n) for w in range(v))
        return
    log_q = math.log1p(-p)
    v, w = 1, -1
    while v < n:
        w += 1 + int(math.log(1.0 - rng.random()) / log_q)
        while w >= v and v < n:
            w -= v
            v += 1
        if v < n:
            yield v, w


def _communities(params: TopologyParams, n: int, rng: Random) -> nx.Graph:
    b = params.communities
    if b > n:
        raise ValueError(f"communities: {b} teams for only {n} users")
    base, extra = divmod(n, b)
    sizes = [base + (1 if i < extra else 0) for i in range(b)]
    inside = sum(s * (s - 1) // 2 for s in sizes)
    e_in, e_out = params.p_in * inside, params.p_out * (n * (n - 1) // 2 - inside)
    _check_size(e_in + e_out, "p_in" if e_in >= e_out else "p_out")
    order = list(range(n))
    rng.shuffle(order)
    blocks: list[list[int]] = []
    block_of = [0] * n
    start = 0
    for i, size in enumerate(sizes):
        members = sorted(order[start : start + size])
        start += size
        blocks.append(members)
        for u in members:
            block_of[u] = i
    g = nx.Graph(blocks=blocks)
    g.add_nodes_from(range(n))
    for members in blocks:
        g.add_edges_from((members[v], members[w]) for v, w in _gnp_pairs(len(members), params.p_in, rng))
    if b > 1:  # cross-team pairs: one pass over all pairs at p_out, keeping the cross-team ones
        g.add_edges_from((v, w) for v, w in _gnp_pairs(n, params.p_out, rng) if block_of[v] != block_of[w])
    return g


# --- rooms --------------------------------------------------------------------------------------


def _group_size(params: TopologyParams, cap: int, rng: Random) -> int:
    mean, dist = params.group_size, params.group_size_dist
    extra = mean - 2  # sizes are 2 + a draw with this mean
    if dist == "fixed":
        size = mean
    elif dist == "uniform":
        size = rng.randint(2, 2 * mean - 2)
    elif dist == "geometric":
        q = extra / (1.0 + extra)  # P(X = k) = (1 - q) q^k, mean q / (1 - q) = extra
        size = 2 if q == 0 else 2 + int(math.log(1.0 - rng.random()) / math.log(q))
    elif extra > 200:  # Poisson by normal approximation where exp(-extra) would underflow
        size = 2 + max(0, round(rng.gauss(extra, math.sqrt(extra))))
    else:  # Poisson by sequential inversion
        k, prob, u = 0, math.exp(-extra), rng.random()
        cdf = prob
        while u > cdf and k < cap:
            k += 1
            prob *= extra / k
            cdf += prob
        size = 2 + k
    return min(size, cap)


def _pad(members: list[int], seen: set[int], size: int, n: int, rng: Random) -> None:
    while len(members) < size:
        u = rng.randrange(n)
        if u not in seen:
            seen.add(u)
            members.append(u)


def _neighbourhood(g: nx.Graph, seed: int, size: int, n: int, rng: Random) -> list[int]:
    """``seed`` and users reached breadth-first in random order, padded at random."""
    members, seen = [seed], {seed}
    frontier = deque([seed])
    adj = g.adj

    def take(batch: list[int]) -> None:
        for x in batch:
            if len(members) == size:
                return
            if x not in seen:
                seen.add(x)
                members.append(x)
                frontier.append(x)

    while frontier and len(members) < size:
        nbrs = list(adj[frontier.popleft()])
        # a random subset first (cheap at hubs), then the rest in random order if it fell short
        first = rng.sample(nbrs, min(size - len(members), len(nbrs)))
        take(first)
        if len(members) < size and len(first) < len(nbrs):
            rest = [x for x in nbrs if x not in seen]
            rng.shuffle(rest)
            take(rest)
    _pad(members, seen, size, n, rng)
    return members


def _in_team(
    blocks: list[list[int]], block_of: dict[int, int], seed: int, size: int, n: int, rng: Random
) -> list[int]:
    team = blocks[block_of[seed]]
    members, seen = [seed], {seed}
    for u in rng.sample(team, min(size, len(team))):
        if u not in seen and len(members) < size:
            seen.add(u)
            members.append(u)
    _pad(members, seen, size, n, rng)
    return members


def generate_rooms(
    params: TopologyParams, n_users: int, rng: Random, explicit: Sequence[RoomSpec] = ()
) -> list[RoomSpec]:
    """DMs, then groups, then the ``explicit`` rooms, all over users ``0 .. n_users-1``."""
    _check_int("n_users", n_users, 1)
    for i, spec in enumerate(explicit):
        bad = [m for m in spec.members if not (isinstance(m, int) and 0 <= m < n_users)]
        if bad:
            raise ValueError(f"rooms: explicit room #{i + 1} names user {bad[0]!r}, outside 0..{n_users - 1}")
    given = memberships(params, n_users)
    if given is None and params.groups and params.group_size > n_users:
        raise ValueError(f"group_size: mean size {params.group_size} exceeds the {n_users} users")
    if given is None and params.dms == 0 and params.groups == 0:
        return list(explicit)
    g = social_graph(params, n_users, rng) if given is None else _projection(given, n_users)

    pairs: list[tuple[int, int]] = []
    if params.dms:
        edges = list(g.edges())
        if len(edges) < params.dms:
            raise ValueError(
                f"dms: {params.dms} DMs asked for, but the social graph has only {len(edges)} edges "
                "(each DM is a distinct edge: use a denser graph or fewer DMs)"
            )
        for u, v in rng.sample(edges, params.dms):
            pairs.append((v, u) if rng.random() < 0.5 else (u, v))

    groups: list[list[int]] = []
    if given is not None:  # a user-by-room graph: its rooms (groups = 0: all of them)
        if params.groups > len(given):
            raise ValueError(
                f"groups: {params.groups} groups asked for, but the graph has only {len(given)} rooms"
            )
        chosen = sorted(rng.sample(range(len(given)), params.groups)) if params.groups else range(len(given))
        groups = [list(given[i]) for i in chosen]
    cap = min(params.group_size_max, n_users)
    blocks: list[list[int]] | None = g.graph.get("blocks")
    block_of = {u: i for i, team in enumerate(blocks) for u in team} if blocks else {}
    for _ in range(params.groups if given is None else 0):
        size = _group_size(params, cap, rng)
        seed = rng.randrange(n_users)
        if blocks:
            groups.append(_in_team(blocks, block_of, seed, size, n_users, rng))
        else:
            groups.append(_neighbourhood(g, seed, size, n_users, rng))

    total = len(pairs) + len(groups)
    plain = set(rng.sample(range(total), round(params.unencrypted_fraction * total)))
    rooms = [RoomSpec("d", (u, v), i not in plain, u) for i, (u, v) in enumerate(pairs)]
    rooms += [RoomSpec("p", tuple(m), len(pairs) + j not in plain, m[0]) for j, m in enumerate(groups)]
    return rooms + list(explicit)
