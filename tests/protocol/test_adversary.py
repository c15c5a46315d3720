"""A malicious server against Rocket.Chat's protocol as it is, and against the opt-in mitigations.

Each scenario: alice and bob hold a group's key; carol resets her key and logs in again; alice's
distribution loop serves the queue.  The server attacks on the way.
"""

from __future__ import annotations

import pytest

from protocol import Client, Deployment, E2EEState, E2ERoomState, ProtocolError, check_all
from protocol.adversary import AdversarialServer, Attacks

T0 = 1_000.0


def world(attacks: Attacks, mitigations: str = "none", policy: str = "queue", crypto: str = "symbolic"):  # type: ignore[no-untyped-def]
    d = Deployment(policy=policy, crypto=crypto, seed=3, attacks=attacks, mitigations=mitigations)
    server = d.server
    assert isinstance(server, AdversarialServer)
    server.attacks = Attacks()  # an honest start: the room is set up and everyone holds its key
    a, b, c = (d.add_user(n) for n in ("alice", "bob", "carol"))
    for uid in (a, b, c):
        d.login(uid, now=T0)
    rid = d.server.create_private_group(a, "team", [b, c], now=T0 + 1)
    d.pump(T0 + 1)
    d.client(a).send(rid, "before the reset, alice", now=T0 + 2)
    assert all(d.client(u).holds_current_key(rid) for u in (a, b, c))
    server.attacks = attacks  # ... then the operator turns
    d.reset(c, now=T0 + 10)
    d.login(c, now=T0 + 20)
    d.tick(a, now=T0 + 30)
    d.client(c).sync(now=T0 + 31)
    d.pump(T0 + 31)
    return d, server, rid, (a, b, c)


def violations(d: Deployment) -> list[str]:
    return [str(v) for v in check_all(d.server, d.clients, d.ledger)]


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_key_substitution_steals_the_room_key_from_rocketchat(crypto: str) -> None:
    d, server, rid, (a, b, c) = world(Attacks(substitute_public_keys=True), crypto=crypto)
    kid = d.server.room(rid).e2e_key_id
    assert kid is not None
    stolen = server.attacker.stolen.get((rid, kid))
    assert stolen is not None and d.ledger.is_legitimate(rid, kid, stolen)  # the real room key
    assert d.client(c).holds_current_key(rid)  # ... and carol noticed nothing
    assert server.readable_messages() >= 1  # the server reads the room's history
    assert violations(d) == []  # every protocol invariant still holds: the attack is invisible


def test_fingerprint_verification_stops_key_substitution() -> None:
    d, server, rid, (a, b, c) = world(Attacks(substitute_public_keys=True), mitigations="fingerprints")
    assert server.attacker.stolen == {}
    assert server.readable_messages() == 0
    # the holder refused to wrap for a key nobody vouched for: carol still waits (denial of service)
    assert not d.client(c).holds_current_key(rid)
    assert d.server.room(rid).is_waiting(c)


def test_signed_suggestions_alone_do_not_stop_substitution() -> None:
    d, server, rid, _ = world(Attacks(substitute_public_keys=True), mitigations="signed")
    assert server.attacker.stolen  # signatures authenticate the sender, not the receiver's key


def test_a_planted_key_is_accepted_by_rocketchat() -> None:
    d, server, rid, (a, b, c) = world(Attacks(plant_suggestions=True))
    assert (rid, c) in server.planted_accepted()
    carol = d.client(c)
    message_id = carol.send(rid, "carol writes with the planted key", now=T0 + 40)
    message = next(m for m in d.server.messages(rid) if m.id == message_id)
    assert d.client(a).decrypt(message) is None  # alice cannot read carol any more
    assert server.readable_messages() >= 1  # the server can
    assert any("planted" in v for v in violations(d))  # the invariants see the foreign key


def test_signed_suggestions_stop_planting() -> None:
    d, server, rid, (a, b, c) = world(Attacks(plant_suggestions=True), mitigations="signed")
    assert server.planted_accepted() == []
    assert d.client(c).holds_current_key(rid)  # served by alice, signature checked
    assert server.readable_messages() == 0
    assert violations(d) == []


