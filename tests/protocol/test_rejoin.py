"""Policy ``rejoin``: a member that lost its key rejoins a room at once, MLS-style.

The world: a private group of Alice (owner), Bob and Carol with two messages, plus Dave, a member
who never logged in (no key pair).  Carol resets her E2E key while everybody else is offline, logs
in again with new keys and calls :meth:`~protocol.Client.rejoin_room`
(:meth:`~protocol.Server.e2e_rejoin_room`, an external commit in RFC 9420 section 12.4.3.2's
sense): the room moves to a new kid, every member with a key pair gets the new key wrapped for it
as its ``E2EKey`` with its previous ``E2EKey`` kept in ``oldRoomKeys``, Dave is queued, and
Carol reads nothing sent before her reset.  Then the refusals, each leaving the room untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import T0, e2e_deployment, read

from protocol import (
    POLICIES,
    Deployment,
    E2EError,
    E2ERoomState,
    PermissionDenied,
    ValidationError,
    check_all,
)
from protocol.rooms import OldRoomKey

HISTORY = ["alice, first key", "bob, first key"]


# ---------------------------------------------------------------------------- helpers


def kid_of(d: Deployment, wrapped: str | None) -> str | None:
    return None if wrapped is None else d.backend.wrapped_kid(wrapped)


def queue(d: Deployment, rid: str) -> list[str] | None:
    waiting = d.server.room(rid).users_waiting
    return None if waiting is None else [w.user_id for w in waiting]


@dataclass
class World:
    d: Deployment
    alice: str
    bob: str
    carol: str
    dave: str
    rid: str
    kid1: str


def world(policy: str = "rejoin", *, stay_online: tuple[str, ...] = ()) -> World:
    """The group with two messages; Carol reset her key (with her account password as the 2FA
    code) and logged in again with new keys while the others were offline (``stay_online``
    excepted: they log in again only after Carol's relogin, so nobody serves her at it)."""
    d = e2e_deployment(policy)
    a, b, c, e = (d.add_user(n) for n in ("alice", "bob", "carol", "dave"))
    for i, uid in enumerate((a, b, c)):
        d.login(uid, now=T0 + i)
    rid = d.server.create_private_group(a, "g", [b, c, e], now=T0 + 5)
    d.pump(T0 + 5)
    kid1 = d.server.room(rid).e2e_key_id
    assert kid1 is not None
    d.clients[a].send(rid, HISTORY[0], now=T0 + 6)
    d.clients[b].send(rid, HISTORY[1], now=T0 + 7)
    d.logout(a, now=T0 + 8)
    d.logout(b, now=T0 + 8)
    d.reset(c, now=T0 + 10, code=d.people[c].account_password)
    assert d.server.e2e_fetch_my_keys(c) == {}
    d.login(c, now=T0 + 20)  # new pair, new password; queued, nobody online to serve her
    assert d.clients[c].room_state(rid) == E2ERoomState.WAITING_KEYS
    assert queue(d, rid) == ([c] if d.server.mechanisms.queue else None)
    names = {"alice": a, "bob": b}
    for name in stay_online:
        d.login(names[name], now=T0 + 21)
    w = World(d, a, b, c, e, rid, kid1)
    return w


# ---------------------------------------------------------------------------- the rejoin


def test_policy_rejoin_keeps_rocketchats_mechanisms() -> None:
    m = POLICIES["rejoin"]
    assert (m.rejoin, m.queue, m.live) == (True, True, True)
    assert (m.backup, m.escrow, m.contacts) == (False, False, False)
    assert [name for name, mech in POLICIES.items() if mech.rejoin] == ["rejoin"]


def test_rejoin_moves_the_room_to_a_new_key_for_every_member_with_a_key_pair() -> None:
    w = world()
    d, rid = w.d, w.rid
    before = {uid: d.server.subscription(rid, uid).e2e_key for uid in (w.alice, w.bob)}
    assert d.server.subscription(rid, w.carol).e2e_key is None
    events: list[tuple[str, str, str]] = []
    d.server.listeners.append(lambda event, room_id, uid: events.append((event, room_id, uid)))

    kid2 = d.clients[w.carol].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)

    room = d.server.room(rid)
    assert kid2 != w.kid1 and room.e2e_key_id == kid2
    carol = d.clients[w.carol]
    assert carol.holds_current_key(rid) and carol.room_state(rid) == E2ERoomState.READY
    assert set(carol.held_keys(rid)) == {kid2}  # none of the room's earlier keys
    assert carol.acquired[-1].source == "rejoined" and carol.acquired[-1].kid == kid2
    for uid in (w.alice, w.bob, w.carol):
        assert kid_of(d, d.server.subscription(rid, uid).e2e_key) == kid2
    # each former holder's E2EKey is now its (only) old key, exactly as it was stored
    for uid in (w.alice, w.bob):
        sub = d.server.subscription(rid, uid)
        assert sub.old_room_keys == [OldRoomKey(w.kid1, T0 + 30, before[uid])]
        assert sub.e2e_suggested_key is None
    assert d.server.subscription(rid, w.carol).old_room_keys is None  # she held nothing
    # Dave has no key pair: handed nothing, queued (Carol's own queue entry is gone)
    assert d.server.subscription(rid, w.dave).e2e_key is None
    assert queue(d, rid) == [w.dave]
    assert ("rejoined", rid, w.carol) in events and ("queued", rid, w.dave) in events
    assert {uid for ev, _, uid in events if ev == "rejoined"} == {w.alice, w.bob, w.carol}
    assert d.server.e2e_fetch_users_waiting_for_group_key(w.carol, [rid]) == {}  # dave: no key


