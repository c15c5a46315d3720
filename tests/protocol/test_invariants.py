"""Each invariant of :mod:`protocol.invariants` can fail: build a clean deployment, tamper with it
directly the way a broken server or a malicious member would, and assert that exactly the
specific invariant reports it (and that :func:`protocol.check_all` passes it on).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import T0

from protocol import Deployment, KeyAcquired, Settings, Violation, check_all
from protocol.crypto import RoomKey, real
from protocol.invariants import (
    keys_are_legitimate,
    no_secrets_on_server,
    queue_is_clean,
    reset_users_recover_properly,
    stored_keys_open,
)
from protocol.rooms import WaitingUser


class World:
    """Alice (owner) and Bob hold the key of a private group; Carol is a member waiting for it."""

    def __init__(self, crypto: str = "symbolic") -> None:
        settings = Settings(
            e2e_enabled=True,
            e2e_default_direct_rooms=True,
            e2e_default_private_rooms=True,
            email_auto_opt_in=False,
            enforce_password_fallback=False,
        )
        d = self.d = Deployment(crypto=crypto, settings=settings)
        self.a, self.b, self.c = (d.add_user(n) for n in ("alice", "bob", "carol"))
        d.login(self.a, now=T0)
        d.login(self.b, now=T0 + 1)
        self.rid = d.server.create_private_group(self.a, "g", [self.b], now=T0 + 2)
        d.pump(T0 + 2)
        d.clients[self.a].send(self.rid, "a long enough body", now=T0 + 3)
        d.login(self.c, now=T0 + 4)
        d.server.add_user_to_room(self.a, self.rid, self.c, now=T0 + 5)
        d.pump(T0 + 5)
        self.kid = d.server.room(self.rid).e2e_key_id
        assert d.server.room(self.rid).is_waiting(self.c)
        assert self.all() == []

    def all(self, **kwargs: object) -> list[Violation]:
        d = self.d
        passwords = [p.account_password for p in d.people.values()]
        return check_all(d.server, d.clients, d.ledger, passwords=passwords, **kwargs)  # type: ignore[arg-type]

    def forged_key(self) -> RoomKey:
        """A room key no legitimate member made, under the room's current kid."""
        fresh = self.d.backend.generate_room_key(self.d.clients[self.a].entropy)
        return RoomKey(self.kid, fresh.key)  # type: ignore[arg-type]

    def wrap(self, key: RoomKey, uid: str) -> str:
        return self.d.backend.wrap_room_key(
            key, self.d.server.user(uid).e2e_public_key, self.d.clients[self.a].entropy
        )  # type: ignore[arg-type]


def only(violations: list[Violation], invariant: str) -> list[str]:
    """The details of ``violations``, all of which must come from ``invariant``."""
    assert violations, f"{invariant} reported nothing"
    assert {v.invariant for v in violations} == {invariant}, violations
    return [v.detail for v in violations]


# ---------------------------------------------------------------------------- no_secrets_on_server


def test_no_secrets_account_password_written_into_a_document() -> None:
    w = World()
    w.d.server.room(w.rid).name = f"pw is {w.d.people[w.b].account_password}"
    details = only(w.all(), "no_secrets_on_server")
    assert details == ["the dump contains the password"]
    passwords = [p.account_password for p in w.d.people.values()]
    assert no_secrets_on_server(w.d.server, w.d.clients, passwords) == w.all()
    assert no_secrets_on_server(w.d.server, w.d.clients) == []  # it needs to be told the passwords


def test_no_secrets_unsaved_e2e_password_and_message_body() -> None:
    w = World()
    cc = w.d.clients[w.c]
    cc.random_password = w.d.people[w.c].e2e_password  # as if the person never confirmed it
    w.d.server.user(w.c).username = f"{cc.random_password}"
    w.d.server.room(w.rid).name = "a long enough body"  # alice's message, in the clear
    details = only(w.all(), "no_secrets_on_server")
    assert sorted(details) == sorted(
        [f"the dump contains the E2E password of {w.c}", f"the dump contains the message body of {w.a}"]
    )


def test_no_secrets_dump_not_json() -> None:
    w = World()
    # the server refuses such content, so plant it directly in the stored document
    w.d.server.room(w.rid).name = {1, 2}  # type: ignore[assignment]
    (detail,) = only(w.all(), "no_secrets_on_server")
    assert detail.startswith("dump is not JSON-serialisable")


