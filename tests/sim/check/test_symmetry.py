"""Symmetry reduction: interchangeable users and rooms, and joining orders, merged exactly."""

from __future__ import annotations

import pytest

from sim.check import World, apply, enabled_ops, explore
from sim.check.explorer import _Search
from sim.check.identity import Seen, Symmetry, symmetries
from sim.check.world import dump, load


def every_state(users: int, rooms: int, depth: int, policy: str) -> list[World]:
    """Breadth-first without any reduction but exact identity: every state to ``depth``."""
    root = World(users, rooms, policy)
    exact, level, out = Seen(), [root], [root]
    exact.add(root)
    for _ in range(depth):
        following = []
        for w in level:
            data = dump(w)
            for op in enabled_ops(w):
                child = load(data)
                assert apply(child, op) == []
                if exact.add(child):
                    following.append(child)
        out += following
        level = following
    return out


def test_the_scopes_symmetries() -> None:
    # u0 has TOTP and owns the team; the DM u1+u2 makes u1 and u2 interchangeable, u3 is not
    swap = Symmetry((0, 2, 1), (0, 1))
    assert symmetries(World(3, 2, "queue")) == (Symmetry((0, 1, 2), (0, 1)), swap)
    assert len(symmetries(World(4, 2, "queue"))) == 2
    assert symmetries(World(3, 3, "queue")) == (Symmetry((0, 1, 2), (0, 1, 2)),)  # dm u0+u1 too
    assert len(symmetries(World(4, 1, "queue"))) == 6  # the team alone: u1, u2, u3 in any order


@pytest.mark.parametrize(
    ("users", "rooms", "depth", "policy"), [(3, 2, 4, "queue"), (4, 1, 3, "backup"), (4, 2, 3, "live")]
)
def test_the_reduced_search_reaches_exactly_one_state_per_orbit(
    users: int, rooms: int, depth: int, policy: str
) -> None:
    # every state the unreduced search reaches, canonicalised, is a state the reduced search
    # reached, and no other: the reduction merges only states that behave alike in this scope
    full = every_state(users, rooms, depth, policy)
    search = _Search(users, rooms, depth, policy, None, eventually=False, seed=0, fair=False)
    result = search.run()
    assert result.ok and result.depth_done == depth
    orbits = {search.seen.key(w) for w in full}
    assert orbits == search.seen._walks
    assert len(full) > result.states  # and it does reduce


def test_renamed_states_are_one_state() -> None:
    # u1 logs out, or u2 logs out: the same state up to swapping them
    seen = Seen(symmetries(World(3, 2, "queue")))
    a, b = World(3, 2, "queue"), World(3, 2, "queue")
    a.d.logout(a.users[1], now=a.now)
    b.d.logout(b.users[2], now=b.now)
    assert seen.key(a) == seen.key(b)
    assert Seen().key(a) != Seen().key(b)


def test_results_are_the_same_with_and_without_reduction() -> None:
    with_it, without = explore(3, 2, 5, "queue"), explore(3, 2, 5, "queue", symmetry=False)
    assert with_it.ok and without.ok
    assert with_it.states < without.states
    assert with_it.coverage == without.coverage
