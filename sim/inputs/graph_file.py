"""Graphs from a file or from networkx's collection of real ones.

Social graphs (``rooms.generator = "file"``): an edge list (``.txt``/``.edges``: "u v" per line,
``#`` comments, further columns ignored), a CSV edge list (``.csv``: the first row is a header,
then "u,v" per row), GraphML (``.graphml``) or GML (``.gml``, nodes named by their ``label``).

User-by-room graphs (``rooms.generator = "bipartite"``): the same formats, each edge a membership
"user room" (a CSV's header names the two columns, e.g. ``user,room``); in GraphML and GML the
nodes carry networkx's ``bipartite`` attribute, 0 for users and 1 for rooms.

Node names.  When every user node is written ``u3`` or ``3``, it is user 3.  Otherwise nodes are
*relabelled*: the k-th distinct user name, in the file's order (a graph's node order), is user
k, so a graph of named people (``"Evelyn Jefferson"``, ``"Medici"``) maps onto users 0..m-1.
Either way a graph may name no more users than the scenario has.  Self-loops are dropped and
every user exists even if isolated.

networkx's real graphs (``rooms.generator = "networkx"``, ``rooms.graph``): Zachary's karate club
(34 people), the characters of *Les Misérables* (77, co-appearance), the Florentine families (15,
marriages: Padgett 1994), and Davis's Southern Women (18 women by the 14 social events they
attended, Davis, Gardner and Gardner 1941), which is a user-by-room graph: each event is a room.

A bad file is a ``ValueError`` that names the ``file`` (or ``graph``) parameter of
:class:`~sim.inputs.topology.TopologyParams` and the line or node at fault.  May import the
standard library and networkx, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path

import networkx as nx

__all__ = ["NETWORKX_GRAPHS", "networkx_graph", "read_graph", "read_memberships"]

_USER_NAME = re.compile(r"u?(\d+)")
SUFFIXES = (".txt", ".edges", ".csv", ".graphml", ".gml")

#: networkx's real graphs by scenario name
NETWORKX_GRAPHS: dict[str, Callable[[], nx.Graph]] = {
    "karate_club": nx.karate_club_graph,
    "les_miserables": nx.les_miserables_graph,
    "florentine_families": nx.florentine_families_graph,
    "davis_southern_women": nx.davis_southern_women_graph,
}


def _labels(names: Iterable[tuple[str, str]], n_users: int, param: str = "file") -> dict[str, int]:
    """Each user name's user number (``names``: each name with where it appears): its own number
    if every name is one, else its rank in first-appearance order."""
    where: dict[str, str] = {}
    for name, at in names:
        where.setdefault(str(name).strip(), at)
    numbered = {name: _USER_NAME.fullmatch(name) for name in where}
    if all(numbered.values()):
        out = {name: int(m.group(1)) for name, m in numbered.items() if m is not None}
        for name, user in out.items():
            if user >= n_users:
                raise ValueError(
                    f"{param}: {where[name]}: user {name!r} is outside the {n_users} users of the scenario"
                )
        return out
    if any(numbered.values()):
        number = next(name for name, m in numbered.items() if m)
        named = next(name for name, m in numbered.items() if not m)
        raise ValueError(
            f"{param}: {where[named]}: names users both by number ({number!r}, {where[number]}) and by "
            f"name ({named!r}): write every user one way"
        )
    if len(where) > n_users:
        extra = list(where)[n_users]
        raise ValueError(
            f"{param}: {where[extra]}: names {len(where)} users, more than the {n_users} users of the scenario"
        )
    return {name: k for k, name in enumerate(where)}


def _pairs(path: Path) -> list[tuple[str, str, str]]:
    """(first, second, where) per edge of an edge list or a CSV file."""
    out = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = csv.reader(f)
            next(rows, None)  # the header
            for lineno, row in enumerate(rows, start=2):
                fields = [c.strip() for c in row]
                if not any(fields):
                    continue
                if len(fields) < 2 or not fields[0] or not fields[1]:
                    raise ValueError(f"file: {path}:{lineno}: expected two columns, got {row!r}")
                out.append((fields[0], fields[1], f"{path}:{lineno}"))
        return out
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"file: {path}:{lineno}: expected 'u v', got {line.strip()!r}")
            out.append((fields[0], fields[1], f"{path}:{lineno}"))
    return out


def _read_structured(path: Path) -> nx.Graph:
    try:
        if path.suffix.lower() == ".graphml":
            return nx.read_graphml(path)
        return nx.read_gml(path)
    except (ET.ParseError, nx.NetworkXError, OSError, ValueError) as e:
        kind = "GraphML" if path.suffix.lower() == ".graphml" else "GML"
        raise ValueError(f"file: {path}: not valid {kind} ({e})") from None


def _check(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"file: not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"file: {path}: unknown format {suffix!r}; use {', '.join(SUFFIXES)}")
    return suffix


def _social(read: nx.Graph, n_users: int, where: str, param: str) -> nx.Graph:
    ids = _labels(((str(v), where) for v in read.nodes), n_users, param)
    g = nx.Graph()
    g.add_nodes_from(range(n_users))
    g.add_edges_from((ids[str(u)], ids[str(v)]) for u, v in read.edges() if ids[str(u)] != ids[str(v)])
    return g


def read_graph(path: Path, n_users: int) -> nx.Graph:
    """The social graph on users ``0 .. n_users-1`` whose edges the file at ``path`` lists."""
    suffix = _check(path)
    if suffix in (".graphml", ".gml"):
        return _social(_read_structured(path), n_users, f"{path}: node", "file")
    pairs = _pairs(path)
    ids = _labels(((name, at) for u, v, at in pairs for name in (u, v)), n_users)
    g = nx.Graph()
    g.add_nodes_from(range(n_users))
    g.add_edges_from((ids[u], ids[v]) for u, v, _ in pairs if ids[u] != ids[v])
    return g


def _memberships(read: nx.Graph, n_users: int, where: str, param: str) -> list[list[int]]:
    side = nx.get_node_attributes(read, "bipartite")
    missing = [v for v in read.nodes if side.get(v) not in (0, 1, "0", "1")]
    if missing:
        raise ValueError(
            f"{param}: {where}: node {missing[0]!r} has no 'bipartite' attribute 0 (user) or 1 (room)"
        )
    users = [v for v in read.nodes if str(side[v]) == "0"]
    rooms = [v for v in read.nodes if str(side[v]) == "1"]
    ids = _labels(((str(u), where) for u in users), n_users, param)
    out = []
    for room in rooms:
        members = sorted({ids[str(u)] for u in read.adj[room] if str(side[u]) == "0"})
        if members:
            out.append(members)
    return out


def read_memberships(path: Path, n_users: int) -> list[list[int]]:
    """The rooms of a user-by-room file: each room's members (user numbers, ascending), in the
    order the rooms first appear; a room with no member is left out."""
    suffix = _check(path)
    if suffix in (".graphml", ".gml"):
        return _memberships(_read_structured(path), n_users, f"{path}: node", "file")
    pairs = _pairs(path)
    ids = _labels(((u, at) for u, _, at in pairs), n_users)
    rooms: dict[str, set[int]] = {}
    for user, room, _ in pairs:
        rooms.setdefault(room, set()).add(ids[user])
    return [sorted(members) for members in rooms.values()]


def networkx_graph(name: str, n_users: int) -> nx.Graph | list[list[int]]:
    """networkx's real graph ``name`` on users ``0 .. n_users-1``: a social graph, or for a
    user-by-room graph (Davis's Southern Women) each room's members."""
    if name not in NETWORKX_GRAPHS:
        raise ValueError(f"graph: must be one of {', '.join(NETWORKX_GRAPHS)} (got {name!r})")
    read = NETWORKX_GRAPHS[name]()
    where = f"networkx's {name}"
    if nx.get_node_attributes(read, "bipartite"):
        return _memberships(read, n_users, where, "graph")
    return _social(read, n_users, where, "graph")
