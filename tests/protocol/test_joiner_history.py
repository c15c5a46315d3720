"""What a joiner reads of a room's past: Rocket.Chat (everything), Matrix's megolm ratchet
(policy ``ratchet``: nothing before it joined) and MSC4268 key bundles on invite (policy
``bundle``: the history an inviter shares, for explicit invites to rooms whose history is
``shared``).

The world: Alice and Bob in a private group; Alice sends "before"; then Carol is added while
everybody stays online, and Alice sends "after".
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import T0, e2e_deployment, read

from protocol import Client, Deployment, E2EError, NotFoundError, PermissionDenied, ValidationError, check_all


@dataclass
class World:
    d: Deployment
    alice: str
    bob: str
    carol: str
    rid: str


def world(policy: str, crypto: str = "symbolic", visibility: str = "shared") -> World:
    d = e2e_deployment(policy, crypto=crypto)
    alice, bob, carol = (d.add_user(n) for n in ("alice", "bob", "carol"))
    for uid in (alice, bob, carol):
        d.login(uid, now=T0)
    rid = d.server.create_private_group(alice, "g", [bob], encrypted=True, now=T0 + 1)
    if policy in ("ratchet", "bundle"):
        d.server.set_room_history_visibility(alice, rid, visibility)
    d.pump(T0 + 1)
    for uid in (alice, bob):
        d.client(uid).sync(now=T0 + 1)
    d.pump(T0 + 1)
    d.client(alice).send(rid, "before", now=T0 + 2)
    return World(d, alice, bob, carol, rid)


def settle(d: Deployment, now: float) -> None:
    """Every client ticks and takes what reached it."""
    for _ in range(2):
        for client in d.clients.values():
            client.tick(now=now)
        d.pump(now)


def relogin(d: Deployment, uid: str, now: float) -> Client:
    """A fresh login: the client reads what the server keeps for it (an online client forgets
    its old keys when a room's key changes, as RC's ``onRoomKeyReset`` does)."""
    d.logout(uid, now=now)
    return d.login(uid, now=now)


@pytest.fixture(params=["symbolic", "real"])
def crypto(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_rocketchat_joiner_reads_the_whole_history(crypto: str) -> None:
    w = world("rocketchat", crypto)
    d = w.d
    d.server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    settle(d, T0 + 11)
    d.client(w.alice).send(w.rid, "after", now=T0 + 12)
    assert read(d, d.client(w.carol), w.rid) == ["before", "after"]
    assert check_all(d.server, d.clients, d.ledger) == []


def test_ratchet_joiner_reads_only_what_is_sent_after_it_joined(crypto: str) -> None:
    w = world("ratchet", crypto)
    d, server = w.d, w.d.server
    old_kid = server.room(w.rid).e2e_key_id
    d.server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    settle(d, T0 + 11)
    # nobody hands Carol the key made before she joined: not the queue, not a holder's loop
    assert server.room(w.rid).users_waiting is None
    assert server.subscription(w.rid, w.carol).e2e_suggested_key is None
    assert server.e2e_fetch_users_waiting_for_group_key(w.bob, [w.rid]) == {}
    assert server.e2e_request_subscription_keys(w.carol, w.rid, now=T0 + 11) == []
    assert server.e2e_session_due(w.alice, w.rid)
    # Alice's next message starts a new session, handed to Bob and Carol directly
    d.client(w.alice).send(w.rid, "after", now=T0 + 12)
    d.pump(T0 + 12)
    room = server.room(w.rid)
    assert room.e2e_key_id != old_kid and not server.e2e_session_due(w.alice, w.rid)
    assert read(d, d.client(w.carol), w.rid) == [None, "after"]
    assert read(d, relogin(d, w.bob, T0 + 13), w.rid) == ["before", "after"]  # members keep history
    assert [k.e2e_key_id for k in server.subscription(w.rid, w.bob).old_room_keys or []] == [old_kid]
    assert check_all(d.server, d.clients, d.ledger) == []


def test_ratchet_reset_member_is_not_passed_keys_from_before_it_joined() -> None:
    w = world("ratchet")
    d, server = w.d, w.d.server
    old_kid = server.room(w.rid).e2e_key_id
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    d.client(w.alice).send(w.rid, "after", now=T0 + 11)  # a new session, Carol's first key
    d.pump(T0 + 11)
    d.client(w.alice).reset_room_key(w.rid, now=T0 + 12)  # a later key: Carol's old key now
    d.pump(T0 + 12)
    settle(d, T0 + 13)
    carol_old = {k.e2e_key_id for k in server.subscription(w.rid, w.carol).old_room_keys or []}
    assert old_kid not in carol_old and len(carol_old) == 1
    carol = relogin(d, w.carol, T0 + 14)
    assert carol.holds_current_key(w.rid)
    assert read(d, carol, w.rid) == [None, "after"]


@pytest.mark.parametrize("visibility", ["shared", "world_readable"])
def test_bundle_invitee_reads_the_shared_history(crypto: str, visibility: str) -> None:
    w = world("bundle", crypto, visibility)
    d, server = w.d, w.d.server
    d.logout(w.carol, now=T0 + 9)
    assert d.client(w.alice).invite(w.rid, w.carol, now=T0 + 10) == 1
    assert server.e2e_bundle_fetch(w.carol, w.rid)["sender"] == w.alice  # type: ignore[index]
    carol = d.login(w.carol, now=T0 + 20)  # accepting the invite: the bundle is imported
    assert server.e2e_bundle_fetch(w.carol, w.rid) is None
    assert read(d, carol, w.rid) == ["before"]
    assert not carol.holds_current_key(w.rid)  # the past, not the room's key
    d.client(w.alice).send(w.rid, "after", now=T0 + 21)
    d.pump(T0 + 21)
    assert read(d, carol, w.rid) == ["before", "after"]
    assert carol.holds_current_key(w.rid)
    assert [a.source for a in carol.acquired].count("bundle") == 1
    assert check_all(d.server, d.clients, d.ledger) == []


@pytest.mark.parametrize("visibility", ["joined", "invited"])
def test_bundle_no_history_when_the_room_does_not_share_it(visibility: str) -> None:
    w = world("bundle", visibility=visibility)
    d = w.d
    assert d.client(w.alice).invite(w.rid, w.carol, now=T0 + 10) == 0
    assert d.server.e2e_bundle_fetch(w.carol, w.rid) is None
    d.client(w.alice).send(w.rid, "after", now=T0 + 11)
    d.pump(T0 + 11)
    assert read(d, d.client(w.carol), w.rid) == [None, "after"]


def test_bundle_a_join_without_an_inviter_brings_no_history() -> None:
    w = world("bundle")
    d = w.d
    d.server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)  # a team's auto-join
    d.client(w.alice).send(w.rid, "after", now=T0 + 11)
    d.pump(T0 + 11)
    assert read(d, d.client(w.carol), w.rid) == [None, "after"]


def test_bundle_carries_every_key_the_inviter_holds() -> None:
    w = world("bundle")
    d, server = w.d, w.d.server
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    d.client(w.alice).send(w.rid, "second", now=T0 + 11)  # a new session for Carol: 2 keys now
    d.pump(T0 + 11)
    erin = d.add_user("erin")
    d.login(erin, now=T0 + 12)
    assert d.client(w.bob).invite(w.rid, erin, now=T0 + 13) == 2
    d.pump(T0 + 13)
    assert read(d, d.client(erin), w.rid) == ["before", "second"]


def test_bundle_keys_that_do_not_open_or_lie_about_their_kid_are_skipped() -> None:
    w = world("bundle")
    d, server = w.d, w.d.server
    d.logout(w.carol, now=T0 + 9)
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    alice = d.client(w.alice)
    kid = server.room(w.rid).e2e_key_id
    carol_pk = server.user(w.carol).e2e_public_key
    other = d.backend.generate_room_key(alice.entropy)
    wrapped_other = d.backend.wrap_room_key(other, carol_pk, alice.entropy)  # type: ignore[arg-type]
    server.e2e_bundle_upload(w.alice, w.rid, w.carol, {kid: wrapped_other, "junk": "not a key"}, now=T0 + 10)  # type: ignore[dict-item]
    carol = d.login(w.carol, now=T0 + 20)
    assert read(d, carol, w.rid) == [None]
    assert server.e2e_bundle_fetch(w.carol, w.rid) is None  # done, even with nothing in it


def test_bundle_and_session_calls_are_checked() -> None:
    w = world("bundle")
    server = w.d.server
    with pytest.raises(PermissionDenied):
        server.e2e_bundle_upload(w.alice, w.rid, w.carol, {"k": "v"}, now=T0)  # not invited
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    for keys in ({}, {"k": ""}, {"": "v"}, ["k"]):
        with pytest.raises(ValidationError):
            server.e2e_bundle_upload(w.alice, w.rid, w.carol, keys, now=T0)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        server.e2e_bundle_import(w.carol, w.rid, [])
    with pytest.raises(ValidationError):
        server.set_room_history_visibility(w.alice, w.rid, "public")
    with pytest.raises(ValidationError):
        server.e2e_new_session(w.alice, w.rid, "kid", {w.bob: "x"}, now=T0)  # the caller's own missing
    with pytest.raises(PermissionDenied):
        server.e2e_new_session(w.alice, w.rid, "kid", {w.alice: "x", "nobody": "y"}, now=T0)
    queue_only = e2e_deployment("queue")
    a = queue_only.add_user("a")
    rid = queue_only.server.create_private_group(a, "g", [], encrypted=True, now=T0)
    for call in (
        lambda: queue_only.server.e2e_bundle_fetch(a, rid),
        lambda: queue_only.server.e2e_new_session(a, rid, "kid", {a: "x"}, now=T0),
    ):
        with pytest.raises(E2EError):
            call()


def test_only_ratchet_and_bundle_change_what_joiners_get() -> None:
    from protocol import POLICIES

    assert [p for p, m in POLICIES.items() if m.ratchet] == ["ratchet", "bundle"]
    assert [p for p, m in POLICIES.items() if m.bundle] == ["bundle"]


# ---------------------------------------------------------------------------- found in review


def test_a_bundle_left_for_a_member_who_left_is_gone_when_it_joins_again() -> None:
    w = world("bundle")
    d, server = w.d, w.d.server
    d.logout(w.carol, now=T0 + 9)
    assert d.client(w.alice).invite(w.rid, w.carol, now=T0 + 10) == 1  # never taken
    server.leave_room(w.carol, w.rid)
    d.client(w.alice).send(w.rid, "while away", now=T0 + 11)
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 12)  # a join without an inviter
    d.client(w.alice).send(w.rid, "after", now=T0 + 13)
    d.pump(T0 + 13)
    carol = d.login(w.carol, now=T0 + 20)
    assert read(d, carol, w.rid) == [None, None, "after"]


def test_ratchet_refuses_a_wrapped_key_computed_before_the_room_moved_on() -> None:
    w = world("ratchet")
    d, server = w.d, w.d.server
    alice = d.client(w.alice)
    old = alice.held_keys(w.rid)[server.room(w.rid).e2e_key_id]  # type: ignore[index]
    stale = d.backend.wrap_room_key(old, server.user(w.carol).e2e_public_key, alice.entropy)  # type: ignore[arg-type]
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    alice.send(w.rid, "after", now=T0 + 11)  # a new session: Carol holds the new key
    server.e2e_provide_users_suggested_group_keys(
        w.bob, {w.rid: [{"_id": w.carol, "key": stale}]}, now=T0 + 12
    )
    server.e2e_update_group_key(w.bob, w.rid, w.carol, stale)
    assert server.subscription(w.rid, w.carol).e2e_suggested_key is None


def test_ratchet_a_key_made_at_the_instant_of_a_join_but_before_it_is_not_the_joiners() -> None:
    w = world("ratchet")
    d, server = w.d, w.d.server
    d.client(w.alice).reset_room_key(w.rid, now=T0 + 10)
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)  # the same instant, after it
    assert server.waits_for_session(w.rid, w.carol) and not server.room(w.rid).is_waiting(w.carol)


def test_ratchet_keeps_every_key_a_joiner_was_handed() -> None:
    """Each join starts a new key; Matrix keeps every session, so the first joiner still reads
    everything sent after it joined after many more joins (RC would keep 10 old keys)."""
    w = world("ratchet")
    d, server = w.d, w.d.server
    server.add_user_to_room(w.alice, w.rid, w.carol, now=T0 + 10)
    for i in range(12):
        extra = d.add_user(f"joiner{i}")
        d.login(extra, now=T0 + 20 + 2 * i)
        server.add_user_to_room(w.alice, w.rid, extra, now=T0 + 20 + 2 * i)
        d.client(w.alice).send(w.rid, f"m{i}", now=T0 + 21 + 2 * i)
        d.pump(T0 + 21 + 2 * i)
    assert len(server.subscription(w.rid, w.carol).old_room_keys or []) == 11
    assert read(d, relogin(d, w.carol, T0 + 100), w.rid) == [None, *(f"m{i}" for i in range(12))]


def test_a_new_session_is_open_to_the_substituted_own_public_key() -> None:
    from protocol.adversary import AdversarialServer, Attacks

    attacks = Attacks(substitute_own_public_key=True)
    d = Deployment(policy="ratchet", seed=5, attacks=attacks)
    server = d.server
    assert isinstance(server, AdversarialServer)
    server.attacks = Attacks()  # an honest start
    a, b, c = d.add_user("alice"), d.add_user("bob"), d.add_user("carol")
    for uid in (a, b, c):
        d.login(uid, now=T0)
    rid = server.create_private_group(a, "team", [b], now=T0 + 1)
    d.pump(T0 + 1)
    server.attacks = attacks
    d.logout(a, now=T0 + 5)
    d.login(a, now=T0 + 6)  # fetchMyKeys: her private-key blob, the server's public key
    server.add_user_to_room(a, rid, c, now=T0 + 7)
    d.client(a).send(rid, "after the join", now=T0 + 8)  # a new session, wrapped for herself too
    kid = server.room(rid).e2e_key_id
    assert (rid, kid) in server.attacker.stolen
    assert d.client(a).holds_current_key(rid)  # re-wrapped for her real key: nothing shows
