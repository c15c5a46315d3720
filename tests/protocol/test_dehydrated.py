"""Policy ``dehydrated``: a Matrix-style dehydrated device per person (MSC3814).

The world: Alice, Bob and Carol; Bob made a dehydrated device at his first login, before Alice
created their private group, so Alice's ``createGroupKey`` shared the room key with it.  Bob
resets his E2E key while everybody else is offline, logs in again with new keys and rehydrates
with his recovery secret: the room is back, with its history, and nobody was online.  What the
device got before is all it gives: the new device made at the rehydration has nothing until a
member shares the current key again (at its next message, or a new key).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import T0, e2e_deployment, read

from protocol import Client, Deployment, E2EError, E2ERoomState, NotFoundError, ValidationError, check_all

SECRET = "bob's recovery passphrase"


@dataclass
class World:
    d: Deployment
    alice: str
    bob: str
    carol: str
    rid: str


@pytest.fixture(params=["symbolic", "real"])
def w(request: pytest.FixtureRequest) -> World:
    d = e2e_deployment("dehydrated", crypto=request.param)
    alice, bob, carol = (d.add_user(n) for n in ("alice", "bob", "carol"))
    for uid in (alice, bob, carol):
        d.login(uid, now=T0)
    d.client(bob).dehydrate(SECRET, now=T0 + 1)
    rid = d.server.create_private_group(alice, "g", [bob, carol], encrypted=True, now=T0 + 2)
    d.pump(T0 + 2)
    for uid in (alice, bob, carol):
        d.client(uid).sync(now=T0 + 2)
    d.pump(T0 + 2)
    d.client(alice).send(rid, "before", now=T0 + 3)
    for uid in (alice, bob, carol):
        d.logout(uid, now=T0 + 4)
    return World(d, alice, bob, carol, rid)


def bob_resets(w: World, now: float) -> Client:
    d = w.d
    d.login(w.bob, now=now)
    d.reset(w.bob, now=now + 1, code=d.people[w.bob].account_password)
    bob = d.login(w.bob, now=now + 2)
    assert bob.room_state(w.rid) == E2ERoomState.WAITING_KEYS
    return bob


def test_the_device_brings_the_room_back_with_nobody_online(w: World) -> None:
    d = w.d
    first = d.server.e2e_dehydrated_fetch(w.bob)
    assert [(k["rid"], k["kid"]) for k in first["keys"]] == [(w.rid, d.server.room(w.rid).e2e_key_id)]
    bob = bob_resets(w, T0 + 100)
    assert bob.rehydrate(SECRET, now=T0 + 103) == [w.rid]
    d.pump(T0 + 103)
    assert bob.room_state(w.rid) == E2ERoomState.READY
    assert [a.source for a in bob.acquired[bob.reset_marks[-1] :]] == ["dehydrated"]
    assert read(d, bob, w.rid) == ["before"]
    # a new device replaced the old one, and has nothing yet
    second = d.server.e2e_dehydrated_fetch(w.bob)
    assert second["deviceId"] != first["deviceId"] and second["keys"] == []
    assert check_all(d.server, d.clients, d.ledger, passwords=[SECRET]) == []


def test_only_keys_shared_after_the_device_exists_come_back(w: World) -> None:
    d = w.d
    bob = bob_resets(w, T0 + 100)
    bob.rehydrate(SECRET, now=T0 + 103)
    d.logout(w.bob, now=T0 + 104)
    bob = bob_resets(w, T0 + 200)  # the new device got nothing: nothing comes back
    assert bob.rehydrate(SECRET, now=T0 + 203) == []
    assert bob.room_state(w.rid) == E2ERoomState.WAITING_KEYS
    d.logout(w.bob, now=T0 + 204)
    # Carol, holding the key, writes: her client shares the current key with Bob's new device
    d.login(w.carol, now=T0 + 300)
    d.client(w.carol).send(w.rid, "carol writes", now=T0 + 301)
    d.logout(w.carol, now=T0 + 302)
    bob = d.login(w.bob, now=T0 + 400)  # new keys of T0 + 202 still; no holder online
    assert bob.rehydrate(SECRET, now=T0 + 401) == [w.rid]
    d.pump(T0 + 401)
    assert read(d, bob, w.rid) == ["before", "carol writes"]  # keysim's keys have no ratchet


def test_a_wrong_secret_restores_nothing_and_keeps_the_device(w: World) -> None:
    d = w.d
    before = d.server.e2e_dehydrated_fetch(w.bob)
    bob = bob_resets(w, T0 + 100)
    assert bob.rehydrate("not the passphrase", now=T0 + 103) == []
    assert d.server.e2e_dehydrated_fetch(w.bob) == before
    assert bob.rehydrate(SECRET, now=T0 + 104) == [w.rid]


def test_refusals() -> None:
    d = e2e_deployment("rocketchat")
    uid = d.add_user("alice")
    d.login(uid, now=T0)
    with pytest.raises(E2EError) as err:
        d.client(uid).dehydrate(SECRET, now=T0 + 1)
    assert err.value.code == "error-not-allowed"
    d = e2e_deployment("dehydrated")
    uid = d.add_user("alice")
    d.login(uid, now=T0)
    with pytest.raises(NotFoundError) as missing:
        d.client(uid).rehydrate(SECRET, now=T0 + 1)
    assert missing.value.code == "error-dehydrated-device-not-found"
    with pytest.raises(ValidationError):
        d.client(uid).dehydrate("", now=T0 + 1)


def test_shares_are_checked_before_anything_is_stored(w: World) -> None:
    d = w.d
    server, kid = d.server, d.server.room(w.rid).e2e_key_id
    assert kid is not None
    before = server.e2e_dehydrated_fetch(w.bob)
    for key_id, keys in [
        ("not-the-kid", {w.bob: "x"}),
        (None, {w.bob: "x"}),
        (kid, {w.bob: "x", w.alice: ""}),
        (kid, {7: "x"}),
        (kid, ["x"]),
    ]:
        with pytest.raises(ValidationError) as err:
            server.e2e_dehydrated_send(w.carol, w.rid, key_id, keys)  # type: ignore[arg-type]
        assert err.value.code == "error-invalid-params"
    assert server.e2e_dehydrated_fetch(w.bob) == before
    with pytest.raises(ValidationError):
        server.e2e_dehydrated_put(w.bob, "pk", "sealed", now=float("nan"))


def test_one_members_garbage_does_not_stand_for_anothers_share(w: World) -> None:
    """Carol sends Bob's new device garbage under the current kid first; Alice's real share at
    her next message still reaches it (to-device messages are kept per sender), and Bob's
    rehydration takes the entry that opens."""
    d = w.d
    bob = bob_resets(w, T0 + 100)
    bob.rehydrate(SECRET, now=T0 + 103)  # a new, empty device
    d.logout(w.bob, now=T0 + 104)
    kid = d.server.room(w.rid).e2e_key_id
    assert kid is not None
    d.server.e2e_dehydrated_send(w.carol, w.rid, kid, {w.bob: "garbage"})
    assert w.bob in d.server.e2e_dehydrated_lacking(w.alice, w.rid, kid)
    d.login(w.alice, now=T0 + 200)
    d.client(w.alice).send(w.rid, "alice again", now=T0 + 201)
    d.logout(w.alice, now=T0 + 202)
    bob = bob_resets(w, T0 + 300)
    assert bob.rehydrate(SECRET, now=T0 + 303) == [w.rid]
