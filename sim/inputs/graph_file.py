"""Social graphs read from a file (``rooms.generator = "file"``): an edge list or GraphML.

An edge list (``.txt``/``.edges``) holds "u v" per line, users written ``u3`` or ``3``, ``#``
comments, further columns ignored; GraphML (``.graphml``) writes node ids the same way.  Self-loops
are dropped and every user exists even if isolated.  A bad file is a ``ValueError`` that names the
``file`` parameter of :class:`~sim.inputs.topology.TopologyParams` and the line or node at fault.
May import the standard library and networkx, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx

__all__ = ["read_graph"]

_USER_NAME = re.compile(r"u?(\d+)")


def _user(name: str, n_users: int, where: str) -> int:
    m = _USER_NAME.fullmatch(name.strip())
    if m is None:
        raise ValueError(f"file: {where}: {name!r} is not a user name like 'u3' or '3'")
    user = int(m.group(1))
    if user >= n_users:
        raise ValueError(f"file: {where}: user {name!r} is outside the {n_users} users of the scenario")
    return user


def read_graph(path: Path, n_users: int) -> nx.Graph:
    """The graph on users ``0 .. n_users-1`` whose edges the file at ``path`` lists."""
    if not path.is_file():
        raise ValueError(f"file: not found: {path}")
    g = nx.Graph()
    g.add_nodes_from(range(n_users))
    suffix = path.suffix.lower()
    if suffix in (".txt", ".edges"):
        with path.open() as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split("#", 1)[0].split()
                if not fields:
                    continue
                where = f"{path}:{lineno}"
                if len(fields) < 2:
                    raise ValueError(f"file: {where}: expected 'u v', got {line.strip()!r}")
                u, v = _user(fields[0], n_users, where), _user(fields[1], n_users, where)
                if u != v:
                    g.add_edge(u, v)
        return g
    if suffix == ".graphml":
        try:
            read = nx.read_graphml(path)
        except (ET.ParseError, nx.NetworkXError) as e:
            raise ValueError(f"file: {path}: not valid GraphML ({e})") from None
        ids = {node: _user(str(node), n_users, f"{path}: node") for node in read.nodes}
        g.add_edges_from((ids[u], ids[v]) for u, v in read.edges() if ids[u] != ids[v])
        return g
    raise ValueError(f"file: {path}: unknown format {suffix!r}; use .txt, .edges or .graphml")
