"""Policy ``contacts``: recovery contacts hand a person its E2E password back.

The world: Alice, Bob and Carol log in (their E2E passwords saved), Alice enrols Bob and Carol as
recovery contacts with her E2E password, and a group of the three gets two messages.  Alice then
forgets her password: a new device logs in (``ENTER_PASSWORD``) and asks; any contact's online
device answers; the new device opens the answer with its one-time key, then the sealed password,
and unlocks the same key pair with every room and its history (Apple's account recovery contacts,
:mod:`protocol.contacts_server`).  Then what breaks a recovery (a contact's reset, the person's
own reset) and the server's refusals.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest
from conftest import T0, e2e_deployment, read

from protocol import (
    POLICIES,
    Client,
    Deployment,
    E2EError,
    E2EEState,
    NotFoundError,
    PermissionDenied,
    ValidationError,
    check_all,
)
from protocol.contacts_server import MAX_CONTACTS

HISTORY = ["alice, before", "bob, before"]


# ---------------------------------------------------------------------------- helpers


@dataclass
class World:
    d: Deployment
    alice: str
    bob: str
    carol: str
    rid: str
    password: str  # Alice's E2E password

    def new_device(self, seed: int = 99) -> Client:
        """Alice's new device, logged in: it has her stored keys but not her password."""
        d = self.d
        device = Client(d.server, self.alice, d.backend, entropy=random.Random(seed), ledger=d.ledger)
        device.login(d.people[self.alice].account_password, now=T0 + 20)
        assert device.state == E2EEState.ENTER_PASSWORD
        return device


def world(*, crypto: str = "symbolic", enrol: bool = True) -> World:
    d = e2e_deployment("contacts", crypto=crypto)
    a, b, c = (d.add_user(n) for n in ("alice", "bob", "carol"))
    for i, uid in enumerate((a, b, c)):
        d.login(uid, now=T0 + i)
    password = d.people[a].e2e_password
    assert password is not None
    if enrol:
        assert d.clients[a].enrol_recovery_contacts([b, c], password) == [b, c]
    rid = d.server.create_private_group(a, "g", [b, c], now=T0 + 5)
    d.pump(T0 + 5)
    d.clients[a].send(rid, HISTORY[0], now=T0 + 6)
    d.clients[b].send(rid, HISTORY[1], now=T0 + 7)
    d.logout(a, now=T0 + 10)  # the old device is gone
    return World(d, a, b, c, rid, password)


def check(d: Deployment, *secrets: str) -> None:
    passwords = [p.account_password for p in d.people.values()]
    assert check_all(d.server, d.clients, d.ledger, passwords=[*passwords, *secrets]) == []


# ---------------------------------------------------------------------------- the flow


def test_policy_contacts_keeps_rocketchats_mechanisms() -> None:
    m = POLICIES["contacts"]
    assert (m.contacts, m.queue, m.live) == (True, True, True)
    assert (m.backup, m.escrow, m.rejoin) == (False, False, False)
    assert [name for name, mech in POLICIES.items() if mech.contacts] == ["contacts"]
    assert MAX_CONTACTS == 5


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_a_contact_hands_the_password_back_and_the_new_device_reads_its_rooms(crypto: str) -> None:
    w = world(crypto=crypto)
    d = w.d
    assert d.server.e2e_contacts_of(w.alice) == [w.bob, w.carol]
    device = w.new_device()
    assert device.unlock_from_contacts(now=T0 + 21) is None  # nothing asked yet
    device.request_contact_recovery()
    assert device.contact_request_key is not None
    assert device.unlock_from_contacts(now=T0 + 22) is None  # nobody answered yet
    assert device.state == E2EEState.ENTER_PASSWORD
    assert [r["userId"] for r in d.server.e2e_contacts_pending(w.bob)] == [w.alice]
    assert d.clients[w.bob].answer_recovery_requests(now=T0 + 30) == [w.alice]
    assert d.server.e2e_contacts_pending(w.carol) == []  # answered: no longer open
    assert device.unlock_from_contacts(now=T0 + 31) == w.password
    assert device.state == E2EEState.READY and device.contact_request_key is None
    assert device.public_key == d.server.user(w.alice).e2e_public_key  # the same key pair
    assert device.holds_current_key(w.rid)
    assert read(d, device, w.rid) == HISTORY
    device.send(w.rid, "alice, back", now=T0 + 32)
    assert read(d, d.clients[w.carol], w.rid) == [*HISTORY, "alice, back"]
    dump = d.server.dump()
    assert [r["userId"] for r in dump["e2eRecoveryContacts"]] == [w.alice]
    assert w.password not in json.dumps(dump)
    check(d, w.password)


