"""Every E2EE flow of spec section 3, scripted step by step with explicit ``now``.

Each test drives a :class:`protocol.Deployment` (one server, one device per user, the transport
``pump``) the way Rocket.Chat's clients and server would, asserts the documents with RC's field
names, and ends with :func:`protocol.check_all` returning no violation.  Where RC has a quirk the
code reproduces, the test name says so.
"""

from __future__ import annotations

import json

import pytest
from conftest import T0
from mnemonic import Mnemonic

from protocol import (
    POLICIES,
    Deployment,
    E2EError,
    E2EEState,
    E2ERoomState,
    PermissionDenied,
    Settings,
    TwoFactorError,
    ValidationError,
    check_all,
)
from protocol import totp as T

BIP39 = frozenset(Mnemonic("english").wordlist)
QUEUED = [name for name, m in POLICIES.items() if m.queue]  # the policies that keep usersWaitingForE2EKeys
# ...and queue a joiner for the room's current key (under ratchet a joiner waits for a new session)
JOINER_QUEUED = [name for name in QUEUED if not POLICIES[name].ratchet]


# ---------------------------------------------------------------------------- helpers


def deploy(
    policy: str = "queue", *, crypto: str = "symbolic", seed: int = 0, **settings: object
) -> Deployment:
    """A deployment with E2EE on and encrypted-by-default rooms; extra ``settings`` override."""
    base: dict[str, object] = {
        "e2e_enabled": True,
        "e2e_default_direct_rooms": True,
        "e2e_default_private_rooms": True,
        "email_auto_opt_in": False,
        "enforce_password_fallback": False,
    }
    return Deployment(policy=policy, crypto=crypto, seed=seed, settings=Settings(**{**base, **settings}))  # type: ignore[arg-type]


def users(d: Deployment, *names: str) -> list[str]:
    return [d.add_user(n) for n in names]


def check(d: Deployment) -> None:
    passwords = [p.account_password for p in d.people.values()]
    assert check_all(d.server, d.clients, d.ledger, passwords=passwords) == []


def group(d: Deployment, owner: str, members: list[str], *, now: float, name: str = "g") -> str:
    rid = d.server.create_private_group(owner, name, members, now=now)
    d.pump(now)
    return rid


def read(d: Deployment, uid: str, rid: str) -> list[str | None]:
    """What ``uid``'s device shows for each message of ``rid``: the text, or None."""
    out = []
    for m in d.server.messages(rid):
        plain = d.clients[uid].decrypt(m)
        out.append(None if plain is None else plain["msg"])
    return out


def queue(d: Deployment, rid: str) -> list[str] | None:
    waiting = d.server.room(rid).users_waiting
    return None if waiting is None else [w.user_id for w in waiting]


def kid_of(d: Deployment, wrapped: str | None) -> str | None:
    return None if wrapped is None else d.backend.wrapped_kid(wrapped)


def doc(d: Deployment, collection: str, _id: str) -> dict:  # type: ignore[type-arg]
    return next(x for x in d.server.dump()[collection] if x["_id"] == _id)


# ---------------------------------------------------------------------------- 1. first keys


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_first_keys_twelve_bip39_words_save_password_then_ready(crypto: str) -> None:
    d = deploy(crypto=crypto)
    (a,) = users(d, "alice")
    client = d.clients[a]
    client.login(d.people[a].account_password, now=T0)
    assert client.state == E2EEState.SAVE_PASSWORD
    assert client.functional  # RC isReady(): SAVE_PASSWORD is fully functional
    words = client.random_password.split(" ")  # type: ignore[union-attr]
    assert len(words) == 12 and set(words) <= BIP39
    user = d.server.user(a)
    assert user.e2e_public_key == client.public_key
    blob = json.loads(user.e2e_private_key)  # type: ignore[arg-type]
    assert set(blob) == {"iv", "ciphertext", "salt", "iterations"}
    assert blob["iterations"] == 100_000 and blob["salt"].startswith(f"v2:{a}:")
    assert client.random_password not in json.dumps(d.server.dump())
    # the generated password opens the stored blob
    d.backend.decrypt_private_key(user.e2e_private_key, user_id=a, password=client.random_password)  # type: ignore[arg-type]
    check(d)
    client.confirm_password_saved()
    assert client.state == E2EEState.READY and client.random_password is None
    check(d)


def test_unconfirmed_password_brings_save_password_back_after_next_login() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    client = d.clients[a]
    client.login(d.people[a].account_password, now=T0)
    password = client.random_password
    client.logout()  # stopClient keeps e2e.randomPassword
    assert client.random_password == password
    client.login(d.people[a].account_password, now=T0 + 60)
    assert client.state == E2EEState.ENTER_PASSWORD
    assert client.enter_password(password, now=T0 + 61)  # type: ignore[arg-type]
    assert client.state == E2EEState.SAVE_PASSWORD
    client.confirm_password_saved()
    assert client.state == E2EEState.READY
    check(d)


def test_second_key_upload_without_force_is_refused() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    d.login(a, now=T0)
    before = d.server.e2e_fetch_my_keys(a)
    pair = d.backend.generate_key_pair(d.clients[a].entropy)
    with pytest.raises(E2EError) as exc:
        d.server.e2e_set_user_public_and_private_keys(a, pair.public_key, "{}", now=T0 + 1)
    assert exc.value.code == "error-keys-already-set"
    assert d.server.e2e_fetch_my_keys(a) == before
    check(d)