def test_both_mitigations_stop_both_attacks() -> None:
    attacks = Attacks(substitute_public_keys=True, plant_suggestions=True)
    d, server, rid, (a, b, c) = world(attacks, mitigations="both")
    assert server.attacker.stolen == {} and server.planted_accepted() == []
    assert server.readable_messages() == 0


def test_withholding_the_queue_leaves_the_member_without_key() -> None:
    d, server, rid, (a, b, c) = world(Attacks(withhold_queue=True))
    assert not d.client(c).holds_current_key(rid)
    for t in range(40, 400, 10):
        d.tick(a, now=T0 + t)
        d.tick(b, now=T0 + t)
    assert not d.client(c).holds_current_key(rid)
    assert violations(d) == []


def test_withholding_is_beaten_by_the_key_backup() -> None:
    d, server, rid, (a, b, c) = world(Attacks(withhold_queue=True), policy="backup")
    person = d.people[c]
    assert person.recovery_key is not None
    d.client(c).restore_from_backup(person.recovery_key, now=T0 + 50)
    assert d.client(c).holds_current_key(rid)


def test_replayed_suggestions_only_delay() -> None:
    d, server, rid, (a, b, c) = world(Attacks(replay_suggestions=True))
    # carol was served once before her reset; that old key was replayed to her new key pair
    assert any(key[0] == rid and key[1] == c for key in server.attacker.replayed)
    assert d.client(c).holds_current_key(rid)  # rejected, re-queued, then served
    assert violations(d) == []


def test_simulator_counts_stolen_room_keys_with_and_without_the_mitigation() -> None:
    from pathlib import Path

    from sim.engine import run_scenario
    from sim.inputs.scenario import load_scenario

    path = Path(__file__).parents[2] / "scenarios" / "adversary.toml"
    small = {"population.users": 80, "rooms.dms": 30, "rooms.groups": 12, "simulation.horizon_days": 2}
    figures = {}
    for mitigation in ("none", "fingerprints"):
        scenario = load_scenario(path, overrides={**small, "adversary.mitigation": mitigation})
        result = run_scenario(scenario)
        assert result.adversary is not None
        figures[mitigation] = result.adversary
    assert figures["none"]["rooms_with_stolen_keys"] > 0
    assert figures["none"]["messages_readable_by_server"] > 0
    assert figures["fingerprints"]["rooms_with_stolen_keys"] == 0
    assert figures["fingerprints"]["messages_readable_by_server"] == 0


def _own_key_world(mitigations: str, crypto: str = "symbolic"):  # type: ignore[no-untyped-def]
    """The operator answers e2e.fetchMyKeys with its own public key; alice, logging in again and
    unlocking with her password, resets the group's key (resetRoomKey wraps it for herself)."""
    attacks = Attacks(substitute_own_public_key=True)
    d = Deployment(policy="queue", crypto=crypto, seed=5, attacks=attacks, mitigations=mitigations)
    server = d.server
    assert isinstance(server, AdversarialServer)
    server.attacks = Attacks()  # an honest start
    a, b = d.add_user("alice"), d.add_user("bob")
    for uid in (a, b):
        d.login(uid, now=T0)
    rid = d.server.create_private_group(a, "team", [b], now=T0 + 1)
    d.pump(T0 + 1)
    server.attacks = attacks
    d.logout(a, now=T0 + 5)
    d.login(a, now=T0 + 6)  # fetchMyKeys: her private-key blob, the server's public key
    kid = d.client(a).reset_room_key(rid, now=T0 + 7)
    d.pump(T0 + 7)
    d.client(a).send(rid, "after the reset, alice", now=T0 + 8)
    return d, server, rid, kid, (a, b)


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_the_own_public_key_from_the_server_leaks_a_reset_room_key(crypto: str) -> None:
    d, server, rid, kid, (a, _) = _own_key_world("none", crypto)
    assert d.client(a).public_key == server.attacker.public_key  # RC keeps fetchMyKeys' answer
    stolen = server.attacker.stolen.get((rid, kid))
    assert stolen is not None and d.ledger.is_legitimate(rid, kid, stolen)
    assert server.readable_messages() >= 1
    # the server stored her wrap re-made for her real key: she notices nothing
    d.logout(a, now=T0 + 20)
    d.login(a, now=T0 + 21)
    assert d.client(a).holds_current_key(rid)