def test_no_secrets_private_and_room_keys_with_real_crypto() -> None:
    w = World("real")
    ca = w.d.clients[w.a]
    d_field = real.private_jwk(ca.private_key)["d"]
    k_field = real.room_key_jwk(ca.session(w.rid).key)["k"]  # type: ignore[arg-type, union-attr]
    w.d.server.room(w.rid).name = d_field
    w.d.server.user(w.b).username = k_field
    details = only(w.all(), "no_secrets_on_server")
    assert f"the dump contains the private key of {w.a}" in details
    assert f"the dump contains the room key {w.kid} held by {w.a}" in details
    assert f"the dump contains the room key {w.kid} held by {w.b}" in details


def _encodings(raw: bytes, text: str) -> dict[str, str]:
    import base64

    return {
        "text": text,
        "hex": raw.hex(),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
    }


@pytest.mark.parametrize("encoding", ["text", "hex", "base64", "base64url"])
def test_no_secrets_room_keys_old_and_new_with_symbolic_crypto(encoding: str) -> None:
    w = World()
    ca = w.d.clients[w.a]
    old = ca.session(w.rid).key  # type: ignore[union-attr]
    assert old is not None
    # a legitimately wrapped key carries the secret by design: not a leak
    assert w.all() == []
    raw = bytes.fromhex(str(old.key).removeprefix("sym-room-"))
    w.d.server.room(w.rid).name = _encodings(raw, str(old.key))[encoding]
    details = only(w.all(), "no_secrets_on_server")
    assert f"the dump contains the room key {old.kid} held by {w.a}" in details
    assert f"the dump contains the room key {old.kid} held by {w.b}" in details


@pytest.mark.parametrize("encoding", ["text", "hex", "base64", "base64url"])
def test_no_secrets_private_and_recovery_keys_with_symbolic_crypto(encoding: str) -> None:
    w = World()
    private = str(w.d.clients[w.b].private_key)
    raw = bytes.fromhex(private.removeprefix("sym-priv-"))
    w.d.server.user(w.a).username = _encodings(raw, private)[encoding]
    assert only(w.all(), "no_secrets_on_server") == [f"the dump contains the private key of {w.b}"]
    # a recovery key the person keeps: found only when the check is told of it
    recovery = w.d.backend.generate_key_pair(w.d.clients[w.c].entropy).private_key
    raw = bytes.fromhex(str(recovery).removeprefix("sym-priv-"))
    w.d.server.user(w.a).username = _encodings(raw, str(recovery))[encoding]
    assert w.all() == []
    keys = [("recovery key of carol", recovery)]
    assert only(w.all(secret_keys=keys), "no_secrets_on_server") == [
        "the dump contains the recovery key of carol"
    ]


def test_no_secrets_a_confirmed_e2e_password() -> None:
    w = World()
    confirmed = w.d.people[w.a].e2e_password
    assert confirmed and w.d.clients[w.a].random_password is None  # confirmed: no longer on the device
    w.d.server.room(w.rid).name = confirmed
    assert w.all() == []  # the device no longer has it: the check must be told
    found = no_secrets_on_server(w.d.server, w.d.clients, [confirmed])
    assert only(found, "no_secrets_on_server") == ["the dump contains the password"]


# ---------------------------------------------------------------------------- stored_keys_open


def test_stored_keys_open_e2ekey_that_does_not_open() -> None:
    w = World()
    w.d.server.subscription(w.rid, w.b).e2e_key = w.wrap(w.d.clients[w.a].session(w.rid).key, w.a)  # type: ignore[arg-type]
    details = only(stored_keys_open(w.d.server, w.d.clients, w.d.ledger), "stored_keys_open")
    assert details == [f"{w.b}'s E2EKey in {w.rid} does not open"]
    assert only(w.all(), "stored_keys_open") == details


def test_stored_keys_open_e2ekey_that_opens_to_a_forged_key() -> None:
    w = World()
    w.d.server.subscription(w.rid, w.b).e2e_key = w.wrap(w.forged_key(), w.b)
    details = only(w.all(), "stored_keys_open")
    assert details == [f"{w.b}'s E2EKey in {w.rid} is not the key made for {w.kid}"]


# ---------------------------------------------------------------------------- queue_is_clean


def test_queue_is_clean_holder_on_the_queue() -> None:
    w = World()
    room = w.d.server.room(w.rid)
    room.users_waiting = [*room.users_waiting, WaitingUser(w.b, T0 + 10)]  # type: ignore[misc]
    details = only(queue_is_clean(w.d.server, w.d.clients), "queue_is_clean")
    assert details == [f"{w.b} waits in {w.rid} but holds its key"]
    assert only(w.all(), "queue_is_clean") == details
    assert w.all(settled=False) == []  # checked only between steps


