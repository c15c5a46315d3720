"""Real membership: networkx's real graphs, user-by-room graphs, CSV and GML files with named nodes."""

from __future__ import annotations

import random
from pathlib import Path

import networkx as nx
import pytest

from sim.inputs import ScenarioError
from sim.inputs.graph_file import NETWORKX_GRAPHS, networkx_graph, read_graph, read_memberships
from sim.inputs.scenario import parse_scenario
from sim.inputs.topology import TopologyParams, generate_rooms, social_graph

SCENARIOS = Path(__file__).parents[3] / "scenarios"


def test_karate_club_keeps_its_numbers() -> None:
    g = networkx_graph("karate_club", 40)
    assert isinstance(g, nx.Graph)
    assert sorted(g.nodes) == list(range(40))  # six users beyond the club, isolated
    assert {frozenset(e) for e in g.edges} == {frozenset(e) for e in nx.karate_club_graph().edges}


@pytest.mark.parametrize("name", ["les_miserables", "florentine_families"])
def test_named_people_are_relabelled_in_node_order(name: str) -> None:
    source = NETWORKX_GRAPHS[name]()
    g = networkx_graph(name, source.number_of_nodes())
    assert isinstance(g, nx.Graph)
    number = {person: k for k, person in enumerate(source.nodes)}
    assert {frozenset(e) for e in g.edges} == {frozenset((number[u], number[v])) for u, v in source.edges}


def test_davis_southern_women_gives_one_room_per_event() -> None:
    source = nx.davis_southern_women_graph()
    rooms = networkx_graph("davis_southern_women", 18)
    assert isinstance(rooms, list) and len(rooms) == 14
    women = {w: k for k, w in enumerate(source.graph["top"])}
    for event, members in zip(source.graph["bottom"], rooms, strict=True):
        assert members == sorted(women[w] for w in source.adj[event])
    assert sorted(len(m) for m in rooms) == sorted(source.degree(e) for e in source.graph["bottom"])


def test_a_user_by_room_graph_makes_its_rooms_and_dms_between_co_members() -> None:
    params = TopologyParams(generator="networkx", graph="davis_southern_women", dms=30)
    rooms = generate_rooms(params, 18, random.Random(1))
    groups = [r for r in rooms if r.t == "p"]
    assert [sorted(r.members) for r in groups] == networkx_graph("davis_southern_women", 18)
    assert all(r.owner == min(r.members) for r in groups)
    shared = {frozenset((u, v)) for r in groups for u in r.members for v in r.members if u != v}
    dms = [r for r in rooms if r.t == "d"]
    assert len(dms) == 30 and all(frozenset(r.members) in shared for r in dms)
    some = generate_rooms(
        TopologyParams(generator="networkx", graph="davis_southern_women", groups=5), 18, random.Random(1)
    )
    assert len(some) == 5
    with pytest.raises(ValueError, match=r"^groups: 15 groups asked for, but the graph has only 14 rooms"):
        generate_rooms(
            TopologyParams(generator="networkx", graph="davis_southern_women", groups=15),
            18,
            random.Random(1),
        )
    with pytest.raises(
        ValueError, match=r"^graph: networkx's davis_southern_women: names 18 users, more than the 10"
    ):
        generate_rooms(
            TopologyParams(generator="networkx", graph="davis_southern_women"), 10, random.Random(1)
        )