@pytest.mark.parametrize("policy", POLICIES)
def test_key_upload_queues_user_in_encrypted_rooms_lacking_e2ekey(policy: str) -> None:
    d = deploy(policy)
    a, b, c = users(d, "alice", "bob", "carol")
    d.login(a, now=T0)
    keyed = group(d, a, [b], now=T0 + 1, name="keyed")  # alice makes its key at once
    plain = d.server.create_private_group(a, "plain", [b], encrypted=False, now=T0 + 2)
    unkeyed = d.server.create_private_group(b, "unkeyed", [c], now=T0 + 3)  # nobody READY: no e2eKeyId
    d.pump(T0 + 3)
    assert d.server.room(keyed).e2e_key_id is not None and d.server.room(unkeyed).e2e_key_id is None
    # bob's device uploads its first keys (the server entry point alone)
    pair = d.backend.generate_key_pair(d.clients[b].entropy)
    blob = d.backend.encrypt_private_key(
        pair.private_key, user_id=b, password="pw", entropy=d.clients[b].entropy
    )
    d.server.e2e_set_user_public_and_private_keys(b, pair.public_key, blob, now=T0 + 10)
    expected = [b] if policy in QUEUED else None
    assert queue(d, keyed) == expected
    assert queue(d, unkeyed) == expected  # no e2eKeyId yet still counts (getSubscribedRoomIdsWithoutE2EKeys)
    assert queue(d, plain) is None
    if policy in QUEUED:
        assert d.server.room(keyed).users_waiting[0].ts == T0 + 10  # type: ignore[index]
    check(d)


# ---------------------------------------------------------------------------- 2. new login


def test_new_login_right_password_unlocks() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    d.clients[a].send(rid, "first message", now=T0 + 3)
    d.logout(b, now=T0 + 4)
    cb = d.login(b, now=T0 + 100, remember_password=False)
    assert cb.state == E2EEState.ENTER_PASSWORD and not cb.functional
    assert cb.private_key is None and cb.session_room_ids() == []
    assert cb.enter_password(d.people[b].e2e_password, now=T0 + 101)  # type: ignore[arg-type]
    assert cb.state == E2EEState.READY
    assert cb.room_state(rid) == E2ERoomState.READY and read(d, b, rid) == ["first message"]
    check(d)


def test_wrong_password_stays_enter_password_with_e2ee_off() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b], now=T0 + 5)
    d.clients[a].send(rid, "first message", now=T0 + 6)
    d.logout(b, now=T0 + 7)
    d.server.add_user_to_room(a, rid, c, now=T0 + 8)  # carol waits for the key
    d.pump(T0 + 8)
    d.logout(a, now=T0 + 9)
    assert queue(d, rid) == [c]
    cb = d.login(b, now=T0 + 100, remember_password=False)
    assert cb.enter_password("wrong words entirely", now=T0 + 101) is False
    assert cb.state == E2EEState.ENTER_PASSWORD and not cb.functional and cb.private_key is None
    assert read(d, b, rid) == [None]  # no decryption
    assert cb.tick(now=T0 + 102) == 0 and queue(d, rid) == [c]  # no key serving
    with pytest.raises(E2EError) as exc:
        cb.send(rid, "nope", now=T0 + 103)
    assert exc.value.code == "error-invalid-state"
    # the user may retry
    assert cb.enter_password(d.people[b].e2e_password, now=T0 + 110)  # type: ignore[arg-type]
    assert cb.state == E2EEState.READY and read(d, b, rid) == ["first message"]
    assert d.tick(b, now=T0 + 111) == 1 and queue(d, rid) is None
    check(d)


# ---------------------------------------------------------------------------- 3. change password


@pytest.mark.parametrize("policy", POLICIES)
def test_change_password_rewraps_same_key_and_keeps_room_keys(policy: str) -> None:
    d = deploy(policy)
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    cb = d.clients[b]
    e2e_key = d.server.subscription(rid, b).e2e_key
    public, blob = d.server.user(b).e2e_public_key, d.server.user(b).e2e_private_key
    old_password = d.people[b].e2e_password
    cb.change_password("correct horse battery staple", now=T0 + 10)
    d.people[b].e2e_password = "correct horse battery staple"
    assert d.server.user(b).e2e_public_key == public and d.server.user(b).e2e_private_key != blob
    stored = json.loads(d.server.user(b).e2e_private_key)  # type: ignore[arg-type]
    assert stored["iterations"] == 100_000 and stored["salt"].startswith(f"v2:{b}:")
    assert d.server.subscription(rid, b).e2e_key == e2e_key  # room keys untouched
    assert queue(d, rid) is None  # bob holds an E2EKey: not re-queued
    d.logout(b, now=T0 + 20)
    cb = d.login(b, now=T0 + 30, remember_password=False)
    assert cb.enter_password(old_password, now=T0 + 31) is False  # type: ignore[arg-type]
    assert cb.enter_password("correct horse battery staple", now=T0 + 32)
    assert cb.holds_current_key(rid)
    check(d)