def test_rejoiner_writes_at_once_and_reads_nothing_from_before_its_reset() -> None:
    w = world()
    d, rid = w.d, w.rid
    d.clients[w.carol].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)
    d.clients[w.carol].send(rid, "carol, rejoined", now=T0 + 31)
    assert read(d, d.clients[w.carol], rid) == [None, None, "carol, rejoined"]


def test_offline_members_read_the_new_message_and_the_history_at_their_next_login() -> None:
    w = world()
    d, rid = w.d, w.rid
    kid2 = d.clients[w.carol].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)
    d.clients[w.carol].send(rid, "carol, rejoined", now=T0 + 31)
    for i, uid in enumerate((w.alice, w.bob)):
        client = d.login(uid, now=T0 + 40 + i)
        assert client.private_key is not None
        # the new E2EKey opens with the member's own private key
        opened = d.backend.unwrap_room_key(d.server.subscription(rid, uid).e2e_key, client.private_key)  # type: ignore[arg-type]
        assert opened.kid == kid2
        assert client.holds_current_key(rid)
        assert set(client.held_keys(rid)) == {w.kid1, kid2}
        assert read(d, client, rid) == [*HISTORY, "carol, rejoined"]
    d.clients[w.alice].send(rid, "alice, second key", now=T0 + 50)
    assert read(d, d.clients[w.carol], rid) == [None, None, "carol, rejoined", "alice, second key"]
    passwords = [p.account_password for p in d.people.values()]
    assert check_all(d.server, d.clients, d.ledger, passwords=passwords) == []


def test_online_member_takes_the_new_key_from_the_push_and_the_history_at_relogin() -> None:
    # an online device handles the kid change as RC's onRoomKeyReset: a fresh instance without
    # the old keys (once('READY', decryptOldRoomKeys) already ran), as after e2e.resetRoomKey
    w = world(stay_online=("bob",))
    d, rid = w.d, w.rid
    bob = d.clients[w.bob]
    assert bob.holds_current_key(rid) and read(d, bob, rid) == HISTORY
    kid2 = d.clients[w.carol].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)
    assert bob.holds_current_key(rid) and bob.session(rid).key_id == kid2  # type: ignore[union-attr]
    d.clients[w.carol].send(rid, "carol, rejoined", now=T0 + 31)
    assert read(d, bob, rid) == [None, None, "carol, rejoined"]
    d.logout(w.bob, now=T0 + 40)
    d.login(w.bob, now=T0 + 41)
    assert read(d, bob, rid) == [*HISTORY, "carol, rejoined"]


def test_queued_member_without_keys_is_served_from_the_queue_once_it_has_a_key_pair() -> None:
    w = world()
    d, rid = w.d, w.rid
    kid2 = d.clients[w.carol].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)
    d.logout(w.carol, now=T0 + 31)
    dave = d.login(w.dave, now=T0 + 40)  # first keys; nobody online to serve him
    assert not dave.holds_current_key(rid) and queue(d, rid) == [w.dave]
    d.login(w.carol, now=T0 + 50)
    assert d.tick(w.carol, now=T0 + 51) == 1  # the rejoiner serves the queue like any holder
    assert dave.holds_current_key(rid) and dave.session(rid).key_id == kid2  # type: ignore[union-attr]
    assert queue(d, rid) is None  # the field is removed when the queue empties