def test_the_first_answer_wins_and_a_later_one_changes_nothing() -> None:
    w = world()
    d = w.d
    w.new_device().request_contact_recovery()
    assert d.clients[w.carol].answer_recovery_requests(now=T0 + 30) == [w.alice]
    first = d.server.e2e_contacts_fetch(w.alice)
    assert first["answeredBy"] == w.carol and first["answer"] is not None
    d.server.e2e_contacts_answer(w.bob, w.alice, "another answer")  # still an open request
    assert d.server.e2e_contacts_fetch(w.alice) == first


def test_a_new_request_clears_the_earlier_answer() -> None:
    w = world()
    d = w.d
    w.new_device(seed=1).request_contact_recovery()
    d.clients[w.bob].answer_recovery_requests(now=T0 + 30)
    second = w.new_device(seed=2)  # the first new device was lost too
    second.request_contact_recovery()
    got = d.server.e2e_contacts_fetch(w.alice)
    assert (got["answer"], got["answeredBy"]) == (None, None)
    assert second.unlock_from_contacts(now=T0 + 31) is None
    assert d.clients[w.carol].answer_recovery_requests(now=T0 + 40) == [w.alice]
    assert second.unlock_from_contacts(now=T0 + 41) == w.password


def test_a_contact_that_reset_its_key_cannot_open_its_share() -> None:
    w = world()
    d = w.d
    d.reset(w.bob, now=T0 + 12, code=d.people[w.bob].account_password)
    d.login(w.bob, now=T0 + 13)  # new keys: the share was wrapped for the old ones
    device = w.new_device()
    device.request_contact_recovery()
    assert [r["userId"] for r in d.server.e2e_contacts_pending(w.bob)] == [w.alice]  # listed...
    assert d.clients[w.bob].answer_recovery_requests(now=T0 + 30) == []  # ...but opens nothing
    assert d.server.e2e_contacts_fetch(w.alice)["answer"] is None
    assert device.unlock_from_contacts(now=T0 + 31) is None
    assert d.clients[w.carol].answer_recovery_requests(now=T0 + 32) == [w.alice]  # Carol still can
    assert device.unlock_from_contacts(now=T0 + 33) == w.password


def test_a_reset_of_the_person_drops_its_record() -> None:
    w = world()
    d = w.d
    d.login(w.alice, now=T0 + 12)
    d.reset(w.alice, now=T0 + 13, code=d.people[w.alice].account_password)
    assert d.server.e2e_contacts_of(w.alice) == []
    assert d.server.dump()["e2eRecoveryContacts"] == []
    assert d.server.e2e_contacts_pending(w.bob) == []
    with pytest.raises(NotFoundError) as exc:
        d.server.e2e_contacts_request(w.alice, "a one-time key")
    assert exc.value.code == "error-contacts-not-found"
    with pytest.raises(NotFoundError) as exc2:
        d.server.e2e_contacts_fetch(w.alice)
    assert exc2.value.code == "error-contacts-not-found"


def test_a_reset_with_an_open_request_leaves_nothing_to_answer() -> None:
    w = world()
    d = w.d
    device = w.new_device()
    device.request_contact_recovery()
    device.reset_own_key(d.people[w.alice].account_password, now=T0 + 25)  # gave up waiting
    assert d.server.e2e_contacts_of(w.alice) == []
    assert d.clients[w.bob].answer_recovery_requests(now=T0 + 30) == []


def test_a_wrong_password_enrolled_unlocks_nothing() -> None:
    w = world(enrol=False)
    d = w.d
    d.login(w.alice, now=T0 + 11)
    assert d.clients[w.alice].enrol_recovery_contacts([w.bob], "not my password") == [w.bob]
    d.logout(w.alice, now=T0 + 12)
    device = w.new_device()
    device.request_contact_recovery()
    key = device.contact_request_key
    d.clients[w.bob].answer_recovery_requests(now=T0 + 30)
    assert device.unlock_from_contacts(now=T0 + 31) is None
    assert device.state == E2EEState.ENTER_PASSWORD and not device.holds_current_key(w.rid)
    assert device.contact_request_key is key  # kept: nothing was recovered


def test_enrolment_skips_self_and_contacts_without_keys() -> None:
    w = world(enrol=False)
    d = w.d
    dave = d.add_user("dave")  # never logged in: no key pair
    d.login(w.alice, now=T0 + 11)
    alice = d.clients[w.alice]
    assert alice.enrol_recovery_contacts([w.alice, dave, w.carol], w.password) == [w.carol]
    assert d.server.e2e_contacts_of(w.alice) == [w.carol]
    # nobody usable: nothing is stored, and the earlier record stays
    assert alice.enrol_recovery_contacts([w.alice, dave], w.password) == []
    assert d.server.e2e_contacts_of(w.alice) == [w.carol]