def test_csv_and_gml_files_with_named_nodes(tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    csv.write_text("source,target\nalice,bob\nbob,carol\n\ncarol,alice\n")
    g = read_graph(csv, 5)
    assert {frozenset(e) for e in g.edges} == {frozenset(p) for p in [(0, 1), (1, 2), (0, 2)]}
    gml = tmp_path / "g.gml"
    source = nx.Graph([("Medici", "Albizzi"), ("Albizzi", "Ginori")])
    nx.write_gml(source, gml)
    assert {frozenset(e) for e in read_graph(gml, 3).edges} == {frozenset((0, 1)), frozenset((1, 2))}
    params = TopologyParams(generator="file", file=str(gml))
    assert social_graph(params, 3, random.Random(0)).number_of_edges() == 2


def test_bipartite_files(tmp_path: Path) -> None:
    csv = tmp_path / "members.csv"
    csv.write_text("user,room\nann,book club\nben,book club\nann,choir\ncat,choir\ndan,choir\n")
    assert read_memberships(csv, 4) == [[0, 1], [0, 2, 3]]
    graphml = tmp_path / "members.graphml"
    b = nx.Graph()
    b.add_nodes_from(["u0", "u1", "u2"], bipartite=0)
    b.add_nodes_from(["r1", "r2"], bipartite=1)
    b.add_edges_from([("u0", "r1"), ("u2", "r1"), ("u1", "r2")])
    nx.write_graphml(b, graphml)
    assert read_memberships(graphml, 3) == [[0, 2], [1]]
    b.add_node("stray")
    nx.write_graphml(b, graphml)
    with pytest.raises(ValueError, match=r"^file: .*node 'stray' has no 'bipartite' attribute"):
        read_memberships(graphml, 3)


def test_scenario_keys(tmp_path: Path) -> None:
    base = {"population": {"users": 18}, "rooms": {"generator": "networkx", "graph": "davis_southern_women"}}
    assert parse_scenario(base).get("rooms.graph") == "davis_southern_women"
    with pytest.raises(ScenarioError, match=r"rooms\.graph.*must be one of karate_club"):
        parse_scenario({"rooms": {"generator": "networkx", "graph": "zachary"}})
    with pytest.raises(ScenarioError, match=r"rooms\.graph.*only with rooms\.generator = 'networkx'"):
        parse_scenario({"rooms": {"graph": "karate_club"}})
    with pytest.raises(ScenarioError, match=r"rooms\.file"):
        parse_scenario({"rooms": {"generator": "bipartite", "file": str(tmp_path / "none.csv")}})
    sc = parse_scenario({"population": {"users": 100}, "rooms": {"dms": 10, "mean_degree": 3}})
    assert sc.get("rooms.mean_degree") == 3


def test_the_davis_scenario_runs() -> None:
    from sim.engine import run_scenario
    from sim.inputs import load_scenario

    result = run_scenario(load_scenario(SCENARIOS / "davis.toml", overrides={"simulation.horizon_days": 5}))
    rooms = {r["room_size"] for r in result.rooms if r["room_type"] == "p"}
    assert len([r for r in result.rooms if r["room_type"] == "p"]) == 14 and max(rooms) == 14
    assert result.outcomes


def _classes(assignment: str, seed: int = 3) -> list[float]:
    from sim.engine.setup import churn_params

    data = {
        "simulation": {"seed": seed},
        "population": {
            "users": 200,
            "class_assignment": assignment,
            "classes": [
                {"name": "hubs", "fraction": 0.1, "mean_offline_minutes": 10},
                {"name": "rest", "fraction": 0.9, "mean_offline_minutes": 1000},
            ],
        },
        "rooms": {"generator": "barabasi_albert", "groups": 150, "group_size": 4, "dms": 100},
    }
    params = churn_params(parse_scenario(data))
    assert isinstance(params, list)
    return [p.mean_offline_s for p in params]


def test_classes_are_assigned_at_random_by_degree_or_in_blocks() -> None:
    from sim.engine.setup import room_specs

    blocks = _classes("contiguous")
    assert blocks == [600.0] * 20 + [60000.0] * 180
    shuffled = _classes("random")
    assert sorted(shuffled) == sorted(blocks) and shuffled != blocks
    assert shuffled == _classes("random") and shuffled != _classes("random", seed=4)  # seeded
    by_degree = _classes("degree")
    sc = parse_scenario(
        {
            "simulation": {"seed": 3},
            "population": {"users": 200},
            "rooms": {"generator": "barabasi_albert", "groups": 150, "group_size": 4, "dms": 100},
        }
    )
    rooms = [0] * 200
    for spec in room_specs(sc):
        for m in spec.members:
            rooms[m] += 1
    hubs = [u for u in range(200) if by_degree[u] == 600.0]
    assert len(hubs) == 20 and min(rooms[u] for u in hubs) >= max(
        rooms[u] for u in range(200) if u not in hubs
    )
