"""Liveness under fairness: a member waiting for a room key while a holder is online again and
again is eventually served; a lasso (a prefix, then a loop for ever) when it is not."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from protocol import POLICIES, Client, Deployment
from sim.check import Op, World, apply, explore
from sim.check.identity import exact_key
from sim.check.liveness import Graph, fair_cycle, waiting
from sim.cli import main


def lasso_worlds(
    result: Any,
) -> tuple[int, list[int], list[frozenset[tuple[int, int]]], list[frozenset[int]]]:
    """Replay a lasso: the identity where the loop starts, the identities and labels after each of
    its steps (waiting members, rooms a holder online could serve)."""
    from sim.check.liveness import served

    w = World(result.users, result.rooms, result.policy, seed=result.seed)
    for op in result.ops[: result.loop]:
        assert apply(w, op) == []
    start, keys, waits, online = exact_key(w), [], [waiting(w)], [served(w)]
    for op in result.ops[result.loop :]:
        assert apply(w, op) == []
        keys.append(exact_key(w))
        waits.append(waiting(w))
        online.append(served(w))
    return start, keys, waits, online


@pytest.mark.parametrize("policy", sorted(set(POLICIES) - {"live"}))
def test_every_policy_with_a_queue_serves_every_waiting_member(policy: str) -> None:
    result = explore(3, 2, 5, policy)
    assert result.ok, result.report()
    assert (
        result.fair_checked and "liveness under fairness  checked on the graph to depth 5" in result.report()
    )


def test_live_alone_leaves_a_member_waiting_for_ever() -> None:
    # RC's legacy live request is sent once, when the room starts waiting (E2ERoom handshake,
    # protocol/e2e_rooms.py): a holder who logs in later is never asked.  The settle cannot see it
    # (it checks only policies with a queue); the fair cycle does.
    assert explore(3, 2, 5, "live", fair=False).ok
    result = explore(3, 2, 5, "live")
    assert [v.split(":")[0] for v in result.violations] == ["eventually_served"]
    assert result.loop is not None and result.waiter is not None
    other = result.ops[result.loop].user  # the DM's other member comes and goes, never asked
    assert result.ops[result.loop :] == (Op("login", other), Op("logout", other))
    assert other != result.waiter[0]
    start, keys, waits, online = lasso_worlds(result)
    assert keys[-1] == start  # the loop comes back to where it started ...
    assert all(result.waiter in w for w in waits)  # ... the member waits throughout ...
    assert any(result.waiter[1] in o for o in online)  # ... while a holder is online in it
    report = result.report()
    assert f"lasso: steps 1 to {result.loop} lead to a loop" in report
    assert f"then again from step {result.loop + 1}, for ever" in report


def test_a_holders_loop_that_serves_nobody_is_caught_with_a_lasso(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "tick", lambda self, *a, **k: None)  # the loop runs, serves nobody
    # with the settle off, nothing but the fair cycle can see it: a waiting member stays queued,
    # so no safety property fires
    assert explore(3, 2, 4, "queue", eventually=False, fair=False).ok
    result = explore(3, 2, 4, "queue", eventually=False)
    assert [v.split(":")[0] for v in result.violations] == ["eventually_served"], result.report()
    assert result.loop is not None
    loop = result.ops[result.loop :]
    assert Op("tick", 0) in loop or Op("tick", 1) in loop or Op("tick", 2) in loop  # fairness took it
    start, keys, waits, _ = lasso_worlds(result)
    assert keys[-1] == start and all(result.waiter in w for w in waits)


def test_the_emitted_test_replays_the_lasso(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted = tmp_path / "test_lasso.py"
    argv = ["check", "--policy", "live", "--depth", "5", "--quiet", "--emit-test", str(emitted)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert re.search(r"VIOLATION\n  eventually_served: u[12] waits for the key of dm u1\+u2 for ever", out)
    module = runpy.run_path(str(emitted))
    module["test_the_member_still_waits_for_ever"]()
    # fixed (a waiting member asks again when anyone comes online): the emitted test then fails
    original = Deployment.login

    def asks_again(self: Deployment, user_id: str, *, now: float, **k: Any) -> Any:
        out = original(self, user_id, now=now, **k)
        for uid, client in self.clients.items():
            for rid in self.server.rooms_of(uid):
                if uid != user_id and client.functional and not client.holds_current_key(rid):
                    self.server.e2e_request_subscription_keys(uid, rid, now=now)
        self.pump(now)
        return out

    monkeypatch.setattr(Deployment, "login", asks_again)
    with pytest.raises(AssertionError):
        module["test_the_member_still_waits_for_ever"]()


def test_no_liveness_skips_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policy", "live", "--depth", "5", "--quiet", "--no-liveness"]) == 0
    assert "liveness under fairness" not in capsys.readouterr().out


# ------------------------------------------------------------------ the fair-cycle search itself


def graph(edges: dict[int, list[tuple[Op, int]]], fair: dict[int, set[str]], online: set[int]) -> Graph:
    """u1 waits in room 0 in every state; u0 holds the key where ``online``."""
    g = Graph()
    for s, out in edges.items():
        g.edges[s] = [(op, t, None) for op, t in out]
        g.waits[s] = frozenset({(1, 0)})
        g.held[s] = (frozenset({0}) if s in online else frozenset(),)
        g.fair[s] = {(1, 0): frozenset(fair.get(s, set()))}
    g.parent = {0: None, **{t: (s, op) for s, out in edges.items() for op, t in out if t != 0}}
    return g


TICK, LOGIN, LOGOUT, SEND = Op("tick", 0), Op("login", 2), Op("logout", 2), Op("send", 0, 0)


def test_a_cycle_that_never_takes_an_enabled_fair_operation_is_no_counterexample() -> None:
    g = graph({0: [(LOGIN, 1)], 1: [(LOGOUT, 0)]}, {1: {"tick"}}, {1})
    assert fair_cycle(g) is None  # u0 could tick in state 1 and never does: unfair


def test_a_cycle_that_takes_it_is_one() -> None:
    g = graph({0: [(LOGIN, 1)], 1: [(LOGOUT, 0), (TICK, 1)]}, {1: {"tick"}}, {1})
    found = fair_cycle(g)
    assert found is not None and found[0] == {(0, (1, 0)), (1, (1, 0))} and found[1] == {"tick"}


def test_a_cycle_where_no_holder_is_ever_online_is_no_counterexample() -> None:
    g = graph({0: [(SEND, 1)], 1: [(SEND, 0)]}, {}, set())
    assert fair_cycle(g) is None


def test_an_unfair_component_is_searched_again_without_the_states_that_make_it_unfair() -> None:
    # 0 <-> 1 <-> 2; a tick is enabled only in 2 and never taken: the cycle 0 <-> 1 remains
    g = graph({0: [(LOGIN, 1)], 1: [(LOGOUT, 0), (LOGIN, 2)], 2: [(LOGOUT, 1)]}, {2: {"tick"}}, {0})
    found = fair_cycle(g)
    assert found is not None and {s for s, _ in found[0]} == {0, 1}