@pytest.mark.parametrize("policy", JOINER_QUEUED)
def test_change_password_requeues_user_where_it_lacks_e2ekey(policy: str) -> None:
    d = deploy(policy)
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b], now=T0 + 5)
    d.server.add_user_to_room(a, rid, c, now=T0 + 6)  # carol queued, push not yet delivered
    d.clients[a].tick(now=T0 + 7)  # served: a suggestion, off the queue; not pumped yet
    sub = d.server.subscription(rid, c)
    assert sub.e2e_suggested_key is not None and sub.e2e_key is None and queue(d, rid) is None
    d.clients[c].change_password("new e2e password", now=T0 + 8)
    assert queue(d, rid) == [c]  # a pending suggestion is no E2EKey: queued again
    d.pump(T0 + 8)  # the suggestion arrives: accepted, off the queue
    assert d.clients[c].holds_current_key(rid) and queue(d, rid) is None
    check(d)


def test_v1_blob_opens_and_is_rewritten_as_v2_on_password_change() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    ca = d.login(a, now=T0)
    password = d.people[a].e2e_password
    user = d.server.user(a)
    user.e2e_private_key = d.backend.encrypt_private_key_v1(
        ca.private_key,
        user_id=a,
        password=password,
        entropy=ca.entropy,  # type: ignore[arg-type]
    )  # an account created by a legacy client
    assert "$binary" in json.loads(user.e2e_private_key)
    d.logout(a, now=T0 + 1)
    ca = d.login(a, now=T0 + 2)
    assert ca.state == E2EEState.READY
    ca.change_password(password, now=T0 + 3)  # type: ignore[arg-type]
    stored = json.loads(user.e2e_private_key)
    assert "$binary" not in stored and stored["iterations"] == 100_000
    check(d)


# ---------------------------------------------------------------------------- 4. reset own key


def enrol_totp(d: Deployment, uid: str, now: float) -> str:
    secret = d.server.totp_enable(uid, now=now).secret
    d.server.totp_validate_temp_token(
        uid, T.totp(secret, now), now=now, login_token=d.clients[uid].login_token
    )
    return secret


def test_reset_own_key_needs_the_totp_code_when_user_has_totp() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    secret = enrol_totp(d, b, T0 + 30)
    keys = d.server.e2e_fetch_my_keys(b)
    for code, expected in (
        (None, "totp-required"),
        ("000000" if T.totp(secret, T0 + 60) != "000000" else "111111", "totp-invalid"),
    ):
        with pytest.raises(TwoFactorError) as exc:
            d.reset(b, now=T0 + 60, code=code)
        assert exc.value.code == expected
        assert d.server.e2e_fetch_my_keys(b) == keys and d.clients[b].online  # nothing happened
        assert d.server.subscription(rid, b).e2e_key is not None
    d.reset(b, now=T0 + 90, code=T.totp(secret, T0 + 90))
    assert d.server.e2e_fetch_my_keys(b) == {} and not d.clients[b].online
    check(d)


def test_reset_own_key_without_totp_needs_no_code() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    d.login(a, now=T0)
    d.reset(a, now=T0 + 1)
    assert d.server.e2e_fetch_my_keys(a) == {}
    assert d.clients[a].state == E2EEState.DISABLED and d.clients[a].resets == [T0 + 1]
    check(d)


def test_reset_own_key_clears_keys_but_not_suggested_old_keys_and_requeues_with_new_keys() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    r1 = group(d, a, [b, c], now=T0 + 5, name="r1")
    r2 = group(d, a, [b, c], now=T0 + 6, name="r2")
    plain = d.server.create_private_group(a, "plain", [c], encrypted=False, now=T0 + 7)
    kid1 = d.server.room(r2).e2e_key_id
    d.logout(c, now=T0 + 8)
    d.clients[a].reset_room_key(r2, now=T0 + 10)  # carol's r2 key becomes an old key
    d.pump(T0 + 10)
    d.logout(a, now=T0 + 11)
    d.login(a, now=T0 + 12)  # alice's device now knows the old key too
    d.tick(a, now=T0 + 13)  # carol (offline) gets E2ESuggestedKey + suggestedOldRoomKeys
    sub1, sub2 = d.server.subscription(r1, c), d.server.subscription(r2, c)
    assert sub1.e2e_key is not None
    assert sub2.e2e_suggested_key is not None and [k.e2e_key_id for k in sub2.old_room_keys] == [kid1]  # type: ignore[union-attr]
    assert [k.e2e_key_id for k in sub2.suggested_old_room_keys] == [kid1]  # type: ignore[union-attr]
    suggested_old = list(sub2.suggested_old_room_keys)  # type: ignore[arg-type]
    others = {(r, u): d.server.subscription(r, u).e2e_key for r in (r1, r2) for u in (a, b)}
    # carol forgot her E2E password: logs in (ENTER_PASSWORD), second session elsewhere, resets
    d.login(c, now=T0 + 20, remember_password=False)
    second = d.server.login(c, d.people[c].account_password, now=T0 + 21)
    d.reset(c, now=T0 + 22)
    user = d.server.user(c)
    assert user.e2e_public_key is None and user.e2e_private_key is None
    assert user.login_tokens == {} and not d.server.is_logged_in(c, second)
    assert (sub1.e2e_key, sub1.e2e_suggested_key, sub1.old_room_keys) == (None, None, None)
    assert (sub2.e2e_key, sub2.e2e_suggested_key, sub2.old_room_keys) == (None, None, None)
    assert sub2.suggested_old_room_keys == suggested_old  # RC leaves suggestedOldRoomKeys
    # off every queue (Rooms.removeUserFromE2EEQueue), queued again only with new keys
    assert not d.server.room(r1).is_waiting(c) and not d.server.room(r2).is_waiting(c)
    assert queue(d, plain) is None
    # other members keep their keys and rooms are not re-keyed
    assert {(r, u): d.server.subscription(r, u).e2e_key for r in (r1, r2) for u in (a, b)} == others
    assert d.clients[a].holds_current_key(r1) and d.clients[b].holds_current_key(r1)
    # next login: flow 1 again, a new pair and a new password
    old_public = d.clients[c].public_key
    cc = d.clients[c]
    cc.login(d.people[c].account_password, now=T0 + 30)
    assert cc.state == E2EEState.SAVE_PASSWORD and cc.public_key != old_public
    assert c in queue(d, r1) and c in queue(d, r2)  # type: ignore[operator]
    cc.confirm_password_saved()
    check(d)