def test_enrolling_again_replaces_the_record() -> None:
    w = world()
    d = w.d
    d.login(w.alice, now=T0 + 11)
    assert d.clients[w.alice].enrol_recovery_contacts([w.carol], w.password) == [w.carol]
    assert d.server.e2e_contacts_of(w.alice) == [w.carol]
    d.logout(w.alice, now=T0 + 12)
    w.new_device().request_contact_recovery()
    assert d.server.e2e_contacts_pending(w.bob) == []  # Bob is no contact any more
    assert d.clients[w.bob].answer_recovery_requests(now=T0 + 30) == []


# ---------------------------------------------------------------------------- client refusals


def test_client_entry_points_need_the_right_state() -> None:
    w = world()
    d = w.d
    bob = d.clients[w.bob]  # READY: it knows its password, nothing to recover
    for call in (bob.request_contact_recovery, lambda: bob.unlock_from_contacts(now=T0 + 20)):
        with pytest.raises(E2EError) as exc:
            call()
        assert exc.value.code == "error-invalid-state"
    device = w.new_device()  # ENTER_PASSWORD: not functional
    with pytest.raises(E2EError) as exc2:
        device.answer_recovery_requests(now=T0 + 21)
    assert exc2.value.code == "error-invalid-state"
    with pytest.raises(E2EError) as exc3:
        device.enrol_recovery_contacts([w.bob], w.password)
    assert exc3.value.code == "error-invalid-state"
    assert d.server.e2e_contacts_fetch(w.alice)["answer"] is None


@pytest.mark.parametrize("password", ["", None, 7])
def test_enrolment_needs_a_password(password: object) -> None:
    w = world(enrol=False)
    d = w.d
    d.login(w.alice, now=T0 + 11)
    with pytest.raises(ValidationError) as exc:
        d.clients[w.alice].enrol_recovery_contacts([w.bob], password)  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    assert d.server.e2e_contacts_of(w.alice) == []


# ---------------------------------------------------------------------------- server refusals


def test_a_non_contact_cannot_answer() -> None:
    w = world()
    d = w.d
    eve = d.add_user("eve")
    d.login(eve, now=T0 + 11)
    w.new_device().request_contact_recovery()
    assert d.clients[eve].answer_recovery_requests(now=T0 + 30) == []
    with pytest.raises(PermissionDenied) as exc:
        d.server.e2e_contacts_answer(eve, w.alice, "a forged answer")
    assert exc.value.code == "error-not-allowed"
    assert d.server.e2e_contacts_fetch(w.alice)["answer"] is None


def test_answering_without_an_open_request_is_refused() -> None:
    w = world()
    d = w.d
    with pytest.raises(E2EError) as exc:
        d.server.e2e_contacts_answer(w.bob, w.alice, "an answer")
    assert exc.value.code == "error-invalid-state"
    assert d.server.e2e_contacts_fetch(w.alice) == {
        "sealed": d.server.dump()["e2eRecoveryContacts"][0]["sealed"],
        "answer": None,
        "answeredBy": None,
    }
    assert d.clients[w.bob].answer_recovery_requests(now=T0 + 30) == []  # nothing pending


@pytest.mark.parametrize("wrapped", ["", None, 3])
def test_an_empty_answer_is_refused(wrapped: object) -> None:
    w = world()
    d = w.d
    w.new_device().request_contact_recovery()
    with pytest.raises(ValidationError) as exc:
        d.server.e2e_contacts_answer(w.bob, w.alice, wrapped)  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    assert d.server.e2e_contacts_fetch(w.alice)["answer"] is None


@pytest.mark.parametrize("public_key", ["", None])
def test_a_request_needs_a_public_key(public_key: object) -> None:
    w = world()
    with pytest.raises(ValidationError) as exc:
        w.d.server.e2e_contacts_request(w.alice, public_key)  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    assert w.d.server.e2e_contacts_pending(w.bob) == []


def test_requests_and_answers_for_a_person_without_a_record_are_not_found() -> None:
    w = world(enrol=False)
    d = w.d
    device = w.new_device()
    with pytest.raises(NotFoundError) as exc:
        device.request_contact_recovery()
    assert exc.value.code == "error-contacts-not-found"
    assert device.contact_request_key is None
    with pytest.raises(NotFoundError) as exc2:
        d.server.e2e_contacts_answer(w.bob, w.alice, "an answer")
    assert exc2.value.code == "error-contacts-not-found"
    with pytest.raises(NotFoundError) as exc3:
        d.server.e2e_contacts_fetch("nobody")
    assert exc3.value.code == "error-invalid-user"