def test_queue_is_clean_non_member_on_the_queue() -> None:
    w = World()
    outsider = w.d.add_user("olga")
    w.d.server.room(w.rid).users_waiting.append(WaitingUser(outsider, T0 + 10))  # type: ignore[union-attr]
    assert only(w.all(), "queue_is_clean") == [f"{outsider} waits in {w.rid} without being a member"]


# ---------------------------------------------------------------------------- keys_are_legitimate


def test_keys_are_legitimate_planted_suggestion_the_client_accepts() -> None:
    """Suggestions are unauthenticated (spec section 6): a key planted by a malicious member or
    server under the room's kid is accepted by Carol's device; the invariant catches it."""
    w = World()
    planted = w.forged_key()
    w.d.server.e2e_provide_users_suggested_group_keys(
        w.b, {w.rid: [{"_id": w.c, "key": w.wrap(planted, w.c)}]}, now=T0 + 10
    )
    w.d.pump(T0 + 10)
    cc = w.d.clients[w.c]
    assert cc.holds_current_key(w.rid) and cc.held_keys(w.rid)[w.kid].key == planted.key  # type: ignore[index]
    details = only(keys_are_legitimate(w.d.clients, w.d.ledger), "keys_are_legitimate")
    assert details == [f"{w.c} holds a planted key {w.kid} for {w.rid}"]
    # the stored copy is caught too
    assert {v.invariant for v in w.all()} == {"keys_are_legitimate", "stored_keys_open"}


def test_keys_are_legitimate_key_held_with_no_record() -> None:
    w = World()
    w.d.clients[w.b].acquired.clear()
    details = only(w.all(), "keys_are_legitimate")
    assert details == [f"{w.b} holds {w.kid} for {w.rid} with no record"]


def test_keys_are_legitimate_decryption_with_an_unrecorded_key() -> None:
    w = World()
    message = w.d.server.messages(w.rid)[0]
    w.d.clients[w.c].decrypted.append((w.rid, message.id, w.kid))  # carol never had the key
    details = only(w.all(), "keys_are_legitimate")
    assert details == [f"{w.c} decrypted {message.id} with unrecorded key {w.kid}"]


# ---------------------------------------------------------------------------- reset_users_recover_properly


@pytest.mark.parametrize("source", ["E2EKey", "old"])
def test_reset_user_regaining_a_room_from_the_server_alone(source: str) -> None:
    w = World()
    w.d.reset(w.b, now=T0 + 20)
    w.d.login(w.b, now=T0 + 30)
    cb = w.d.clients[w.b]
    assert not cb.holds_current_key(w.rid)
    cb.acquired.append(KeyAcquired(w.rid, w.kid, source, T0 + 31))  # type: ignore[arg-type]
    details = only(reset_users_recover_properly(w.d.clients), "reset_users_recover_properly")
    assert details == [f"{w.b} regained {w.rid} after its reset from {source!r}, not from a holder"]
    assert only(w.all(), "reset_users_recover_properly") == details


def test_reset_user_regaining_a_room_from_a_holder_is_fine() -> None:
    w = World()
    w.d.reset(w.b, now=T0 + 20)
    w.d.login(w.b, now=T0 + 30)
    w.d.tick(w.a, now=T0 + 40)
    assert w.d.clients[w.b].holds_current_key(w.rid)
    assert [a.source for a in w.d.clients[w.b].acquired if a.at >= T0 + 20] == ["suggestion"]
    assert w.all() == []


CHECKS: list[Callable[[World], list[Violation]]] = [
    lambda w: no_secrets_on_server(w.d.server, w.d.clients),
    lambda w: stored_keys_open(w.d.server, w.d.clients, w.d.ledger),
    lambda w: queue_is_clean(w.d.server, w.d.clients),
    lambda w: keys_are_legitimate(w.d.clients, w.d.ledger),
    lambda w: reset_users_recover_properly(w.d.clients),
]


@pytest.mark.parametrize(
    "invariant",
    CHECKS,
    ids=[
        c.__name__
        for c in (
            no_secrets_on_server,
            stored_keys_open,
            queue_is_clean,
            keys_are_legitimate,
            reset_users_recover_properly,
        )
    ],
)
def test_every_invariant_holds_on_the_untouched_world(invariant: Callable[[World], list[Violation]]) -> None:
    assert invariant(World()) == []