# ---------------------------------------------------------------------------- 5. room creation


def test_first_ready_member_creates_the_room_key_and_pushes_it() -> None:
    d = deploy()
    a, b, c, e = users(d, "alice", "bob", "carol", "erin")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
        d.logout(u, now=T0 + i)  # they have keys, and are offline
    rid = d.server.create_private_group(a, "g", [b, c, e], now=T0 + 10)
    d.pump(T0 + 10)
    assert d.server.room(rid).e2e_key_id is None  # nobody online
    d.login(b, now=T0 + 20, remember_password=False)  # ENTER_PASSWORD: not READY, creates nothing
    assert d.server.room(rid).e2e_key_id is None
    cc = d.login(c, now=T0 + 30)
    kid = d.server.room(rid).e2e_key_id
    assert kid is not None and cc.room_state(rid) == E2ERoomState.READY
    assert d.ledger.keys[(rid, kid)][1].creator_id == c
    assert kid_of(d, d.server.subscription(rid, c).e2e_key) == kid
    # creator push: a suggestion for every member with a public key and no E2EKey
    for uid in (a, b):
        assert kid_of(d, d.server.subscription(rid, uid).e2e_suggested_key) == kid
    assert d.server.subscription(rid, e).e2e_suggested_key is None  # erin has no public key
    assert queue(d, rid) is None  # creation queues nobody
    # bob unlocks: handleAsyncE2EESuggestedKey accepts
    assert d.clients[b].enter_password(d.people[b].e2e_password, now=T0 + 40)  # type: ignore[arg-type]
    assert d.clients[b].holds_current_key(rid)
    assert d.server.subscription(rid, b).e2e_suggested_key is None
    check(d)


def test_set_room_key_id_first_writer_wins() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    rid = d.server.create_private_group(a, "g", [b], now=T0)
    d.server.e2e_set_room_key_id(a, rid, "kid-alice")
    with pytest.raises(E2EError) as exc:
        d.server.e2e_set_room_key_id(b, rid, "kid-bob")
    assert exc.value.code == "error-room-e2e-key-already-exists"
    assert d.server.room(rid).e2e_key_id == "kid-alice"


def test_switch_room_to_encrypted_needs_permission_dms_exempt() -> None:
    d = deploy(e2e_default_direct_rooms=False, e2e_default_private_rooms=False)
    a, b, admin = users(d, "alice", "bob", "root")
    d.server.user(admin).roles = ("user", "admin")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    dm = d.server.create_direct_message(a, b, now=T0 + 3)
    d.pump(T0 + 3)
    assert not d.server.room(rid).encrypted and not d.server.room(dm).encrypted
    d.server.send_message(b, rid, msg="plain is fine here", now=T0 + 4)
    with pytest.raises(PermissionDenied) as exc:
        d.server.set_room_encrypted(b, rid, True)  # a plain member
    assert exc.value.code == "error-action-not-allowed" and not d.server.room(rid).encrypted
    with pytest.raises(PermissionDenied):
        d.server.set_room_encrypted(admin, rid, True)  # an admin who is not a member cannot access it
    d.server.set_room_encrypted(a, rid, True)  # owner
    d.pump(T0 + 5)
    assert d.server.room(rid).encrypted and d.server.room(rid).e2e_key_id is not None
    assert d.clients[a].holds_current_key(rid) and d.clients[b].holds_current_key(rid)
    d.server.set_room_encrypted(b, dm, True)  # DMs: any member
    d.pump(T0 + 6)
    assert d.clients[a].holds_current_key(dm) and d.clients[b].holds_current_key(dm)
    with pytest.raises(E2EError) as exc2:
        d.server.send_message(b, rid, msg="plain is refused now", now=T0 + 7)
    assert exc2.value.code == "error-not-allowed"
    check(d)


# ---------------------------------------------------------------------------- 8. join and leave


