"""sim.inputs.topology: social graphs and the rooms drawn from them."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import networkx as nx
import pytest

from sim.inputs.topology import RoomSpec, TopologyParams, _gnp_pairs, generate_rooms, social_graph

N = 400
GENERATORS = {
    "random": {"generator": "random", "mean_degree": 6.0},
    "communities": {"generator": "communities", "communities": 8, "p_in": 0.2, "p_out": 0.002},
    "barabasi_albert": {"generator": "barabasi_albert", "ba_m": 3},
    "watts_strogatz": {"generator": "watts_strogatz", "ws_k": 6, "ws_p": 0.1},
}


@pytest.fixture
def edge_file(tmp_path: Path) -> Path:
    """A ring of N users in edge-list form, with chords: enough edges for the DMs below."""
    lines = ["# a ring with chords", ""]
    lines += [f"u{i} u{(i + 1) % N}" for i in range(N)]
    lines += [f"{i} {(i + 7) % N} 0.5" for i in range(N)]  # plain ints, and a weight column ignored
    lines += ["u5 u5", "u1 u2  # a duplicate, with a comment"]
    path = tmp_path / "contacts.edges"
    path.write_text("\n".join(lines) + "\n")
    return path


def _params(name: str, edge_file: Path, **kw: object) -> TopologyParams:
    if name == "file":
        return TopologyParams(generator="file", file=str(edge_file), **kw)  # type: ignore[arg-type]
    return TopologyParams(**(GENERATORS[name] | kw))  # type: ignore[arg-type]


ALL = [*GENERATORS, "file"]


# --- rooms --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_counts_sizes_and_members(name: str, edge_file: Path) -> None:
    params = _params(name, edge_file, dms=300, groups=80, group_size=6, unencrypted_fraction=0.25)
    rooms = generate_rooms(params, N, random.Random(1))
    dms = [r for r in rooms if r.t == "d"]
    groups = [r for r in rooms if r.t == "p"]
    assert (len(dms), len(groups)) == (300, 80)
    assert all(len(r.members) == 6 for r in groups)
    for r in rooms:
        assert len(set(r.members)) == len(r.members)
        assert all(0 <= m < N for m in r.members)
        assert r.owner == r.members[0]
    pairs = {frozenset(r.members) for r in dms}
    assert len(pairs) == 300  # distinct pairs
    graph = social_graph(params, N, random.Random(1))  # the same stream draws the same graph first
    assert all(graph.has_edge(*r.members) for r in dms)
    assert sum(not r.encrypted for r in rooms) == round(0.25 * 380)


@pytest.mark.parametrize("name", ["watts_strogatz", "barabasi_albert", "file"])
def test_groups_are_graph_neighbourhoods(name: str, edge_file: Path) -> None:
    params = _params(name, edge_file, groups=60, group_size=8)
    graph = social_graph(params, N, random.Random(2))
    assert nx.is_connected(graph)  # so no group needed padding
    for room in generate_rooms(params, N, random.Random(2)):
        assert nx.is_connected(graph.subgraph(room.members))


def test_community_groups_stay_in_one_team() -> None:
    params = TopologyParams(
        generator="communities", communities=8, p_in=0.2, p_out=0.0, groups=50, group_size=10
    )
    blocks = social_graph(params, N, random.Random(3)).graph["blocks"]
    team = {u: i for i, b in enumerate(blocks) for u in b}
    assert sorted(team) == list(range(N))
    for room in generate_rooms(params, N, random.Random(3)):
        assert len({team[m] for m in room.members}) == 1


def test_tiny_components_are_padded_with_random_users() -> None:
    params = TopologyParams(generator="random", mean_degree=0.0, groups=20, group_size=5)
    rooms = generate_rooms(params, 50, random.Random(4))
    assert [len(r.members) for r in rooms] == [5] * 20


@pytest.mark.parametrize(
    ("dist", "mean"),
    [("poisson", 6), ("geometric", 6), ("uniform", 6), ("poisson", 2), ("geometric", 2)],
)
def test_group_size_distributions(dist: str, mean: int) -> None:
    params = TopologyParams(groups=3000, group_size=mean, group_size_dist=dist, group_size_max=60)
    sizes = [len(r.members) for r in generate_rooms(params, 2000, random.Random(5))]
    assert min(sizes) >= 2 and max(sizes) <= 60
    sd = {"poisson": math.sqrt(mean - 2), "geometric": math.sqrt((mean - 2) * (mean - 1)), "uniform": 2.0}[
        dist
    ]
    assert abs(sum(sizes) / len(sizes) - mean) <= 4.5 * sd / math.sqrt(len(sizes)) + 1e-9
    if dist == "uniform":
        assert set(sizes) == set(range(2, 2 * mean - 1))


def test_sizes_are_clipped_to_the_maximum() -> None:
    params = TopologyParams(groups=500, group_size=10, group_size_dist="geometric", group_size_max=12)
    sizes = [len(r.members) for r in generate_rooms(params, 1000, random.Random(6))]
    assert max(sizes) == 12


def test_deterministic_by_seed() -> None:
    params = TopologyParams(generator="barabasi_albert", dms=100, groups=40, group_size_dist="poisson")
    a = generate_rooms(params, N, random.Random(7))
    assert a == generate_rooms(params, N, random.Random(7))
    assert a != generate_rooms(params, N, random.Random(8))


def test_explicit_rooms_are_appended_as_given() -> None:
    explicit = [RoomSpec("d", (3, 1), False, 3), RoomSpec("p", (5, 6, 7), True, 6)]
    rooms = generate_rooms(TopologyParams(dms=10, groups=5), 50, random.Random(9), explicit)
    assert len(rooms) == 17 and rooms[-2:] == explicit
    assert generate_rooms(TopologyParams(), 50, random.Random(9), explicit) == explicit
    with pytest.raises(ValueError, match=r"^rooms: explicit room #2 names user 50"):
        generate_rooms(TopologyParams(), 50, random.Random(9), [explicit[0], RoomSpec("p", (1, 50), True, 1)])


def test_too_few_edges_for_the_dms() -> None:
    with pytest.raises(ValueError, match=r"^dms: 500 DMs .* only \d+ edges"):
        generate_rooms(TopologyParams(generator="watts_strogatz", ws_k=2, dms=500), 100, random.Random(0))


def test_a_hundred_thousand_users_and_twenty_thousand_rooms_are_fast() -> None:
    params = TopologyParams(
        generator="barabasi_albert", dms=10_000, groups=10_000, group_size=8, group_size_dist="geometric"
    )
    start = time.perf_counter()
    rooms = generate_rooms(params, 100_000, random.Random(10))
    assert time.perf_counter() - start < 30.0  # measured about 1 s
    assert len(rooms) == 20_000


# --- graphs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GENERATORS))
def test_every_generator_covers_all_users(name: str, edge_file: Path) -> None:
    graph = social_graph(_params(name, edge_file), N, random.Random(11))
    assert sorted(graph.nodes) == list(range(N))
    assert graph.number_of_edges() > N  # every configuration above has mean degree > 2
    assert nx.number_of_selfloops(graph) == 0


def test_gnp_pairs_are_distinct_with_the_right_density() -> None:
    n, p = 600, 0.05
    pairs = list(_gnp_pairs(n, p, random.Random(12)))
    assert all(0 <= w < v < n for v, w in pairs)
    assert len(set(pairs)) == len(pairs)
    total = n * (n - 1) // 2
    assert abs(len(pairs) - p * total) < 4.5 * math.sqrt(total * p * (1 - p))
    assert len(list(_gnp_pairs(5, 1.0, random.Random(0)))) == 10
    assert list(_gnp_pairs(5, 0.0, random.Random(0))) == []


def test_block_model_densities() -> None:
    params = TopologyParams(generator="communities", communities=4, p_in=0.1, p_out=0.01)
    graph = social_graph(params, 800, random.Random(13))
    blocks = graph.graph["blocks"]
    assert [len(b) for b in blocks] == [200] * 4
    team = {u: i for i, b in enumerate(blocks) for u in b}
    inner = sum(team[u] == team[v] for u, v in graph.edges)
    outer = graph.number_of_edges() - inner
    n_in = 4 * 200 * 199 // 2
    n_out = 800 * 799 // 2 - n_in
    assert abs(inner - 0.1 * n_in) < 4.5 * math.sqrt(n_in * 0.1 * 0.9)
    assert abs(outer - 0.01 * n_out) < 4.5 * math.sqrt(n_out * 0.01 * 0.99)


def test_edge_list_import(edge_file: Path) -> None:
    graph = social_graph(TopologyParams(generator="file", file=str(edge_file)), N, random.Random(0))
    assert graph.number_of_edges() == 2 * N
    assert graph.has_edge(0, 1) and graph.has_edge(0, 7) and not graph.has_edge(5, 5)


def test_graphml_import(tmp_path: Path) -> None:
    source = nx.Graph()
    source.add_edges_from([("u0", "u1"), ("u1", "u2"), ("u2", "u0"), ("u3", "u3")])
    path = tmp_path / "g.graphml"
    nx.write_graphml(source, path)
    params = TopologyParams(generator="file", file=str(path), dms=3, groups=1, group_size=3)
    graph = social_graph(params, 6, random.Random(0))
    assert sorted(graph.nodes) == list(range(6))
    assert {frozenset(e) for e in graph.edges} == {frozenset(p) for p in [(0, 1), (1, 2), (0, 2)]}
    rooms = generate_rooms(params, 6, random.Random(0))
    assert {frozenset(r.members) for r in rooms if r.t == "d"} == {frozenset(e) for e in graph.edges}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("e.txt", "u1 u2\nu3\n", r"e\.txt:2: expected 'u v'"),
        ("e.txt", "u1 u2\n\nalice u2\n", r"e\.txt:3: names users both by number \('u1', .*e\.txt:1\)"),
        ("e.edges", "u1 u20\n", r"e\.edges:1: user 'u20' is outside the 10 users"),
        ("e.graphml", "<graphml><oops", "not valid GraphML"),
        ("e.gml", "graph [ node [ id", "not valid GML"),
        ("e.csv", "source,target\nu1,u2\nu3\n", r"e\.csv:3: expected two columns"),
        ("e.tsv", "u1\tu2\n", "unknown format '.tsv'"),
        (
            "e.txt",
            "".join(f"p{i} p{i + 1}\n" for i in range(10)),
            r"e\.txt:10: names 11 users, more than the 10",
        ),
    ],
)
def test_bad_files_name_the_place(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=r"^file: .*" + message):
        social_graph(TopologyParams(generator="file", file=str(path)), 10, random.Random(0))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^file: not found"):
        social_graph(TopologyParams(generator="file", file=str(tmp_path / "nope.txt")), 10, random.Random(0))


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"generator": "erdos"}, "generator"),
        ({"dms": -1}, "dms"),
        ({"groups": 1.5}, "groups"),
        ({"group_size": 1}, "group_size"),
        ({"group_size": 10, "group_size_max": 9}, "group_size_max"),
        ({"group_size_dist": "zipf"}, "group_size_dist"),
        ({"unencrypted_fraction": 1.5}, "unencrypted_fraction"),
        ({"communities": 0}, "communities"),
        ({"p_in": -0.1}, "p_in"),
        ({"p_out": 2}, "p_out"),
        ({"ba_m": 0}, "ba_m"),
        ({"ws_k": 1}, "ws_k"),
        ({"ws_p": True}, "ws_p"),
        ({"mean_degree": -1.0}, "mean_degree"),
        ({"generator": "file"}, "file"),
        ({"file": "x.txt"}, "file"),
    ],
)
def test_bad_params_name_the_parameter(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}:"):
        TopologyParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "n_users", "name"),
    [
        ({"generator": "barabasi_albert", "ba_m": 10}, 10, "ba_m"),
        ({"generator": "watts_strogatz", "ws_k": 12}, 10, "ws_k"),
        ({"generator": "communities", "communities": 11}, 10, "communities"),
        ({"generator": "random", "mean_degree": 10.0}, 10, "mean_degree"),
        ({"generator": "random", "mean_degree": 50.0}, 100_000, "mean_degree"),
        ({"generator": "communities", "communities": 10}, 100_000, "p_in"),
        ({"generator": "communities", "communities": 10_000, "p_out": 0.01}, 100_000, "p_out"),
    ],
)
def test_graph_errors_name_the_parameter(kwargs: dict[str, object], n_users: int, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}:"):
        social_graph(TopologyParams(**kwargs), n_users, random.Random(0))  # type: ignore[arg-type]


def test_room_errors() -> None:
    with pytest.raises(ValueError, match=r"^group_size: mean size 8 exceeds the 5 users"):
        generate_rooms(TopologyParams(groups=1, group_size=8), 5, random.Random(0))
    with pytest.raises(ValueError, match=r"^n_users:"):
        generate_rooms(TopologyParams(), 0, random.Random(0))
    with pytest.raises(ValueError, match=r"^t:"):
        RoomSpec("c", (1, 2), True, 1)
    with pytest.raises(ValueError, match=r"^members: a DM has exactly 2"):
        RoomSpec("d", (1, 2, 3), True, 1)
    with pytest.raises(ValueError, match=r"^members: a room lists each member once"):
        RoomSpec("p", (1, 1), True, 1)
    with pytest.raises(ValueError, match=r"^owner:"):
        RoomSpec("p", (1, 2), True, 3)
    assert RoomSpec("p", [4, 5], True, 5).members == (4, 5)  # type: ignore[arg-type]
