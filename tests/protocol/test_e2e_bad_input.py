"""Bad input to the E2EE server and client gives a clear ProtocolError with RC's code, or an
expected outcome (a rejected suggestion, an undecryptable message), never another exception
and never a silently wrong state: every refused call is checked to have changed nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import T0, make_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    Deployment,
    E2EError,
    E2EEState,
    E2ERoomState,
    NotFoundError,
    PermissionDenied,
    ProtocolError,
    Server,
    Settings,
    ValidationError,
    Violation,
    check_all,
)
from protocol.crypto import get_backend

# ---------------------------------------------------------------------------- helpers


def deploy(policy: str = "queue", **settings: object) -> Deployment:
    base: dict[str, object] = {
        "e2e_enabled": True,
        "e2e_default_direct_rooms": True,
        "e2e_default_private_rooms": True,
        "email_auto_opt_in": False,
        "enforce_password_fallback": False,
    }
    return Deployment(policy=policy, settings=Settings(**{**base, **settings}))  # type: ignore[arg-type]


def violations(d: Deployment) -> list[Violation]:
    return check_all(d.server, d.clients, d.ledger, passwords=[p.account_password for p in d.people.values()])


def check(d: Deployment) -> None:
    assert violations(d) == []


def snapshot(d: Deployment) -> str:
    return json.dumps(d.server.dump(), sort_keys=True)


class Room3:
    """Alice (owner, online, holds the key), Bob (online, holds the key), Carol (has keys, offline,
    queued), Erin (never logged in), Olga (outside the room)."""

    def __init__(self, policy: str = "queue") -> None:
        d = self.d = deploy(policy)
        self.a, self.b, self.c, self.e, self.o = (
            d.add_user(n) for n in ("alice", "bob", "carol", "erin", "olga")
        )
        for i, uid in enumerate((self.a, self.b, self.c, self.o)):
            d.login(uid, now=T0 + i)
        d.logout(self.c, now=T0 + 5)
        self.rid = d.server.create_private_group(self.a, "g", [self.b, self.e], now=T0 + 6)
        d.pump(T0 + 6)
        d.server.add_user_to_room(self.a, self.rid, self.c, now=T0 + 7)
        d.pump(T0 + 7)
        self.kid = d.server.room(self.rid).e2e_key_id
        assert self.d.server.room(self.rid).is_waiting(self.c) == (policy != "live")

    def wrap_for(self, uid: str) -> str:
        ca = self.d.clients[self.a]
        return self.d.backend.wrap_room_key(
            ca.session(self.rid).key, self.d.server.user(uid).e2e_public_key, ca.entropy
        )  # type: ignore[arg-type, union-attr]


def refused(d: Deployment, call: Callable[[], object], kind: type[ProtocolError], code: str) -> ProtocolError:
    """``call`` raises exactly ``kind`` with ``code`` and leaves the server's documents as they were."""
    before = snapshot(d)
    with pytest.raises(ProtocolError) as exc:
        call()
    assert type(exc.value) is kind, exc.value
    assert exc.value.code == code
    assert snapshot(d) == before
    return exc.value


PREFIXED = st.builds(
    lambda kid, raw: kid + base64.b64encode(raw).decode(),
    st.text(max_size=40),
    st.binary(min_size=256, max_size=256),
)
ANY_TEXT = st.one_of(st.text(min_size=1), PREFIXED)


# ---------------------------------------------------------------------------- unknown ids