@pytest.mark.parametrize("policy", POLICIES)
def test_join_queues_a_member_with_public_key_and_leave_dequeues(policy: str) -> None:
    d = deploy(policy)
    a, b, c, e = users(d, "alice", "bob", "carol", "erin")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    d.logout(c, now=T0 + 3)
    rid = group(d, a, [b], now=T0 + 5)
    d.logout(a, now=T0 + 6)
    d.logout(b, now=T0 + 6)
    d.server.add_user_to_room(b, rid, c, now=T0 + 10)
    d.server.add_user_to_room(b, rid, e, now=T0 + 11)  # erin has no public key: not queued
    d.pump(T0 + 11)
    assert queue(d, rid) == ([c] if policy in JOINER_QUEUED else None)
    d.server.leave_room(c, rid)
    assert queue(d, rid) is None and c not in d.server.room(rid).subscriptions
    assert rid not in d.server.rooms_of(c)
    check(d)


def test_an_owner_leaves_only_once_another_member_is_an_owner_too() -> None:
    # apps/meteor/app/lib/server/methods/leaveRoom.ts (error-you-are-last-owner);
    # apps/meteor/server/methods/addRoomOwner.ts
    d = deploy()
    a, b = users(d, "alice", "bob")
    rid = group(d, a, [b], now=T0)
    with pytest.raises(ValidationError, match="last owner") as refused:
        d.server.leave_room(a, rid)
    assert refused.value.code == "error-you-are-last-owner" and a in d.server.room(rid).subscriptions
    d.server.add_room_owner(a, rid, b)
    assert d.server.room(rid).subscriptions[b].roles == ("owner",)
    d.server.leave_room(a, rid)
    assert list(d.server.room(rid).subscriptions) == [b]
    check(d)


def test_leaving_does_not_rekey_so_the_key_a_leaver_kept_still_reads_no_forward_secrecy() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    kid = d.server.room(rid).e2e_key_id
    kept = d.clients[b].held_keys(rid)[kid]  # type: ignore[index]
    d.server.leave_room(b, rid)
    d.pump(T0 + 3)
    assert d.server.room(rid).e2e_key_id == kid  # leaving does not re-key
    # keysim's honest device drops its room session on the push; the room itself stays readable
    assert d.clients[b].session(rid) is None and not d.clients[b].holds_current_key(rid)
    d.clients[a].send(rid, "said after bob left", now=T0 + 4)
    (message,) = d.server.messages(rid)
    assert d.backend.decrypt_message(message.content, kept) == {"msg": "said after bob left"}  # type: ignore[arg-type]
    check(d)


# ---------------------------------------------------------------------------- 6. distribution


def test_tick_samples_at_most_ten_rooms() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rooms = [group(d, a, [b], now=T0 + 2 + i, name=f"r{i}") for i in range(12)]
    d.reset(b, now=T0 + 20)  # bob queued in all 12 rooms
    d.login(b, now=T0 + 30)
    assert all(queue(d, r) == [b] for r in rooms)
    assert d.clients[a].distribution_candidates() == rooms
    assert d.tick(a, now=T0 + 40) == 10
    assert sum(queue(d, r) is None for r in rooms) == 10
    assert sum(d.clients[b].holds_current_key(r) for r in rooms) == 10
    assert d.tick(a, now=T0 + 50) == 2
    assert all(queue(d, r) is None and d.clients[b].holds_current_key(r) for r in rooms)
    assert d.tick(a, now=T0 + 60) == 0
    check(d)


def test_queue_keeps_newest_50_and_tick_serves_at_most_50_per_room() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    d.login(a, now=T0)
    rid = group(d, a, [], now=T0 + 1)
    joiners = users(d, *[f"u{i:02}" for i in range(55)])
    for i, u in enumerate(joiners):
        d.login(u, now=T0 + 2)
        d.logout(u, now=T0 + 2)
        d.server.add_user_to_room(a, rid, u, now=T0 + 10 + i)
    d.pump(T0 + 70)
    assert queue(d, rid) == joiners[5:]  # $slice: -50 keeps the newest
    room_doc = doc(d, "rooms", rid)
    assert [w["userId"] for w in room_doc["usersWaitingForE2EKeys"]] == joiners[5:]
    # the fetch reads subscriptions, not the queue: the first 50 lacking a key, dropped ones included
    assert d.tick(a, now=T0 + 80) == 50
    served = [u for u in joiners if d.server.subscription(rid, u).e2e_suggested_key is not None]
    assert served == joiners[:50]
    assert queue(d, rid) == joiners[50:]  # the others stay
    assert d.tick(a, now=T0 + 90) == 5
    assert queue(d, rid) is None and "usersWaitingForE2EKeys" not in doc(d, "rooms", rid)
    check(d)


def test_tick_wraps_current_and_old_keys_and_holder_on_queue_does_not_serve() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b, c], now=T0 + 5)
    kid1 = d.server.room(rid).e2e_key_id
    d.logout(b, now=T0 + 6)
    d.logout(c, now=T0 + 6)
    kid2 = d.clients[a].reset_room_key(rid, now=T0 + 10)
    d.pump(T0 + 10)
    assert queue(d, rid) == [b, c]
    # bob comes back: he waits in the room, so it is no candidate for his own tick
    cb = d.login(b, now=T0 + 20)
    assert cb.distribution_candidates() == [] and cb.tick(now=T0 + 21) == 0
    d.logout(a, now=T0 + 22)
    d.login(a, now=T0 + 23)  # re-login: alice's device has loaded the old key
    assert d.tick(a, now=T0 + 24) == 2
    assert cb.holds_current_key(rid) and set(cb.held_keys(rid)) == {
        kid1,
        kid2,
    }  # first READY: own oldRoomKeys
    sub_c = d.server.subscription(rid, c)
    assert kid_of(d, sub_c.e2e_suggested_key) == kid2
    assert [k.e2e_key_id for k in sub_c.suggested_old_room_keys] == [kid1]  # type: ignore[union-attr]
    assert queue(d, rid) is None
    check(d)


