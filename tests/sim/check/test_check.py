"""``keysim check``: the explorer on the real protocol, the state identity, the command line."""

from __future__ import annotations

import pytest

from protocol import Server
from sim.check import STEP_S, Op, World, apply, canonical, enabled_ops, explore
from sim.cli import main


def world_after(ops: list[Op], *, seed: int = 0, users: int = 3, rooms: int = 2) -> World:
    w = World(users, rooms, "queue", seed=seed)
    for op in ops:
        assert op in enabled_ops(w), op
        assert apply(w, op) == []
    return w


# ------------------------------------------------------------------------------- the real protocol


@pytest.mark.parametrize("policy", ["queue", "live", "backup", "rocketchat", "dehydrated"])
def test_no_violation_at_small_scope(policy: str) -> None:
    result = explore(3, 2, 5, policy)
    assert result.ok, result.report()
    assert result.depth_done == 5 and not result.capped
    assert result.states > 500 and result.transitions > result.states


def test_two_users_and_three_rooms() -> None:
    result = explore(2, 3, 4, "queue")
    assert result.ok, result.report()


def test_max_states_stops_the_search_and_says_so() -> None:
    result = explore(3, 2, 8, "queue", max_states=100)
    assert result.ok and result.capped and result.states == 100 and result.depth_done < 8
    assert "--max-states reached" in result.report()


@pytest.mark.parametrize(
    ("users", "rooms", "depth", "message"),
    [(1, 1, 3, "users"), (7, 1, 3, "users"), (3, 0, 3, "rooms"), (3, 99, 3, "rooms"), (3, 2, -1, "depth")],
)
def test_bad_scope(users: int, rooms: int, depth: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}:"):
        explore(users, rooms, depth, "queue")


# -------------------------------------------------------------------------------- state identity


def test_interleavings_reaching_the_same_state_are_one_state() -> None:
    a = world_after([Op("logout", 1), Op("logout", 2)])
    b = world_after([Op("logout", 2), Op("logout", 1)])
    assert canonical(a) == canonical(b)


def test_random_names_and_time_do_not_matter() -> None:
    # different seeds: other key tokens, kids, ids, login tokens, passwords
    ops = [Op("reset", 1), Op("login", 1), Op("tick", 0)]
    a, b = world_after(ops, seed=1), world_after(ops, seed=2)
    assert a.d.server.user(a.users[1]).e2e_public_key != b.d.server.user(b.users[1]).e2e_public_key
    assert canonical(a) == canonical(b)
    b.now += 1000 * STEP_S
    assert canonical(a) == canonical(b)


def test_who_did_it_matters() -> None:
    # u0 owns the team and has TOTP, u1 does not; u1 and u2 joined the team in that order
    assert canonical(world_after([Op("logout", 0)])) != canonical(world_after([Op("logout", 1)]))
    assert canonical(world_after([Op("logout", 1)])) != canonical(world_after([Op("logout", 2)]))


def test_different_states_differ() -> None:
    base = canonical(world_after([]))
    assert canonical(world_after([Op("logout", 1)])) != base
    assert canonical(world_after([Op("reset", 1), Op("login", 1)])) != base  # u1 waits for the key
    # the same key handed back: after u1 is served the state is the start again, up to names
    served = world_after([Op("reset", 1), Op("login", 1), Op("tick", 0)])
    assert served.client(1).holds_current_key(served.rooms[0])
    assert canonical(served) != canonical(world_after([Op("reset", 1), Op("login", 1)]))


def test_the_explorer_deduplicates_interleavings() -> None:
    # depth 2 from the start: far fewer states than operation sequences
    result = explore(3, 2, 2, "queue", eventually=False)
    assert result.ok
    assert result.states < result.transitions


# ---------------------------------------------------------------------------------- command line


def test_cli_prints_statistics_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--users", "3", "--rooms", "2", "--depth", "3", "--policy", "backup"]) == 0
    out = capsys.readouterr().out
    for label in ("states explored", "transitions", "states/second", "elapsed", "no violation found"):
        assert label in out


def test_cli_bad_scope_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--users", "1"]) == 2
    assert "--users: must be between 2 and 6" in capsys.readouterr().err


def test_cli_exits_1_with_a_numbered_trace_on_a_planted_fault(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the fault: a reset without the 2FA gate
    monkeypatch.setattr(
        Server, "e2e_reset_own_key", lambda self, uid, code, **kw: self._reset_user_e2e_key(uid, kw["now"])
    )
    assert main(["check", "--depth", "3"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION" in out and "two_factor_gate: u0 reset its E2E key with no 2FA code" in out
    assert "shortest trace (1 steps):" in out
    assert "  0. start: u0 (TOTP), u1, u2 log in; rooms team (u0, u1, u2); dm u1+u2 (u1, u2)" in out
    assert "  1. u0 resets its E2E key" in out
