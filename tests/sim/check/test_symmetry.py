"""Symmetry reduction: interchangeable users and rooms, and joining orders, merged exactly."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.check import Op, World, apply, enabled_ops, explore
from sim.check.explorer import _Search
from sim.check.identity import Seen, Symmetry, exact_key, signatures, symmetries
from sim.check.world import dump, load


def every_state(
    users: int, rooms: int, depth: int, policy: str, plan: str = "mixed", phones: int = 0
) -> list[World]:
    """Breadth-first without any reduction but exact identity: every state to ``depth``."""
    root = World(users, rooms, policy, plan=plan, phones=phones)
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
    # alike: every user an owner with TOTP in every room, so any renaming of users and of rooms
    assert len(symmetries(World(3, 1, "queue", plan="alike", phones=2))) == 2  # phones tell users apart
    assert [len(symmetries(World(u, r, "queue", plan="alike"))) for u, r in ((4, 2), (3, 3), (4, 3))] == [
        48,
        36,
        144,
    ]


@pytest.mark.parametrize(
    ("users", "rooms", "depth", "policy", "plan", "phones"),
    [
        (3, 2, 4, "queue", "mixed", 0),
        (4, 1, 3, "backup", "mixed", 0),
        (4, 2, 3, "live", "mixed", 0),
        (3, 2, 3, "queue", "alike", 0),
        (2, 3, 3, "backup", "alike", 0),
        (3, 1, 3, "live", "alike", 2),  # u2 has no phone: u0 and u1 are interchangeable
    ],
)
def test_the_reduced_search_reaches_exactly_one_state_per_orbit(
    users: int, rooms: int, depth: int, policy: str, plan: str, phones: int
) -> None:
    # every state the unreduced search reaches, canonicalised, is a state the reduced search
    # reached, and no other: the reduction merges only states that behave alike in this scope
    full = every_state(users, rooms, depth, policy, plan, phones)
    search = _Search(
        users, rooms, depth, policy, None, eventually=False, seed=0, fair=False, plan=plan, phones=phones
    )
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


def renamed(op: Op, sym: Symmetry) -> Op:
    return Op(op.kind, sym.users[op.user], None if op.room is None else sym.rooms[op.room])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.integers(min_value=0), min_size=1, max_size=8), which=st.integers(min_value=0))
def test_a_renamed_trace_reaches_the_same_state(picks: list[int], which: int) -> None:
    # alike: the operations renamed by any of the scope's renamings are enabled where the
    # originals were, and lead to a state with the same identity and the renamed signatures
    w, v = World(3, 2, "queue", plan="alike"), World(3, 2, "queue", plan="alike")
    syms = symmetries(w)
    sym, seen = syms[which % len(syms)], Seen(syms)
    for pick in picks:
        ops = enabled_ops(w)
        op = ops[pick % len(ops)]
        assert renamed(op, sym) in enabled_ops(v)
        assert apply(w, op) == [] and apply(v, renamed(op, sym)) == []
        assert seen.key(w) == seen.key(v)
    users, rooms = signatures(w)
    assert signatures(v) == (
        [users[sym.inverse().users[u]] for u in range(3)],
        [rooms[sym.inverse().rooms[r]] for r in range(2)],
    )
    if not sym.trivial and exact_key(w) != exact_key(v):
        assert Seen().key(w) != Seen().key(v)  # without reduction they are two states


def test_alike_reduces_by_far_more_than_mixed_can() -> None:
    # mixed: at most 2x (two renamings at 4x2); alike: 48 renamings, 14.6x at depth 3 (25.6x at
    # depth 5, in the note), the same restoration paths reached
    alike = [explore(4, 2, 3, "queue", plan="alike", symmetry=s, fair=False) for s in (False, True)]
    assert all(r.ok and r.complete for r in alike)
    assert alike[0].states >= 14 * alike[1].states and alike[1].symmetries == 48
    assert alike[0].coverage == alike[1].coverage
    assert explore(4, 2, 3, "queue", fair=False).symmetries == 2
