"""A person with two devices: a web client and a phone running Rocket.Chat's mobile app.

The world: a private group of Alice (owner), Bob and Carol with one message.  Bob also has a
phone (``Client(app="mobile")``), signed in with the same key pair.  What the second device
changes:

* a live key request (``e2ekeyRequest`` from a member's handshake) is answered by the phone, and
  under policy ``rocketchat`` by the phone only: the current web client has no listener for it
  (policy ``live`` keeps the legacy web client, which answers);
* the phone runs the distribution loop like the web client;
* a reset on one device logs out every device (``resetUserE2EKey.ts``: ``user.forceLogout``);
* a person who forgot its E2E password changes it on the phone, which still holds the key, and
  unlocks a new web client with it: nothing is lost;
* the invariants accept an ``E2EKey`` a device of the same user accepted after a reset, and only
  when told about that device.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import T0, e2e_deployment, read

from protocol import Client, Deployment, E2EEState, E2ERoomState, ValidationError, check_all


@dataclass
class World:
    d: Deployment
    alice: str
    bob: str
    carol: str
    phone: Client
    rid: str


def world(policy: str) -> World:
    """The group, one message; Bob's phone signed in; everybody logged out but the phone."""
    d = e2e_deployment(policy)
    alice, bob, carol = (d.add_user(n) for n in ("alice", "bob", "carol"))
    for uid in (alice, bob, carol):
        d.login(uid, now=T0)
    rid = d.server.create_private_group(alice, "g", [bob, carol], encrypted=True, now=T0)
    d.pump(T0)
    for uid in (alice, bob, carol):
        d.client(uid).sync(now=T0)
    d.pump(T0)
    d.client(alice).send(rid, "before", now=T0 + 1)
    phone = d.add_device(bob)
    d.login(bob, now=T0 + 2, device=phone)
    assert phone.room_state(rid) == E2ERoomState.READY
    for uid in (alice, bob, carol):
        d.logout(uid, now=T0 + 3)
    return World(d, alice, bob, carol, phone, rid)


def carol_resets(w: World, now: float) -> Client:
    """Carol resets her key and logs in again with new keys (her handshake asks for the room
    key: whoever answers, answers at this login)."""
    d = w.d
    d.login(w.carol, now=now)
    d.reset(w.carol, now=now + 1, code=d.people[w.carol].account_password)
    return d.login(w.carol, now=now + 2)


def test_an_app_is_web_or_mobile() -> None:
    d = e2e_deployment("rocketchat")
    uid = d.add_user("alice")
    assert d.client(uid).app == "web"
    with pytest.raises(ValidationError) as err:
        Client(d.server, uid, d.backend, app="desktop")
    assert err.value.code == "error-invalid-params"


@pytest.mark.parametrize("policy", ["rocketchat", "live"])
def test_the_phone_answers_a_live_request(policy: str) -> None:
    """Carol's handshake asks the members connected now; only Bob's phone is: it answers."""
    w = world(policy)
    carol = carol_resets(w, T0 + 100)
    assert carol.room_state(w.rid) == E2ERoomState.READY
    assert [a.source for a in carol.acquired[carol.reset_marks[-1] :]] == ["suggestion"]
    assert not w.d.server.room(w.rid).is_waiting(w.carol)


@pytest.mark.parametrize(("policy", "answered"), [("rocketchat", False), ("live", True)])
def test_a_web_client_answers_only_under_the_legacy_live_policy(policy: str, answered: bool) -> None:
    """Bob online on the web alone: under rocketchat nobody answers Carol's request (she waits
    in the queue for a holder's loop); under live, Bob's web client answers at once."""
    w = world(policy)
    w.phone.logout()
    w.d.login(w.bob, now=T0 + 50)
    carol = carol_resets(w, T0 + 100)
    assert (carol.room_state(w.rid) == E2ERoomState.READY) is answered
    assert w.d.server.room(w.rid).is_waiting(w.carol) is not answered


def test_the_phone_runs_the_distribution_loop() -> None:
    w = world("queue")
    carol = carol_resets(w, T0 + 100)
    assert carol.room_state(w.rid) == E2ERoomState.WAITING_KEYS
    assert w.d.server.room(w.rid).is_waiting(w.carol)
    assert w.phone.has_distribution_work()
    assert w.phone.tick(now=T0 + 110) == 1
    assert w.d.server.room(w.rid).subscriptions[w.carol].e2e_suggested_key


def test_a_reset_logs_out_every_device() -> None:
    w = world("rocketchat")
    d = w.d
    web = d.login(w.bob, now=T0 + 100)
    assert web.online and w.phone.online
    d.reset(w.bob, now=T0 + 101, code=d.people[w.bob].account_password)
    assert not web.online and not w.phone.online
    assert w.phone.private_key is None and w.phone.session(w.rid) is None


def test_a_forgotten_password_is_changed_on_the_phone() -> None:
    """Bob forgot his E2E password: his phone still holds the key, sets a new password, and a
    new web client unlocks with it; every room and its history are there, nothing was reset."""
    w = world("rocketchat")
    d = w.d
    public_key = d.server.user(w.bob).e2e_public_key
    w.phone.change_password("a new password, typed on the phone", now=T0 + 200)
    web = d.add_device(w.bob, app="web")
    web.login(d.people[w.bob].account_password, now=T0 + 201)
    assert web.state == E2EEState.ENTER_PASSWORD
    assert not web.enter_password(d.people[w.bob].e2e_password or "", now=T0 + 202)  # the old one
    assert web.enter_password("a new password, typed on the phone", now=T0 + 203)
    assert d.server.user(w.bob).e2e_public_key == public_key
    assert web.room_state(w.rid) == E2ERoomState.READY
    assert read(d, web, w.rid) == ["before"]


def test_the_invariants_take_the_other_devices_word_for_an_e2ekey() -> None:
    """Bob resets on the web while his phone is away; Alice serves him; the phone (signed in
    again) accepts the suggestion, and the web client later finds the key as its ``E2EKey``.
    Told about the phone, the invariants accept that; told nothing, they flag it."""
    w = world("queue")
    d = w.d
    web = d.login(w.bob, now=T0 + 100)
    d.reset(w.bob, now=T0 + 101, code=d.people[w.bob].account_password)
    d.login(w.bob, now=T0 + 102)  # new keys on the web; the room key waits
    web.logout()
    d.login(w.bob, now=T0 + 103, device=w.phone)  # the phone signs in again with the new password
    d.login(w.alice, now=T0 + 104)
    d.tick(w.alice, now=T0 + 110)  # Alice serves Bob; the phone takes the suggestion
    assert w.phone.room_state(w.rid) == E2ERoomState.READY
    assert [a.source for a in w.phone.acquired if a.room_id == w.rid][-1] == "suggestion"
    d.login(w.bob, now=T0 + 120)  # the web client reads the E2EKey the phone accepted
    assert [a.source for a in web.acquired[web.reset_marks[-1] :]] == ["E2EKey"]
    flagged = check_all(d.server, d.clients, d.ledger)
    assert [v.invariant for v in flagged] == ["reset_users_recover_properly"]
    assert check_all(d.server, d.clients, d.ledger, other_devices=d.other_devices) == []