UNKNOWN: list[tuple[str, Callable[[Room3], object], type[ProtocolError], str]] = [
    ("room", lambda w: w.d.server.room("nope"), NotFoundError, "error-invalid-room"),
    (
        "subscription",
        lambda w: w.d.server.subscription(w.rid, w.o),
        NotFoundError,
        "error-subscription-not-found",
    ),
    ("fetch keys", lambda w: w.d.server.e2e_fetch_my_keys("nobody"), NotFoundError, "error-invalid-user"),
    (
        "upload keys",
        lambda w: w.d.server.e2e_set_user_public_and_private_keys("nobody", "p", "k", now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "set kid, room",
        lambda w: w.d.server.e2e_set_room_key_id(w.a, "nope", "kid"),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "set kid, user",
        lambda w: w.d.server.e2e_set_room_key_id("nobody", w.rid, "kid"),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "set kid, outsider",
        lambda w: w.d.server.e2e_set_room_key_id(w.o, w.rid, "kid"),
        PermissionDenied,
        "error-invalid-room",
    ),
    (
        "without key, room",
        lambda w: w.d.server.e2e_get_users_of_room_without_key(w.a, "nope"),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "without key, outsider",
        lambda w: w.d.server.e2e_get_users_of_room_without_key(w.o, w.rid),
        PermissionDenied,
        "error-invalid-room",
    ),
    (
        "waiting, user",
        lambda w: w.d.server.e2e_fetch_users_waiting_for_group_key("nobody", [w.rid]),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "provide, user",
        lambda w: w.d.server.e2e_provide_users_suggested_group_keys("nobody", {}, now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "accept, user",
        lambda w: w.d.server.e2e_accept_suggested_group_key("nobody", w.rid),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "accept, room",
        lambda w: w.d.server.e2e_accept_suggested_group_key(w.c, "nope"),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "accept, outsider",
        lambda w: w.d.server.e2e_accept_suggested_group_key(w.o, w.rid),
        NotFoundError,
        "error-subscription-not-found",
    ),
    (
        "reject, outsider",
        lambda w: w.d.server.e2e_reject_suggested_group_key(w.o, w.rid, now=T0),
        NotFoundError,
        "error-subscription-not-found",
    ),
    (
        "reset room key, room",
        lambda w: w.d.server.e2e_reset_room_key(w.a, "nope", "k" * 400, "kid", now=T0),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "reset room key, user",
        lambda w: w.d.server.e2e_reset_room_key("nobody", w.rid, "k" * 400, "kid", now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "reset own key",
        lambda w: w.d.server.e2e_reset_own_key("nobody", None, now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "admin reset, target",
        lambda w: w.d.server.admin_reset_e2e_key(w.a, "nobody", None, now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "send, room",
        lambda w: w.d.server.send_message(w.a, "nope", msg="x", now=T0),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "send, outsider",
        lambda w: w.d.server.send_message(w.o, w.rid, msg="x", now=T0),
        PermissionDenied,
        "error-invalid-room",
    ),
    (
        "add, user",
        lambda w: w.d.server.add_user_to_room(w.a, w.rid, "nobody", now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "add, by outsider",
        lambda w: w.d.server.add_user_to_room(w.o, w.rid, w.o, now=T0),
        PermissionDenied,
        "error-invalid-room",
    ),
    ("leave, outsider", lambda w: w.d.server.leave_room(w.o, w.rid), PermissionDenied, "error-invalid-room"),
    (
        "leave, last owner",
        lambda w: w.d.server.leave_room(w.a, w.rid),
        ValidationError,
        "error-you-are-last-owner",
    ),
    (
        "add owner, by member",
        lambda w: w.d.server.add_room_owner(w.b, w.rid, w.c),
        PermissionDenied,
        "error-not-allowed",
    ),
    (
        "add owner, outsider",
        lambda w: w.d.server.add_room_owner(w.a, w.rid, w.o),
        NotFoundError,
        "error-user-not-in-room",
    ),
    (
        "add owner, twice",
        lambda w: w.d.server.add_room_owner(w.a, w.rid, w.a),
        ValidationError,
        "error-user-already-owner",
    ),
    (
        "create, member",
        lambda w: w.d.server.create_private_group(w.a, "x", ["nobody"], now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "create, owner",
        lambda w: w.d.server.create_private_group("nobody", "x", [], now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "dm, other",
        lambda w: w.d.server.create_direct_message(w.a, "nobody", now=T0),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "toggle, room",
        lambda w: w.d.server.set_room_encrypted(w.a, "nope"),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "live request, room",
        lambda w: w.d.server.e2e_request_subscription_keys(w.a, "nope", now=T0),
        NotFoundError,
        "error-invalid-room",
    ),
    (
        "client for nobody",
        lambda w: w.d.clients[w.a].__class__(w.d.server, "nobody", w.d.backend),
        NotFoundError,
        "error-invalid-user",
    ),
    (
        "client send, room",
        lambda w: w.d.clients[w.a].send("nope", "hello", now=T0),
        E2EError,
        "error-invalid-state",
    ),
    (
        "client reset room key, room",
        lambda w: w.d.clients[w.a].reset_room_key("nope", now=T0),
        NotFoundError,
        "error-invalid-room",
    ),
]


@pytest.mark.parametrize(("call", "kind", "code"), [u[1:] for u in UNKNOWN], ids=[u[0] for u in UNKNOWN])
def test_unknown_ids(call: Callable[[Room3], object], kind: type[ProtocolError], code: str) -> None:
    w = Room3()
    refused(w.d, lambda: call(w), kind, code)
    check(w.d)


# ---------------------------------------------------------------------------- malformed server input


MALFORMED: list[tuple[str, Callable[[Room3], object], type[ProtocolError], str]] = [
    (
        "keys: empty public",
        lambda w: w.d.server.e2e_set_user_public_and_private_keys(w.e, "", "blob", now=T0),
        E2EError,
        "error-invalid-keys",
    ),
    (
        "keys: empty private",
        lambda w: w.d.server.e2e_set_user_public_and_private_keys(w.e, "pub", "", now=T0),
        E2EError,
        "error-invalid-keys",
    ),
    (
        "keys: non-str",
        lambda w: w.d.server.e2e_set_user_public_and_private_keys(w.e, None, {"iv": 1}, now=T0),
        E2EError,
        "error-invalid-keys",
    ),
    (
        "set kid: empty",
        lambda w: w.d.server.e2e_set_room_key_id(w.a, w.rid, ""),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "set kid: non-str",
        lambda w: w.d.server.e2e_set_room_key_id(w.a, w.rid, 7),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "update key: empty",
        lambda w: w.d.server.e2e_update_group_key(w.a, w.rid, w.c, ""),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "update key: non-str",
        lambda w: w.d.server.e2e_update_group_key(w.a, w.rid, w.c, b"k"),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "provide: not a mapping",
        lambda w: w.d.server.e2e_provide_users_suggested_group_keys(w.a, [w.rid], now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "provide: entry not a mapping",
        lambda w: w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: ["x"]}, now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "provide: no key",
        lambda w: w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: [{"_id": w.c}]}, now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "provide: empty key",
        lambda w: w.d.server.e2e_provide_users_suggested_group_keys(
            w.a, {w.rid: [{"_id": w.c, "key": ""}]}, now=T0
        ),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "reset room key: empty key",
        lambda w: w.d.server.e2e_reset_room_key(w.a, w.rid, "", "kid2", now=T0 + 50),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "reset room key: empty kid",
        lambda w: w.d.server.e2e_reset_room_key(w.a, w.rid, w.wrap_for(w.a), "", now=T0 + 50),
        E2EError,
        "error-e2e-key-reset-failed",
    ),
    (
        "send: both msg and content",
        lambda w: w.d.server.send_message(
            w.a, w.rid, msg="x", content={"algorithm": "rc.v2.aes-sha2"}, now=T0
        ),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "send: neither",
        lambda w: w.d.server.send_message(w.a, w.rid, now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "send: content not a mapping",
        lambda w: w.d.server.send_message(w.a, w.rid, content="ciphertext", now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "send: unknown algorithm",
        lambda w: w.d.server.send_message(w.a, w.rid, content={"algorithm": "rot13"}, now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "send: msg not a str",
        lambda w: w.d.server.send_message(w.a, w.rid, msg=b"x", now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "create: empty name",
        lambda w: w.d.server.create_private_group(w.a, "", [], now=T0),
        ValidationError,
        "error-invalid-name",
    ),
    (
        "create: encrypted not bool",
        lambda w: w.d.server.create_private_group(w.a, "x", [], encrypted="yes", now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "dm with oneself",
        lambda w: w.d.server.create_direct_message(w.a, w.a, now=T0),
        ValidationError,
        "error-invalid-params",
    ),
    (
        "backup outside policy backup",
        lambda w: w.d.server.e2e_backup_fetch(w.a, w.rid),
        E2EError,
        "error-not-allowed",
    ),
    (
        "backup key outside policy backup",
        lambda w: w.d.server.e2e_backup_set_public_key(w.a, "pub"),
        E2EError,
        "error-not-allowed",
    ),
]


@pytest.mark.parametrize(("call", "kind", "code"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_server_input(
    call: Callable[[Room3], object], kind: type[ProtocolError], code: str
) -> None:
    w = Room3()
    refused(w.d, lambda: call(w), kind, code)
    check(w.d)


BAD_OLD_KEYS = [
    pytest.param("not a list", id="oldKeys not a list"),
    pytest.param(["x"], id="old key not a mapping"),
    pytest.param([{"ts": T0, "E2EKey": "k" * 400}], id="old key without e2eKeyId"),
    pytest.param([{"e2eKeyId": "k", "ts": True, "E2EKey": "k" * 400}], id="old key ts a bool"),
    pytest.param([{"e2eKeyId": "k", "ts": T0, "E2EKey": ""}], id="old key empty"),
]


@pytest.mark.parametrize("old_keys", BAD_OLD_KEYS)
def test_provide_with_malformed_old_keys_writes_nothing(old_keys: object) -> None:
    w = Room3()
    entry = {"_id": w.c, "key": w.wrap_for(w.c), "oldKeys": old_keys}
    refused(
        w.d,
        lambda: w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: [entry]}, now=T0 + 50),
        ValidationError,
        "error-invalid-params",
    )


def test_provide_with_one_malformed_entry_writes_nothing() -> None:
    w = Room3()
    entries = [{"_id": w.c, "key": w.wrap_for(w.c)}, {"_id": w.e}]
    refused(
        w.d,
        lambda: w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: entries}, now=T0 + 50),
        ValidationError,
        "error-invalid-params",
    )


def test_send_refuses_content_that_is_not_json() -> None:
    w = Room3()
    content = {"algorithm": "rc.v2.aes-sha2", "kid": w.kid, "iv": "AAAA", "ciphertext": b"\x00"}
    refused(
        w.d,
        lambda: w.d.server.send_message(w.a, w.rid, content=content, now=T0 + 50),
        ValidationError,
        "error-invalid-params",
    )


def test_accepting_a_blank_suggestion_is_refused() -> None:
    w = Room3()
    w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: [{"_id": w.c, "key": "   "}]}, now=T0 + 50)
    refused(
        w.d,
        lambda: w.d.server.e2e_accept_suggested_group_key(w.c, w.rid),
        E2EError,
        "error-no-suggested-key-available",
    )


def test_provide_skips_unknown_rooms_and_users_like_rc() -> None:
    w = Room3()
    key = w.wrap_for(w.c)
    before = snapshot(w.d)
    w.d.server.e2e_provide_users_suggested_group_keys(
        w.a, {"nope": [{"_id": w.c, "key": key}], w.rid: [{"_id": "nobody", "key": key}]}, now=T0 + 50
    )
    w.d.server.e2e_provide_users_suggested_group_keys(w.o, {w.rid: [{"_id": w.c, "key": key}]}, now=T0 + 50)
    assert snapshot(w.d) == before  # canAccessRoom false / no subscription: skipped
    check(w.d)


def test_room_key_reset_refused_where_rc_refuses() -> None:
    d = deploy()
    a, b = (d.add_user(n) for n in ("alice", "bob"))
    d.login(b, now=T0)
    d.logout(b, now=T0)
    rid = d.server.create_private_group(a, "g", [b], now=T0 + 1)  # nobody READY: no e2eKeyId
    refused(
        d,
        lambda: d.server.e2e_reset_room_key(a, rid, "k" * 400, "kid", now=T0 + 2),
        E2EError,
        "error-e2e-key-reset-failed",
    )
    d.server.e2e_set_room_key_id(b, rid, "kid-1")
    # alice has no key pair: error-user-has-no-keys, reported as error-e2e-key-reset-failed
    err = refused(
        d,
        lambda: d.server.e2e_reset_room_key(a, rid, "k" * 400, "kid-2", now=T0 + 3),
        E2EError,
        "error-e2e-key-reset-failed",
    )
    assert "error-user-has-no-keys" in str(err)
    check(d)


# ---------------------------------------------------------------------------- wrong state


def test_calls_in_the_wrong_state() -> None:
    w = Room3()
    d, cc = w.d, w.d.clients[w.c]
    # logged out
    for call in (
        lambda: cc.send(w.rid, "x", now=T0 + 50),
        lambda: cc.enter_password("x", now=T0 + 50),
        lambda: cc.change_password("x", now=T0 + 50),
        lambda: cc.reset_own_key(None, now=T0 + 50),
        lambda: cc.reset_room_key(w.rid, now=T0 + 50),
        lambda: cc.confirm_password_saved(),
        lambda: cc.restore_from_backup("sym-priv-" + "0" * 32, now=T0 + 50),
    ):
        refused(d, call, E2EError, "error-invalid-state")
        assert cc.state == E2EEState.DISABLED and cc.private_key is None
    # logged in, ENTER_PASSWORD
    cc.login(d.people[w.c].account_password, now=T0 + 60)
    assert cc.state == E2EEState.ENTER_PASSWORD
    refused(d, lambda: cc.login(d.people[w.c].account_password, now=T0 + 61), E2EError, "error-invalid-state")
    for call in (
        lambda: cc.send(w.rid, "x", now=T0 + 62),
        lambda: cc.change_password("x", now=T0 + 62),
        lambda: cc.reset_room_key(w.rid, now=T0 + 62),
        lambda: cc.confirm_password_saved(),
    ):
        refused(d, call, E2EError, "error-invalid-state")
        assert cc.state == E2EEState.ENTER_PASSWORD
    # READY
    assert cc.enter_password(d.people[w.c].e2e_password, now=T0 + 63)  # type: ignore[arg-type]
    for call in (lambda: cc.enter_password("x", now=T0 + 64), lambda: cc.confirm_password_saved()):
        refused(d, call, E2EError, "error-invalid-state")
        assert cc.state == E2EEState.READY
    # no suggestion waiting
    refused(
        d,
        lambda: d.server.e2e_accept_suggested_group_key(w.c, w.rid),
        E2EError,
        "error-no-suggested-key-available",
    )
    refused(
        d,
        lambda: d.server.e2e_reject_suggested_group_key(w.c, w.rid, now=T0 + 65),
        E2EError,
        "error-no-suggested-key-available",
    )
    # READY, but the room key has not arrived
    assert cc.room_state(w.rid) == E2ERoomState.WAITING_KEYS
    refused(d, lambda: cc.send(w.rid, "x", now=T0 + 66), E2EError, "error-invalid-state")
    check(d)


def test_send_before_ready_in_save_password_is_allowed_but_not_before_keys() -> None:
    d = deploy()
    a, b = (d.add_user(n) for n in ("alice", "bob"))
    ca = d.clients[a]
    refused(d, lambda: ca.send("nope", "x", now=T0), E2EError, "error-invalid-state")  # NOT_STARTED
    ca.login(d.people[a].account_password, now=T0)
    rid = d.server.create_private_group(a, "g", [b], now=T0 + 1)
    d.pump(T0 + 1)
    assert ca.state == E2EEState.SAVE_PASSWORD
    ca.send(rid, "fine in SAVE_PASSWORD", now=T0 + 2)  # RC isReady() includes SAVE_PASSWORD
    check(d)


def test_tick_when_logged_out_changes_nothing() -> None:
    w = Room3()
    ca = w.d.clients[w.a]
    w.d.logout(w.a, now=T0 + 50)
    before = snapshot(w.d)
    assert ca.tick(now=T0 + 51) == 0
    assert snapshot(w.d) == before and w.d.server.room(w.rid).is_waiting(w.c)
    check(w.d)


@pytest.mark.parametrize("policy", ["Queue", "", "matrix", None, 3])
def test_invalid_policy_name(policy: object) -> None:
    for make in (lambda: Deployment(policy=policy), lambda: Server(policy=policy)):  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as exc:
            make()
        assert exc.value.code == "error-invalid-policy"


def test_invalid_backend_name() -> None:
    with pytest.raises(ValidationError) as exc:
        Deployment(crypto="rsa")
    assert isinstance(exc.value, ProtocolError)
    with pytest.raises(ValidationError):
        get_backend(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- passwords and blobs


def test_wrong_and_malformed_passwords() -> None:
    w = Room3()
    cc = w.d.clients[w.c]
    cc.login(w.d.people[w.c].account_password, now=T0 + 50)
    assert cc.enter_password("wrong", now=T0 + 51) is False
    assert cc.enter_password("", now=T0 + 52) is False
    for bad in ("pässwörd\u20ac", None, 12):  # above U+00FF; not text
        refused(
            w.d, lambda bad=bad: cc.enter_password(bad, now=T0 + 53), ValidationError, "error-invalid-params"
        )  # type: ignore[misc]
    assert cc.state == E2EEState.ENTER_PASSWORD and cc.private_key is None and not cc.functional
    assert cc.enter_password(w.d.people[w.c].e2e_password, now=T0 + 54)  # type: ignore[arg-type]
    before = snapshot(w.d)
    with pytest.raises(ValidationError):
        cc.change_password("über\u0100", now=T0 + 55)
    assert snapshot(w.d) == before
    check(w.d)


@pytest.mark.parametrize(
    "blob",
    [
        "not json",
        "[]",
        "{}",
        '{"$binary": "!!"}',
        '{"iv": "AAAA", "ciphertext": "AAAA", "salt": "s", "iterations": -1}',
    ],
)
def test_malformed_private_key_blob_looks_like_a_wrong_password(blob: str) -> None:
    w = Room3()
    w.d.server.user(w.c).e2e_private_key = blob  # what a buggy client could have uploaded
    cc = w.d.clients[w.c]
    cc.login(w.d.people[w.c].account_password, now=T0 + 50)
    assert cc.state == E2EEState.ENTER_PASSWORD
    assert cc.enter_password(w.d.people[w.c].e2e_password, now=T0 + 51) is False  # type: ignore[arg-type]
    assert cc.state == E2EEState.ENTER_PASSWORD and not cc.functional


# ---------------------------------------------------------------------------- wrapped keys and contents through the client


@pytest.mark.parametrize("wrapped_for", ["someone else", "an older key pair"])
def test_suggestion_that_does_not_open_is_rejected(wrapped_for: str) -> None:
    w = Room3()
    if wrapped_for == "someone else":
        w.d.login(w.c, now=T0 + 50)
        key = w.wrap_for(w.b)
    else:
        key = w.wrap_for(w.c)  # for carol's current pair, which she then resets
        w.d.login(w.c, now=T0 + 40, remember_password=False)
        w.d.reset(w.c, now=T0 + 45)
        w.d.login(w.c, now=T0 + 50)
    cc = w.d.clients[w.c]
    assert cc.room_state(w.rid) == E2ERoomState.WAITING_KEYS
    w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: [{"_id": w.c, "key": key}]}, now=T0 + 51)
    w.d.pump(T0 + 51)
    sub = w.d.server.subscription(w.rid, w.c)
    assert sub.e2e_suggested_key is None and sub.e2e_key is None and w.d.server.room(w.rid).is_waiting(w.c)
    assert cc.room_state(w.rid) == E2ERoomState.WAITING_KEYS and cc.held_keys(w.rid) == {}
    check(w.d)


def test_garbage_e2ekey_leaves_the_room_ready_without_a_key_rc_quirk() -> None:
    w = Room3()
    w.d.server.e2e_update_group_key(w.c, w.rid, w.c, "not a wrapped key at all")  # carol's own broken write
    cc = w.d.login(w.c, now=T0 + 50)
    # importGroupKey returns false without throwing: READY, with no usable key
    assert cc.room_state(w.rid) == E2ERoomState.READY and cc.held_keys(w.rid) == {}
    assert not cc.holds_current_key(w.rid)
    w.d.clients[w.a].send(w.rid, "carol cannot read this", now=T0 + 51)
    assert cc.decrypt(w.d.server.messages(w.rid)[0]) is None
    refused(w.d, lambda: cc.send(w.rid, "x", now=T0 + 52), E2EError, "error-invalid-state")
    # ... and nothing will ever serve her: she holds an "E2EKey", so she is neither queued nor fetched
    assert [v.invariant for v in violations(w.d)] == ["stored_keys_open", "nobody_silently_lost"]


def _contents(w: Room3) -> list[Any]:
    ca = w.d.clients[w.a]
    good = w.d.backend.encrypt_message(ca.session(w.rid).key, {"msg": "genuine"}, ca.entropy)  # type: ignore[arg-type, union-attr]
    tampered = dict(
        good,
        ciphertext=good["ciphertext"][:-4] + ("AAAA" if not good["ciphertext"].endswith("AAAA") else "BBBB"),
    )
    return [
        {"algorithm": "rc.v2.aes-sha2"},
        {"algorithm": "rc.v2.aes-sha2", "kid": w.kid, "iv": "!!", "ciphertext": "??"},
        {"algorithm": "rc.v2.aes-sha2", "kid": w.kid, "iv": good["iv"], "ciphertext": ""},
        {"algorithm": "rc.v1.aes-sha2", "ciphertext": "short"},
        {"algorithm": "rc.v1.aes-sha2", "ciphertext": w.kid[:12] + "A" * 64},
        {"algorithm": "rc.v2.aes-sha2", "kid": 5, "iv": None, "ciphertext": ["x"]},
        dict(good, kid="another-kid"),  # unknown kid: falls back to the current key, which opens it
        tampered,
    ]


def test_malformed_message_contents_never_decrypt_and_never_raise() -> None:
    w = Room3()
    for content in _contents(w):
        w.d.server.send_message(w.a, w.rid, content=content, now=T0 + 50)
    results = [w.d.clients[w.b].decrypt(m) for m in w.d.server.messages(w.rid)]
    assert results == [None] * 6 + [{"msg": "genuine"}, None]
    check(w.d)


# ---------------------------------------------------------------------------- Hypothesis


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT)
def test_arbitrary_suggestion_is_only_ever_rejected(text: str) -> None:
    w = Room3()
    cc = w.d.login(w.c, now=T0 + 50)  # waiting for the key, READY
    w.d.server.e2e_provide_users_suggested_group_keys(w.a, {w.rid: [{"_id": w.c, "key": text}]}, now=T0 + 51)
    w.d.pump(T0 + 51)  # carol's device handles it
    sub = w.d.server.subscription(w.rid, w.c)
    if not text.strip():
        # RC trims a suggestion before handling it and refuses a blank one, so a blank suggestion
        # can be neither accepted nor rejected: carol is stuck (not queued, skipped by the fetch),
        # and the invariant says so
        assert sub.e2e_suggested_key == text and not w.d.server.room(w.rid).is_waiting(w.c)
        assert "nobody_silently_lost" in {v.invariant for v in violations(w.d)}
        return
    assert sub.e2e_suggested_key is None and sub.e2e_key is None
    assert w.d.server.room(w.rid).is_waiting(w.c)  # rejected: queued again
    assert cc.room_state(w.rid) == E2ERoomState.WAITING_KEYS and cc.held_keys(w.rid) == {}
    check(w.d)
    w.d.tick(w.a, now=T0 + 60)  # a genuine holder still serves her
    assert cc.holds_current_key(w.rid)
    check(w.d)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT)
def test_arbitrary_e2ekey_is_never_loaded(text: str) -> None:
    w = Room3()
    w.d.server.e2e_update_group_key(w.c, w.rid, w.c, text)
    cc = w.d.login(w.c, now=T0 + 50)
    assert cc.room_state(w.rid) == E2ERoomState.READY and cc.held_keys(w.rid) == {}
    assert cc.acquired == []
    assert [v.invariant for v in violations(w.d)] == ["stored_keys_open", "nobody_silently_lost"]


def test_check_all_reports_rather_than_raises_on_a_queued_garbage_e2ekey() -> None:
    w = Room3()
    # bob writes a broken key for himself, then a garbage suggestion makes his device reject and
    # re-queue him (RC re-queues even a member holding an E2EKey)
    w.d.server.e2e_update_group_key(w.b, w.rid, w.b, "broken")
    w.d.server.e2e_provide_users_suggested_group_keys(
        w.a, {w.rid: [{"_id": w.b, "key": "garbage"}]}, now=T0 + 50
    )
    w.d.pump(T0 + 50)
    assert w.d.server.room(w.rid).is_waiting(w.b)
    assert {v.invariant for v in violations(w.d)} == {"stored_keys_open"}


def test_garbage_suggestion_knocks_a_holder_onto_the_queue_and_out_of_serving() -> None:
    """RC-faithful weakness: any member can send a suggestion to a holder; the holder's device
    rejects it, and reject re-queues even a member that holds the key.  A queued member no longer
    serves the room, and no one serves it back (the fetch skips members with an E2EKey)."""
    w = Room3()
    w.d.server.e2e_provide_users_suggested_group_keys(
        w.b, {w.rid: [{"_id": w.a, "key": "x" * 400}]}, now=T0 + 50
    )
    w.d.pump(T0 + 50)
    room = w.d.server.room(w.rid)
    assert room.is_waiting(w.a) and w.d.clients[w.a].holds_current_key(w.rid)
    assert w.rid not in w.d.clients[w.a].distribution_candidates()
    assert [v.detail for v in violations(w.d)] == [f"{w.a} waits in {w.rid} but holds its key"]
    w.d.tick_all(now=T0 + 60)  # bob serves carol; alice stays queued for good
    assert room.is_waiting(w.a) and not room.is_waiting(w.c)


def test_unopenable_suggestion_with_the_current_kid_replaces_a_holders_e2ekey_rc_weakness() -> None:
    """RC-faithful weakness: importGroupKey returns true at once when the kid equals the loaded
    one, without decrypting, so the holder's device *accepts* any blob carrying the right kid
    prefix and the server makes it the holder's E2EKey.  At the next login the key does not open,
    and nobody ever serves the holder again (not queued; the fetch skips members with an E2EKey)."""
    w = Room3()
    blob = w.kid + base64.b64encode(bytes(256)).decode()  # type: ignore[operator]
    w.d.server.e2e_provide_users_suggested_group_keys(w.c, {w.rid: [{"_id": w.b, "key": blob}]}, now=T0 + 50)
    w.d.pump(T0 + 50)
    assert w.d.server.subscription(w.rid, w.b).e2e_key == blob
    assert [v.detail for v in violations(w.d)] == [f"{w.b}'s E2EKey in {w.rid} does not open"]
    w.d.logout(w.b, now=T0 + 60)
    cb = w.d.login(w.b, now=T0 + 61)
    for k in range(3):
        w.d.tick_all(now=T0 + 70 + 10 * k)
    assert cb.room_state(w.rid) == E2ERoomState.READY and not cb.holds_current_key(w.rid)
    assert not w.d.server.room(w.rid).is_waiting(w.b)


def test_waiting_users_of_an_unknown_room_are_none() -> None:
    # RC's aggregate simply matches no subscription for an unknown room id
    w = Room3()
    assert w.d.server.e2e_fetch_users_waiting_for_group_key(w.a, ["nope"]) == {}
    assert set(w.d.server.e2e_fetch_users_waiting_for_group_key(w.a, ["nope", w.rid])) == {w.rid}


def test_update_group_key_in_an_unknown_room_is_a_silent_no_op() -> None:
    # RC's updateGroupKey finds no subscription of the caller and does nothing
    w = Room3()
    before = snapshot(w.d)
    w.d.server.e2e_update_group_key(w.a, "nope", w.a, "k" * 400)
    assert snapshot(w.d) == before


@pytest.mark.parametrize("bad", [["x"], {"a": 1}, 5])
def test_unhashable_or_non_string_ids_are_validation_errors(bad: object) -> None:
    w = Room3()
    for call in (
        lambda: w.d.server.e2e_update_group_key(bad, w.rid, w.b, "k" * 400),  # type: ignore[arg-type]
        lambda: w.d.server.e2e_update_group_key(w.a, w.rid, bad, "k" * 400),  # type: ignore[arg-type]
        lambda: w.d.server.create_direct_message(bad, w.b, now=T0),  # type: ignore[arg-type]
        lambda: w.d.server.check_two_factor(w.a, None, now=T0, login_token=bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(ProtocolError):
            call()


@pytest.mark.parametrize("checks_access", [False, True])
def test_fetching_waiting_users_of_a_room_one_is_not_in(checks_access: bool) -> None:
    """As released, any logged-in user learns who waits in any room and their public keys
    (apps/meteor/server/api/v1/e2e.ts); the open PR #41953, as a setting, drops such rooms."""
    server = make_server(e2e_enabled=True, e2e_fetch_checks_caller_access=checks_access)
    a, b, outsider = (server.create_user(name, "pw") for name in ("alice", "bob", "mallory"))
    server.user(b).e2e_public_key = "bob-public-key"
    rid = server.create_private_group(a, "g", [b], encrypted=True, now=T0)
    expected = {rid: [{"_id": b, "public_key": "bob-public-key"}]}
    assert server.e2e_fetch_users_waiting_for_group_key(a, [rid]) == expected
    assert server.e2e_fetch_users_waiting_for_group_key(outsider, [rid]) == (
        {} if checks_access else expected
    )
