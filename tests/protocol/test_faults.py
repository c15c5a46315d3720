"""Fault injection: a network that loses, duplicates and holds back traffic, devices that crash
between two steps of a flow, and a server that restarts from its persisted state.

The E2EE state machine of test_e2e_stateful runs over a faulty network and checks the invariants
after every step once the traffic in flight has settled.  Losing, duplicating or delaying pushes,
duplicating requests, crashing devices and restarting the server break nothing.

Losing or reordering *requests* shows weaknesses Rocket.Chat has, and the invariants catch
exactly those and nothing else: its client never retries a fire-and-forget request (a lost
accept or provide can leave a member waiting nowhere); neither the server
nor the client compares a suggestion's kid with the room's (a suggestion delayed past a room-key
reset is accepted, and its member then holds a stale key and is never queued again); and the
server applies writes in arrival order with no version check (an ``updateGroupKey`` delayed past
its sender's own key reset stores a key wrapped for the old key pair: ``stored_keys_open``; a
``rejectSuggestedGroupKey`` delayed past an accept re-queues a member who holds the key:
``queue_is_clean``).  These runs are derandomised so that CI sees the same examples every time.
"""

from __future__ import annotations

import random

import pytest
import test_e2e_stateful as stateful
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from protocol import Deployment, E2ERoomState, check_all
from protocol.transport import FaultModel, Transport

BENIGN = {
    "push_loss": FaultModel(push_loss=0.3),
    "push_duplicate": FaultModel(push_duplicate=0.3),
    "push_delay": FaultModel(push_delay=0.3, delay_mean_s=20),
    "request_duplicate": FaultModel(request_duplicate=0.3),
    "crash_on_push": FaultModel(crash_on_push=0.2),
    "all_benign": FaultModel(
        push_loss=0.1, push_duplicate=0.1, push_delay=0.1, request_duplicate=0.1, crash_on_push=0.05
    ),
}
#: faults that expose Rocket.Chat's weaknesses, and the only invariants they may break
REVEALING = {
    "request_loss": (FaultModel(request_loss=0.3), frozenset({"nobody_silently_lost"})),
    "request_delay": (
        FaultModel(request_delay=0.3, delay_mean_s=20),
        frozenset({"nobody_silently_lost", "stored_keys_open", "queue_is_clean"}),
    ),
}


def machine_for(model: FaultModel, tolerated: frozenset[str] = frozenset()) -> type[stateful.E2EMachine]:
    class Faulty(stateful.E2EMachine):
        @initialize(policy=st.sampled_from(["queue", "backup"]), seed=st.integers(0, 2**16))
        def setup(self, policy: str, seed: int) -> None:
            original = stateful.Deployment
            stateful.Deployment = lambda **kw: original(faults=model, **kw)  # type: ignore[assignment, misc]
            try:
                super().setup(policy, seed)
            finally:
                stateful.Deployment = original  # type: ignore[misc]

        @rule()
        def server_restarts(self) -> None:
            self.d.server.restart()
            for client in self.d.clients.values():  # devices reconnect and resynchronise
                client.sync(now=self.now)
            self.step()

        @precondition(lambda self: hasattr(self, "d"))
        @invariant()
        def invariants_hold(self) -> None:
            transport = self.d.transport
            settled = transport is None or transport.next_due is None
            people = self.d.people.values()
            found = check_all(
                self.d.server,
                self.d.clients,
                self.d.ledger,
                passwords=[p.account_password for p in people],
                settled=settled,
            )
            unexpected = [str(v) for v in found if v.invariant not in tolerated]
            assert unexpected == []

    Faulty.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    return Faulty


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_invariants_hold_under_faults(name: str) -> None:
    machine_for(BENIGN[name]).TestCase().runTest()


@pytest.mark.parametrize("name", sorted(REVEALING))
def test_lost_or_reordered_requests_break_only_what_rocketchat_cannot_keep(name: str) -> None:
    model, tolerated = REVEALING[name]
    machine_for(model, tolerated=tolerated).TestCase().runTest()