SEALED = {"algorithm": "rc.v2.aes-sha2", "kid": "k", "iv": "aXY=", "ciphertext": "Y3Q="}


def test_contacts_set_accepts_one_to_five_contacts() -> None:
    d = e2e_deployment("contacts")
    a, *others = (d.add_user(f"u{i}") for i in range(7))
    d.server.e2e_contacts_set(a, SEALED, {uid: "share" for uid in others[:MAX_CONTACTS]})
    assert d.server.e2e_contacts_of(a) == others[:5]
    d.server.e2e_contacts_set(a, SEALED, {others[5]: "share"})  # replaces
    assert d.server.e2e_contacts_of(a) == [others[5]]


@pytest.mark.parametrize("count", [0, 6])
def test_contacts_set_refuses_zero_or_six_contacts(count: int) -> None:
    d = e2e_deployment("contacts")
    a, *others = (d.add_user(f"u{i}") for i in range(7))
    with pytest.raises(ValidationError) as exc:
        d.server.e2e_contacts_set(a, SEALED, {uid: "share" for uid in others[:count]})
    assert exc.value.code == "error-invalid-params" and "1 to 5" in exc.value.message
    assert d.server.e2e_contacts_of(a) == []


def test_contacts_set_refuses_self_unknown_users_bad_shares_and_bad_sealed() -> None:
    d = e2e_deployment("contacts")
    a, b = d.add_user("alice"), d.add_user("bob")
    with pytest.raises(ValidationError) as exc:
        d.server.e2e_contacts_set(a, SEALED, {b: "share", a: "share"})
    assert exc.value.code == "error-invalid-params" and "own recovery contact" in exc.value.message
    with pytest.raises(NotFoundError) as exc2:
        d.server.e2e_contacts_set(a, SEALED, {"nobody": "share"})
    assert exc2.value.code == "error-invalid-user"
    with pytest.raises(NotFoundError) as exc3:
        d.server.e2e_contacts_set("nobody", SEALED, {b: "share"})
    assert exc3.value.code == "error-invalid-user"
    for share in ("", None):
        with pytest.raises(ValidationError) as exc4:
            d.server.e2e_contacts_set(a, SEALED, {b: share})  # type: ignore[dict-item]
        assert exc4.value.code == "error-invalid-params"
    for sealed in ({}, None, "sealed"):
        with pytest.raises(ValidationError) as exc5:
            d.server.e2e_contacts_set(a, sealed, {b: "share"})  # type: ignore[arg-type]
        assert exc5.value.code == "error-invalid-params"
    with pytest.raises(ValidationError):
        d.server.e2e_contacts_set(a, SEALED, [(b, "share")])  # type: ignore[arg-type]
    assert d.server.e2e_contacts_of(a) == [] and d.server.dump()["e2eRecoveryContacts"] == []


@pytest.mark.parametrize("policy", [p for p, m in POLICIES.items() if not m.contacts])
def test_every_contacts_entry_point_needs_policy_contacts(policy: str) -> None:
    d = e2e_deployment(policy)
    a, b = d.add_user("alice"), d.add_user("bob")
    calls = [
        lambda: d.server.e2e_contacts_set(a, SEALED, {b: "share"}),
        lambda: d.server.e2e_contacts_request(a, "key"),
        lambda: d.server.e2e_contacts_pending(b),
        lambda: d.server.e2e_contacts_answer(b, a, "answer"),
        lambda: d.server.e2e_contacts_fetch(a),
    ]
    for call in calls:
        with pytest.raises(E2EError) as exc:
            call()
        assert exc.value.code == "error-not-allowed" and policy in exc.value.message
    assert d.server.e2e_contacts_of(a) == []
    d.login(a, now=T0)
    d.login(b, now=T0 + 1)
    with pytest.raises(E2EError) as exc2:
        d.clients[a].enrol_recovery_contacts([b], d.people[a].e2e_password)  # type: ignore[arg-type]
    assert exc2.value.code == "error-not-allowed"


def test_the_dump_holds_the_record_but_never_the_password() -> None:
    w = world()
    d = w.d
    device = w.new_device()
    device.request_contact_recovery()
    d.clients[w.bob].answer_recovery_requests(now=T0 + 30)
    dump = d.server.dump()
    (record,) = dump["e2eRecoveryContacts"]
    assert record["userId"] == w.alice
    assert set(record["shares"]) == {w.bob, w.carol}
    assert set(record["sealed"]) == {"algorithm", "kid", "iv", "ciphertext"}
    assert record["requestKey"] is not None and record["answer"] is not None
    assert w.password not in json.dumps(dump)