@pytest.mark.parametrize("mitigations", ["fingerprints", "both"])
def test_deriving_the_own_public_key_stops_the_leak(mitigations: str) -> None:
    d, server, rid, kid, (a, _) = _own_key_world(mitigations)
    assert d.client(a).public_key != server.attacker.public_key
    assert server.attacker.stolen == {} and server.readable_messages() == 0
    assert d.client(a).holds_current_key(rid)


def test_signed_suggestions_do_not_stop_the_own_key_leak() -> None:
    _, server, rid, kid, _ = _own_key_world("signed")
    assert (rid, kid) in server.attacker.stolen


# ---------------------------------------------------------------------------- a swapped recovery request


def _contacts_world(mitigation: str, *, attack: bool) -> tuple[Deployment, str, str, str, Client]:
    """Alice enrolled Bob as her recovery contact, shares a group with him, forgot her E2E
    password and asks from a new device; Bob is online."""
    d = Deployment(
        policy="contacts",
        seed=3,
        attacks=Attacks(swap_recovery_request_key=True) if attack else None,
        mitigations=mitigation,
    )
    alice, bob = d.add_user("alice"), d.add_user("bob")
    d.login(alice, now=T0)
    d.login(bob, now=T0 + 1)
    password = d.people[alice].e2e_password
    assert password is not None
    assert d.client(alice).enrol_recovery_contacts([bob], password) == [bob]
    rid = d.server.create_private_group(alice, "g", [bob], now=T0 + 2)
    d.pump(T0 + 2)
    d.client(bob).sync(now=T0 + 2)
    d.pump(T0 + 2)
    d.logout(alice, now=T0 + 3)
    device = Client(
        d.server, alice, d.backend, ledger=d.ledger, mitigations=d.mitigations, directory=d.directory
    )
    device.login(d.people[alice].account_password, now=T0 + 10)
    assert device.state == E2EEState.ENTER_PASSWORD
    device.request_contact_recovery()
    return d, alice, bob, rid, device


def test_a_swapped_recovery_request_hands_the_server_the_password_unnoticed() -> None:
    d, alice, bob, rid, device = _contacts_world("none", attack=True)
    assert d.client(bob).answer_recovery_requests(now=T0 + 11) == [alice]
    assert device.unlock_from_contacts(now=T0 + 12) is not None  # Alice notices nothing
    assert device.room_state(rid) == E2ERoomState.READY
    attacker = d.server.attacker  # type: ignore[attr-defined]
    assert attacker.passwords == {alice: d.people[alice].e2e_password}
    assert (rid, d.server.room(rid).e2e_key_id) in attacker.stolen


@pytest.mark.parametrize("attack", [True, False], ids=["attacked", "honest"])
def test_a_contact_answers_only_the_one_time_key_it_confirmed(attack: bool) -> None:
    """Under ``fingerprints`` Bob checks the request's key against the fingerprint Alice gave
    him out of band: a swapped key gets no answer (nothing stolen, no recovery either); an
    honest request is answered as before."""
    d, alice, bob, rid, device = _contacts_world("fingerprints", attack=attack)
    answered = d.client(bob).answer_recovery_requests(now=T0 + 11)
    assert answered == ([] if attack else [alice])
    assert (device.unlock_from_contacts(now=T0 + 12) is None) is attack
    if attack:
        attacker = d.server.attacker  # type: ignore[attr-defined]
        assert attacker.passwords == {} and attacker.stolen == {}


def test_a_swapping_server_checks_a_request_first() -> None:
    d = Deployment(policy="contacts", seed=3, attacks=Attacks(swap_recovery_request_key=True))
    for odd in (["alice"], None, "nobody"):
        with pytest.raises(ProtocolError):
            d.server.e2e_contacts_request(odd, "pk")  # type: ignore[arg-type]