def test_a_suggestion_delayed_past_a_room_key_reset_is_accepted() -> None:
    d = Deployment(seed=5)
    a, b, c = (d.add_user(n) for n in ("alice", "bob", "carol"))
    for uid in (a, b, c):
        d.login(uid, now=0)
    rid = d.server.create_private_group(a, "team", [b, c], now=1)
    d.pump(1)
    d.reset(c, now=2)
    d.login(c, now=3)
    held = Transport(d.server, FaultModel(request_delay=1.0, delay_mean_s=100), random.Random(3))
    d.client(b).transport = held
    d.tick(b, now=10)  # bob serves carol the current key, but the request is held back ...
    due = held.next_due
    assert due is not None and not d.server.subscription(rid, c).e2e_suggested_key
    d.client(a).reset_room_key(rid, now=20)  # ... alice resets the room key meanwhile ...
    d.pump(20)
    assert d.server.room(rid).is_waiting(c)
    held.deliver(due)  # ... and the stale suggestion lands: the server takes carol off the queue
    d.pump(due)
    sub = d.server.subscription(rid, c)
    assert sub.e2e_key is not None  # carol accepted it: nobody compares kids
    assert not d.client(c).holds_current_key(rid) and not d.server.room(rid).is_waiting(c)
    assert [v.invariant for v in check_all(d.server, d.clients, d.ledger)] == ["nobody_silently_lost"]


def test_a_lost_update_group_key_loses_the_room() -> None:
    # RC's createGroupKey awaits e2e.updateGroupKey for the creator itself; when it fails the
    # handshake throws (room ERROR) before anybody else is given the key: the room's kid is set,
    # nobody holds the key, and only a room-key reset helps
    d = Deployment(seed=2)
    a, b = d.add_user("alice"), d.add_user("bob")
    for uid in (a, b):
        d.login(uid, now=0)
    transport = Transport(d.server, FaultModel(request_loss=1.0), random.Random(1))
    d.client(a).transport = transport  # every request of alice's is lost
    rid = d.server.create_private_group(a, "team", [b], now=1)
    d.pump(1)
    assert transport.counters["requests_lost"] == 1
    room = d.server.room(rid)
    assert room.e2e_key_id is not None and d.client(a).room_state(rid) == E2ERoomState.ERROR
    assert all(sub.e2e_key is None and sub.e2e_suggested_key is None for sub in room.subscriptions.values())
    assert check_all(d.server, d.clients, d.ledger) == []  # lost, and nothing pretends otherwise


def test_transport_counts_and_holds_traffic() -> None:
    d = Deployment(seed=4, faults=FaultModel(push_delay=1.0, delay_mean_s=50))
    a, b = d.add_user("alice"), d.add_user("bob")
    for uid in (a, b):
        d.login(uid, now=0)
    rid = d.server.create_private_group(a, "team", [b], now=1)
    d.pump(1)
    assert d.transport is not None and d.transport.next_due is not None  # pushes held back
    assert not d.client(b).holds_current_key(rid)
    d.pump(d.transport.next_due + 1000)  # ... delivered later
    d.pump(2000)
    assert d.client(b).holds_current_key(rid)
    assert d.transport.counters["pushes_delayed"] >= 2


def test_fault_model_validates() -> None:
    from protocol import ValidationError

    with pytest.raises(ValidationError) as exc:
        FaultModel(request_loss=1.5)
    assert "request_loss" in str(exc.value)
    with pytest.raises(ValidationError):
        FaultModel(delay_mean_s=0)


def test_fault_injection_scenario_runs_with_invariants_checked() -> None:
    from pathlib import Path

    from sim.engine import run_scenario
    from sim.inputs.scenario import load_scenario

    path = Path(__file__).parents[2] / "scenarios" / "faults.toml"
    small = {"population.users": 150, "rooms.dms": 60, "rooms.groups": 25, "simulation.horizon_days": 2}
    result = run_scenario(load_scenario(path, overrides=small), check_invariants=True)
    assert result.faults is not None
    assert result.faults["requests_lost"] > 0 and result.faults["server_restarts"] >= 0
    assert result.violations == [], result.violations
    assert any(row["restored"] for row in result.outcomes)