def test_check_all_accepts_a_rejoin_after_a_reset() -> None:
    w = world()
    w.d.clients[w.carol].rejoin_room(w.rid, now=T0 + 30)
    w.d.pump(T0 + 30)
    passwords = [p.account_password for p in w.d.people.values()]
    assert check_all(w.d.server, w.d.clients, w.d.ledger, passwords=passwords) == []


def test_rejoiner_holds_the_new_key_before_any_push_is_delivered() -> None:
    w = world()
    carol = w.d.clients[w.carol]
    carol.rejoin_room(w.rid, now=T0 + 30)  # no pump
    assert carol.holds_current_key(w.rid)
    carol.send(w.rid, "carol, at once", now=T0 + 31)


def test_a_ready_member_can_rejoin_too_and_everybody_keeps_the_history() -> None:
    # any member may commit (MLS external-join policy), not only an owner as for resetRoomKey
    w = world(stay_online=("bob",))
    d, rid = w.d, w.rid
    kid2 = d.clients[w.bob].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)
    assert d.server.room(rid).e2e_key_id == kid2
    assert d.server.subscription(rid, w.bob).old_room_keys[0].e2e_key_id == w.kid1  # type: ignore[index]
    assert d.clients[w.bob].holds_current_key(rid)
    # Carol held nothing before: her E2EKey is the new key, her oldRoomKeys stay empty
    assert kid_of(d, d.server.subscription(rid, w.carol).e2e_key) == kid2
    assert d.server.subscription(rid, w.carol).old_room_keys is None
    assert d.clients[w.carol].holds_current_key(rid)


def test_a_second_rejoin_stacks_the_old_keys_newest_first() -> None:
    w = world()
    d, rid = w.d, w.rid
    kid2 = d.clients[w.carol].rejoin_room(rid, now=T0 + 30)
    d.pump(T0 + 30)
    alice = d.login(w.alice, now=T0 + 35)
    assert set(alice.held_keys(rid)) == {w.kid1, kid2}
    kid3 = alice.rejoin_room(rid, now=T0 + 40)
    d.pump(T0 + 40)
    assert d.server.room(rid).e2e_key_id == kid3 and len({w.kid1, kid2, kid3}) == 3
    alice_old = d.server.subscription(rid, w.alice).old_room_keys
    assert [(k.e2e_key_id, k.ts) for k in alice_old] == [(kid2, T0 + 40), (w.kid1, T0 + 30)]  # type: ignore[union-attr]
    carol_old = d.server.subscription(rid, w.carol).old_room_keys
    assert [k.e2e_key_id for k in carol_old] == [kid2]  # type: ignore[union-attr]
    # the rejoining device keeps none of the earlier keys (until a fresh instance loads them)
    assert set(alice.held_keys(rid)) == {kid3} and alice.holds_current_key(rid)
    assert read(d, alice, rid) == [None, None]
    d.logout(w.alice, now=T0 + 50)
    d.login(w.alice, now=T0 + 51)
    assert set(alice.held_keys(rid)) == {w.kid1, kid2, kid3}
    assert read(d, alice, rid) == HISTORY


# ---------------------------------------------------------------------------- refusals


def unchanged(w: World, before: dict[str, object]) -> None:
    d = w.d
    assert d.server.room(w.rid).e2e_key_id == w.kid1
    assert {uid: d.server.subscription(w.rid, uid).e2e_key for uid in before} == before
    assert queue(d, w.rid) == ([w.carol] if d.server.mechanisms.queue else None)


def snapshot(w: World) -> dict[str, object]:
    return {uid: w.d.server.subscription(w.rid, uid).e2e_key for uid in (w.alice, w.bob, w.carol, w.dave)}


@pytest.mark.parametrize("policy", [p for p, m in POLICIES.items() if not m.rejoin])
def test_rejoin_needs_policy_rejoin(policy: str) -> None:
    w = world(policy)
    before = snapshot(w)
    with pytest.raises(E2EError) as exc:
        w.d.clients[w.carol].rejoin_room(w.rid, now=T0 + 30)
    assert exc.value.code == "error-not-allowed"
    assert policy in exc.value.message
    unchanged(w, before)
    assert w.d.clients[w.carol].room_state(w.rid) == E2ERoomState.WAITING_KEYS