# ---------------------------------------------------------------------------- 6. accept / reject


def test_accept_copies_suggested_old_keys_only_when_old_room_keys_absent() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
        d.logout(u, now=T0 + i)
    rid = d.server.create_private_group(a, "g", [b, c], now=T0 + 5)
    ca = d.login(a, now=T0 + 6)  # creates the key, pushes suggestions to bob and carol
    key = ca.session(rid).key  # type: ignore[union-attr]
    old = {
        "e2eKeyId": "old-kid",
        "ts": T0,
        "E2EKey": d.backend.wrap_room_key(key, d.server.user(b).e2e_public_key, ca.entropy),  # type: ignore[arg-type]
    }
    d.server.subscription(rid, c).old_room_keys = []  # an empty list counts as present
    for uid in (b, c):
        d.server.subscription(rid, uid).suggested_old_room_keys = None
        entry = {"_id": uid, "key": d.server.subscription(rid, uid).e2e_suggested_key, "oldKeys": [old]}
        d.server.e2e_provide_users_suggested_group_keys(a, {rid: [entry]}, now=T0 + 7)
    d.server.e2e_accept_suggested_group_key(b, rid)
    d.server.e2e_accept_suggested_group_key(c, rid)
    sb, sc = d.server.subscription(rid, b), d.server.subscription(rid, c)
    assert [k.e2e_key_id for k in sb.old_room_keys] == ["old-kid"]  # type: ignore[union-attr]
    assert sc.old_room_keys == []
    for s in (sb, sc):
        assert s.e2e_key is not None and s.e2e_suggested_key is None and s.suggested_old_room_keys is None


def test_suggestion_for_an_older_key_pair_is_rejected_and_user_requeued() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    stale_public = d.server.user(b).e2e_public_key
    d.reset(b, now=T0 + 10)
    cb = d.login(b, now=T0 + 20)  # new pair; waits
    assert queue(d, rid) == [b] and cb.room_state(rid) == E2ERoomState.WAITING_KEYS
    # a holder's tick raced bob's reset: it wrapped for the public key it had fetched before
    ca = d.clients[a]
    stale = d.backend.wrap_room_key(ca.session(rid).key, stale_public, ca.entropy)  # type: ignore[arg-type, union-attr]
    d.server.e2e_provide_users_suggested_group_keys(a, {rid: [{"_id": b, "key": stale}]}, now=T0 + 21)
    assert queue(d, rid) is None
    d.pump(T0 + 21)  # bob's device cannot open it: reject
    sub = d.server.subscription(rid, b)
    assert sub.e2e_suggested_key is None and sub.e2e_key is None
    assert queue(d, rid) == [b] and cb.room_state(rid) == E2ERoomState.WAITING_KEYS
    assert d.tick(a, now=T0 + 30) == 1  # served properly this time
    assert cb.holds_current_key(rid) and queue(d, rid) is None
    check(d)


# ---------------------------------------------------------------------------- messages


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_messages_encrypt_and_decrypt_for_every_holder(crypto: str) -> None:
    d = deploy(crypto=crypto)
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    d.clients[a].send(rid, "hello from alice", now=T0 + 3)
    d.clients[b].send(rid, "hello from bob", now=T0 + 4)
    msgs = d.server.messages(rid)
    assert [m.t for m in msgs] == ["e2e", "e2e"] and all(m.msg is None for m in msgs)
    assert all(m.content["kid"] == d.server.room(rid).e2e_key_id for m in msgs)  # type: ignore[index]
    assert read(d, a, rid) == read(d, b, rid) == ["hello from alice", "hello from bob"]
    check(d)


def test_after_live_room_key_reset_old_messages_unreadable_until_next_login_rc_quirk() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b, c], now=T0 + 5)
    kid1 = d.server.room(rid).e2e_key_id
    d.clients[b].send(rid, "under the first key", now=T0 + 6)
    kid2 = d.clients[a].reset_room_key(rid, now=T0 + 10)
    d.pump(T0 + 10)
    assert d.clients[b].room_state(rid) == E2ERoomState.WAITING_KEYS
    assert d.tick(a, now=T0 + 11) == 2
    d.clients[c].send(rid, "under the second key", now=T0 + 12)
    assert [m.content["kid"] for m in d.server.messages(rid)] == [kid1, kid2]  # type: ignore[index]
    # once('READY', decryptOldRoomKeys) already ran: the live devices fall back to the new key
    for uid in (a, b, c):
        assert read(d, uid, rid) == [None, "under the second key"]
    # every former holder's E2EKey is now an old key on the server
    for uid in (a, b, c):
        assert [k.e2e_key_id for k in d.server.subscription(rid, uid).old_room_keys] == [kid1]  # type: ignore[union-attr]
    d.logout(b, now=T0 + 20)
    d.login(b, now=T0 + 21)  # a fresh instance loads oldRoomKeys
    assert read(d, b, rid) == ["under the first key", "under the second key"]
    check(d)


# ---------------------------------------------------------------------------- 7. room-key reset


def test_room_key_reset_needs_permission() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    kid, key_b = d.server.room(rid).e2e_key_id, d.server.subscription(rid, b).e2e_key
    with pytest.raises(PermissionDenied) as exc:
        d.clients[b].reset_room_key(rid, now=T0 + 3)
    assert exc.value.code == "error-not-allowed"
    assert d.server.room(rid).e2e_key_id == kid and d.server.subscription(rid, b).e2e_key == key_b
    assert d.clients[b].holds_current_key(rid) and d.server.subscription(rid, b).old_room_keys is None
    check(d)


@pytest.mark.parametrize("policy", POLICIES)
def test_room_key_reset_moves_every_e2ekey_to_old_keys_and_replaces_queue(policy: str) -> None:
    d = deploy(policy)
    a, b, c, e = users(d, "alice", "bob", "carol", "erin")
    for i, u in enumerate((a, b, c, e)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b, c], now=T0 + 5)
    kid1 = d.server.room(rid).e2e_key_id
    d.logout(e, now=T0 + 6)
    d.server.add_user_to_room(a, rid, e, now=T0 + 7)  # erin waits, holds nothing
    d.pump(T0 + 7)
    d.logout(c, now=T0 + 8)
    kid2 = d.clients[a].reset_room_key(rid, now=T0 + 10)
    d.pump(T0 + 10)
    room = d.server.room(rid)
    assert room.e2e_key_id == kid2 != kid1
    # the caller holds the new key at once
    assert d.clients[a].holds_current_key(rid)
    assert kid_of(d, d.server.subscription(rid, a).e2e_key) == kid2
    for uid in (a, b, c):
        old = d.server.subscription(rid, uid).old_room_keys
        assert [(k.e2e_key_id, k.ts) for k in old] == [(kid1, T0 + 10)]  # type: ignore[union-attr]
    assert d.server.subscription(rid, e).old_room_keys is None  # had no E2EKey
    for uid in (b, c, e):
        sub = d.server.subscription(rid, uid)
        assert (sub.e2e_key, sub.e2e_suggested_key, sub.suggested_old_room_keys) == (None, None, None)
    # the queue is replaced by every other member (holders or not), the caller excluded
    assert queue(d, rid) == ([b, c, e] if policy in QUEUED else None)
    assert d.clients[b].room_state(rid) == E2ERoomState.WAITING_KEYS
    if policy in QUEUED:
        assert d.tick(a, now=T0 + 11) == 3
        assert d.clients[b].holds_current_key(rid) and queue(d, rid) is None
    check(d)


def test_room_key_reset_keeps_ten_old_keys_newest_first() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    ca = d.login(a, now=T0)
    rid = group(d, a, [], now=T0 + 1)
    kids = [d.server.room(rid).e2e_key_id]
    for i in range(11):
        kids.append(ca.reset_room_key(rid, now=T0 + 10 + i))
    old = d.server.subscription(rid, a).old_room_keys
    assert [k.e2e_key_id for k in old] == kids[-2::-1][:10]  # type: ignore[union-attr]
    assert [k.ts for k in old] == sorted((k.ts for k in old), reverse=True)  # type: ignore[union-attr]
    assert queue(d, rid) == []  # RC sets the (empty) queue: the field stays, empty
    check(d)


def test_room_key_reset_queue_holds_at_most_50() -> None:
    d = deploy()
    (a,) = users(d, "alice")
    ca = d.login(a, now=T0)
    others = users(d, *[f"u{i:02}" for i in range(53)])
    rid = d.server.create_private_group(a, "big", others, now=T0 + 1)
    d.pump(T0 + 1)
    ca.reset_room_key(rid, now=T0 + 10)
    assert queue(d, rid) == others[:50]
    check(d)


def test_room_key_reset_lock_after_a_non_member_attempt() -> None:
    d = deploy()
    a, b, admin = users(d, "alice", "bob", "root")
    d.server.user(admin).roles = ("user", "admin")
    for i, u in enumerate((a, b, admin)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b], now=T0 + 5)
    kid = d.server.room(rid).e2e_key_id
    with pytest.raises(PermissionDenied) as exc:
        d.clients[admin].reset_room_key(rid, now=T0 + 100)  # permission, but no access
    assert exc.value.code == "error-not-allowed" and d.clients[admin].session(rid) is None
    with pytest.raises(E2EError) as exc2:
        d.clients[a].reset_room_key(rid, now=T0 + 109.9)  # the lock was never released
    assert exc2.value.code == "error-e2e-key-reset-in-progress"
    assert d.server.room(rid).e2e_key_id == kid and d.clients[a].holds_current_key(rid)
    kid2 = d.clients[a].reset_room_key(rid, now=T0 + 110)  # expired after 10 s
    assert d.server.room(rid).e2e_key_id == kid2 != kid
    d.clients[a].reset_room_key(rid, now=T0 + 111)  # a completed reset releases the lock at once
    check(d)


# ---------------------------------------------------------------------------- settings, logout, dump