def test_rejoin_by_a_non_member_is_refused() -> None:
    w = world()
    d = w.d
    eve = d.add_user("eve")
    d.login(eve, now=T0 + 25)
    before = snapshot(w)
    with pytest.raises(PermissionDenied) as exc:
        d.clients[eve].rejoin_room(w.rid, now=T0 + 30)
    assert exc.value.code == "error-invalid-room"
    with pytest.raises(PermissionDenied) as exc2:
        d.server.e2e_rejoin_room(eve, w.rid, "kid-x", {eve: "kid-xAAAA"}, now=T0 + 30)
    assert exc2.value.code == "error-invalid-room"
    unchanged(w, before)


def test_rejoin_without_a_key_pair_is_refused() -> None:
    w = world()
    before = snapshot(w)
    with pytest.raises(E2EError) as exc:
        w.d.server.e2e_rejoin_room(w.dave, w.rid, "kid-x", {w.dave: "kid-xAAAA"}, now=T0 + 30)
    assert exc.value.code == "error-e2e-key-reset-failed"
    unchanged(w, before)


def wrapped_for_carol(w: World) -> tuple[str, dict[str, str]]:
    """A genuine new key wrapped for Carol, and its kid."""
    d, carol = w.d, w.d.clients[w.carol]
    assert carol.public_key is not None
    key = d.backend.generate_room_key(carol.entropy)
    return key.kid, {w.carol: d.backend.wrap_room_key(key, carol.public_key, carol.entropy)}


def test_keys_must_include_the_caller() -> None:
    w = world()
    before = snapshot(w)
    kid, keys = wrapped_for_carol(w)
    for bad in ({w.alice: keys[w.carol]}, {}, [(w.carol, keys[w.carol])]):
        with pytest.raises(ValidationError) as exc:
            w.d.server.e2e_rejoin_room(w.carol, w.rid, kid, bad, now=T0 + 30)  # type: ignore[arg-type]
        assert exc.value.code == "error-invalid-params"
    unchanged(w, before)


def test_keys_naming_a_non_member_are_refused_before_any_write() -> None:
    w = world()
    d = w.d
    eve = d.add_user("eve")
    before = snapshot(w)
    kid, keys = wrapped_for_carol(w)
    # the caller's own entry comes first: a partial write would already have stored it
    with pytest.raises(PermissionDenied) as exc:
        d.server.e2e_rejoin_room(w.carol, w.rid, kid, {**keys, eve: keys[w.carol]}, now=T0 + 30)
    assert exc.value.code == "error-not-allowed" and repr(eve) in exc.value.message
    unchanged(w, before)


@pytest.mark.parametrize("bad_wrap", ["", None, 42])
def test_an_empty_or_non_string_wrapped_key_is_refused(bad_wrap: object) -> None:
    w = world()
    before = snapshot(w)
    kid, keys = wrapped_for_carol(w)
    with pytest.raises(ValidationError) as exc:
        w.d.server.e2e_rejoin_room(w.carol, w.rid, kid, {**keys, w.alice: bad_wrap}, now=T0 + 30)  # type: ignore[dict-item]
    assert exc.value.code == "error-invalid-params"
    unchanged(w, before)


def test_a_non_string_key_id_is_refused() -> None:
    w = world()
    before = snapshot(w)
    _, keys = wrapped_for_carol(w)
    with pytest.raises(ValidationError) as exc:
        w.d.server.e2e_rejoin_room(w.carol, w.rid, 7, keys, now=T0 + 30)  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    unchanged(w, before)


def test_rejoin_of_a_room_without_a_key_yet_is_refused() -> None:
    d = e2e_deployment("rejoin")
    a, b = d.add_user("alice"), d.add_user("bob")
    d.login(a, now=T0)
    d.logout(a, now=T0 + 1)
    rid = d.server.create_private_group(b, "g", [a], now=T0 + 2)  # nobody READY: no kid
    assert d.server.room(rid).e2e_key_id is None
    with pytest.raises(E2EError) as exc:
        d.server.e2e_rejoin_room(a, rid, "kid-x", {a: "kid-xAAAA"}, now=T0 + 3)
    assert exc.value.code == "error-e2e-key-reset-failed"
    assert d.server.room(rid).e2e_key_id is None