def test_plain_message_in_encrypted_room_refused_unless_allowed() -> None:
    for allow in (False, True):
        d = deploy(e2e_allow_unencrypted_messages=allow)
        a, b = users(d, "alice", "bob")
        d.login(a, now=T0)
        rid = group(d, a, [b], now=T0 + 1)
        if allow:
            mid = d.server.send_message(a, rid, msg="in the clear", now=T0 + 2)
            assert [m.id for m in d.server.messages(rid)] == [mid]
            assert d.clients[a].decrypt(d.server.messages(rid)[0]) == {"msg": "in the clear"}
        else:
            with pytest.raises(E2EError) as exc:
                d.server.send_message(a, rid, msg="in the clear", now=T0 + 2)
            assert exc.value.code == "error-not-allowed" and d.server.messages(rid) == []
        check(d)


def test_logout_wipes_local_keys() -> None:
    d = deploy()
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    d.clients[a].send(rid, "before logout", now=T0 + 3)
    cb = d.clients[b]
    assert cb.private_key is not None and cb.held_keys(rid)
    d.logout(b, now=T0 + 4)
    assert cb.state == E2EEState.DISABLED and not cb.online and not cb.functional
    assert cb.private_key is None and cb.public_key is None and cb.login_token is None
    assert cb.session_room_ids() == [] and cb.held_keys(rid) == {}
    assert read(d, b, rid) == [None]
    assert d.server.subscription(rid, b).e2e_key is not None  # the server copy stays
    check(d)


def test_dump_uses_rocketchat_field_names_and_is_json() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b, c], now=T0 + 5)
    d.clients[a].send(rid, "a secret body", now=T0 + 6)
    d.logout(c, now=T0 + 7)
    d.clients[a].reset_room_key(rid, now=T0 + 8)
    d.pump(T0 + 8)
    d.logout(a, now=T0 + 9)
    d.login(a, now=T0 + 10)
    d.tick(a, now=T0 + 11)  # carol (offline): E2ESuggestedKey + suggestedOldRoomKeys
    d.server.add_user_to_room(a, rid, d.add_user("dave"), now=T0 + 12)
    dump = d.server.dump()
    json.loads(json.dumps(dump))
    user = next(u for u in dump["users"] if u["_id"] == a)
    assert set(user["e2e"]) == {"public_key", "private_key"}
    room = doc(d, "rooms", rid)
    assert (
        room["t"] == "p" and room["encrypted"] is True and room["e2eKeyId"] == d.server.room(rid).e2e_key_id
    )
    assert "usersWaitingForE2EKeys" not in room  # dave has no public key; everyone else served
    subs = {s["u"]["_id"]: s for s in dump["subscriptions"] if s["rid"] == rid}
    assert {"E2EKey", "oldRoomKeys"} <= set(subs[a])
    assert {"E2ESuggestedKey", "oldRoomKeys", "suggestedOldRoomKeys"} <= set(
        subs[c]
    ) and "E2EKey" not in subs[c]
    assert set(subs[c]["oldRoomKeys"][0]) == {"e2eKeyId", "ts", "E2EKey"}
    msg = next(m for m in dump["messages"] if m["rid"] == rid)
    assert msg["t"] == "e2e" and set(msg["content"]) == {"algorithm", "kid", "iv", "ciphertext"}
    assert msg["content"]["algorithm"] == "rc.v2.aes-sha2" and "msg" not in msg
    assert "a secret body" not in json.dumps(dump)
    check(d)


def test_dump_has_no_secret_with_real_crypto() -> None:
    d = deploy(crypto="real")
    a, b = users(d, "alice", "bob")
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    rid = group(d, a, [b], now=T0 + 2)
    d.clients[b].send(rid, "a real secret message body", now=T0 + 3)
    text = json.dumps(d.server.dump())
    for uid in (a, b):
        assert d.people[uid].e2e_password not in text  # type: ignore[operator]
    check(d)  # no private JWK fields, room key, body or password in the dump


def test_holder_serves_old_keys_from_its_subscription_without_relogin() -> None:
    d = deploy()
    a, b, c = users(d, "alice", "bob", "carol")
    for i, u in enumerate((a, b, c)):
        d.login(u, now=T0 + i)
    rid = group(d, a, [b, c], now=T0 + 5)
    kid1 = d.server.room(rid).e2e_key_id
    d.clients[b].send(rid, "under the first key", now=T0 + 6)
    d.logout(c, now=T0 + 7)
    d.clients[a].reset_room_key(rid, now=T0 + 10)  # alice's own kid1 key is now in her oldRoomKeys
    d.pump(T0 + 10)
    assert [k.e2e_key_id for k in d.server.subscription(rid, a).old_room_keys] == [kid1]  # type: ignore[union-attr]
    d.login(c, now=T0 + 19, remember_password=False)
    d.reset(c, now=T0 + 20)  # carol loses everything, oldRoomKeys included
    d.login(c, now=T0 + 30)
    d.tick(a, now=T0 + 40)  # alice has not logged in again
    assert d.clients[c].holds_current_key(rid)
    sub = d.server.subscription(rid, c)
    assert [k.e2e_key_id for k in sub.old_room_keys or []] == [kid1]
    assert read(d, c, rid)[0] == "under the first key"
