"""Policy ``escrow``: the PIN vault of :mod:`protocol.escrow` and the client paths that use it.

Two layers.  :class:`~protocol.escrow.Vault` alone: enrol and recover, the guess budget (a wrong
PIN spends one, the last destroys the record, a right PIN restores it: Signal SVR2, iCloud
Keychain escrow), loss, and argument validation; a Hypothesis property checks the vault against a
five-line model over any sequence of guesses.  Then the client: a device with new keys escrows its
generated E2E password before the person confirms saving it, and a second device of the same
person (``ENTER_PASSWORD``) unlocks the same key pair with the PIN and reads the history.
"""

from __future__ import annotations

import random

import pytest
from conftest import T0, e2e_deployment, read
from hypothesis import given
from hypothesis import strategies as st

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
from protocol.escrow import DEFAULT_MAX_GUESSES, EscrowError, Vault

PIN, WRONG = "4711", "0000"
SECRET = "correct horse battery staple"


def vault(max_guesses: int = 3, seed: int = 0) -> Vault:
    return Vault(max_guesses=max_guesses, entropy=random.Random(seed))


def wrong_guess(v: Vault, user_id: str = "alice", pin: str = WRONG) -> EscrowError:
    with pytest.raises(EscrowError) as exc:
        v.recover(user_id, pin)
    return exc.value


def not_found(v: Vault, user_id: str = "alice", pin: str = PIN) -> NotFoundError:
    with pytest.raises(NotFoundError) as exc:
        v.recover(user_id, pin)
    return exc.value


# ---------------------------------------------------------------------------- the vault


def test_enrol_then_recover_releases_the_secret_and_keeps_the_record() -> None:
    v = vault()
    assert "alice" not in v and v.guesses_left("alice") == 0
    v.enrol("alice", PIN, SECRET)
    assert "alice" in v and v.guesses_left("alice") == 3
    assert v.recover("alice", PIN) == SECRET
    assert v.recover("alice", PIN) == SECRET  # a release does not consume the record
    assert (v.destroyed, v.lost) == (0, 0)


def test_default_guess_limit_is_ten() -> None:
    v = Vault(entropy=random.Random(0))
    assert DEFAULT_MAX_GUESSES == 10 and v.max_guesses == 10
    v.enrol("alice", PIN, SECRET)
    assert v.guesses_left("alice") == 10


def test_wrong_pin_spends_a_guess_with_code_and_guesses_left() -> None:
    v = vault(max_guesses=3)
    v.enrol("alice", PIN, SECRET)
    first = wrong_guess(v)
    assert isinstance(first, PermissionDenied)  # one exception root: a refusal
    assert first.code == "error-escrow-wrong-pin" and first.details == {"guesses_left": 2}
    assert v.guesses_left("alice") == 2
    assert wrong_guess(v).details == {"guesses_left": 1}
    assert "alice" in v and v.destroyed == 0


def test_last_wrong_guess_destroys_the_record() -> None:
    v = vault(max_guesses=3)
    v.enrol("alice", PIN, SECRET)
    assert [wrong_guess(v).details["guesses_left"] for _ in range(3)] == [2, 1, 0]
    assert "alice" not in v and v.guesses_left("alice") == 0
    assert (v.destroyed, v.lost) == (1, 0)
    # gone for good: even the right PIN finds nothing now
    exc = not_found(v)
    assert exc.code == "error-escrow-not-found"
    assert v.destroyed == 1  # a miss on a destroyed record counts nothing more


def test_single_guess_vault_destroys_on_the_first_wrong_pin() -> None:
    v = vault(max_guesses=1)
    v.enrol("alice", PIN, SECRET)
    assert wrong_guess(v).details == {"guesses_left": 0}
    assert "alice" not in v and v.destroyed == 1


def test_right_pin_restores_the_full_budget() -> None:
    v = vault(max_guesses=3)
    v.enrol("alice", PIN, SECRET)
    wrong_guess(v)
    wrong_guess(v)
    assert v.guesses_left("alice") == 1
    assert v.recover("alice", PIN) == SECRET
    assert v.guesses_left("alice") == 3
    # two more wrong guesses now leave the record alive (the budget really was restored)
    wrong_guess(v)
    wrong_guess(v)
    assert "alice" in v and v.recover("alice", PIN) == SECRET


def test_enrol_again_replaces_secret_pin_and_budget() -> None:
    v = vault(max_guesses=3)
    v.enrol("alice", PIN, SECRET)
    wrong_guess(v, pin="9999")
    wrong_guess(v, pin="9999")
    v.enrol("alice", "2468", "the new password")
    assert v.guesses_left("alice") == 3
    assert wrong_guess(v, pin=PIN).details == {"guesses_left": 2}  # the old PIN is wrong now
    assert v.recover("alice", "2468") == "the new password"


def test_enrol_after_destruction_starts_a_new_record() -> None:
    v = vault(max_guesses=1)
    v.enrol("alice", PIN, SECRET)
    wrong_guess(v)
    v.enrol("alice", PIN, "second secret")
    assert v.recover("alice", PIN) == "second secret"
    assert v.destroyed == 1


def test_records_and_budgets_are_per_user() -> None:
    v = vault(max_guesses=2)
    v.enrol("alice", PIN, "alice's")
    v.enrol("bob", PIN, "bob's")  # the same PIN: each record has its own salt and budget
    wrong_guess(v, "alice")
    wrong_guess(v, "alice")
    assert "alice" not in v and v.guesses_left("bob") == 2
    assert v.recover("bob", PIN) == "bob's"
    assert not_found(v, "carol").code == "error-escrow-not-found"


def test_lose_drops_the_record_and_counts_it() -> None:
    v = vault()
    v.enrol("alice", PIN, SECRET)
    assert v.lose("alice") is True
    assert "alice" not in v and (v.lost, v.destroyed) == (1, 0)
    assert v.lose("alice") is False  # nothing left to lose
    assert v.lose("bob") is False
    assert v.lost == 1
    assert not_found(v).code == "error-escrow-not-found"


@pytest.mark.parametrize("bad", [0, -1, True, False, "3", 2.5, None])
def test_max_guesses_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Vault(max_guesses=bad, entropy=random.Random(0))  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    assert repr(bad) in exc.value.message  # the error names the offending value


@pytest.mark.parametrize(
    ("user_id", "pin", "secret", "name"),
    [
        ("", PIN, SECRET, "user_id"),
        ("alice", "", SECRET, "pin"),
        ("alice", PIN, "", "secret"),
        ("alice", 4711, SECRET, "pin"),
        ("alice", PIN, None, "secret"),
        (None, PIN, SECRET, "user_id"),
    ],
)
def test_enrol_rejects_empty_or_non_string_fields(
    user_id: object, pin: object, secret: object, name: str
) -> None:
    v = vault()
    with pytest.raises(ValidationError) as exc:
        v.enrol(user_id, pin, secret)  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    assert exc.value.message == f"{name} must be a non-empty string"
    assert "alice" not in v


def test_recover_with_a_non_string_pin_spends_no_guess() -> None:
    v = vault(max_guesses=2)
    v.enrol("alice", PIN, SECRET)
    with pytest.raises(ValidationError) as exc:
        v.recover("alice", 4711)  # type: ignore[arg-type]
    assert exc.value.code == "error-invalid-params"
    assert v.guesses_left("alice") == 2


def test_empty_pin_is_a_wrong_guess_not_a_crash() -> None:
    v = vault(max_guesses=2)
    v.enrol("alice", PIN, SECRET)
    assert wrong_guess(v, pin="").details == {"guesses_left": 1}


@given(
    max_guesses=st.integers(1, 5),
    guesses=st.lists(st.booleans(), max_size=20),  # True: the right PIN
)
def test_secret_released_iff_right_pin_before_max_wrong_since_last_success(
    max_guesses: int, guesses: list[bool]
) -> None:
    v = vault(max_guesses=max_guesses)
    v.enrol("alice", PIN, SECRET)
    wrong_since_success, alive = 0, True  # the model
    for right in guesses:
        if not alive:
            assert not_found(v, pin=PIN if right else WRONG).code == "error-escrow-not-found"
        elif right:
            assert v.recover("alice", PIN) == SECRET
            wrong_since_success = 0
        else:
            wrong_since_success += 1
            assert wrong_guess(v).details == {"guesses_left": max_guesses - wrong_since_success}
            alive = wrong_since_success < max_guesses
        assert ("alice" in v) is alive
        assert v.guesses_left("alice") == (max_guesses - wrong_since_success if alive else 0)
    assert v.destroyed == (0 if alive else 1)


# ---------------------------------------------------------------------------- policy


def test_policy_escrow_runs_the_vault_beside_rocketchats_two_mechanisms() -> None:
    m = POLICIES["escrow"]
    assert (m.escrow, m.queue, m.live) == (True, True, True)
    assert (m.backup, m.rejoin, m.contacts) == (False, False, False)
    assert [name for name, mech in POLICIES.items() if mech.escrow] == ["escrow"]
    assert Deployment(policy="escrow").server.mechanisms is m


# ---------------------------------------------------------------------------- the client


def new_device(d: Deployment, uid: str, seed: int = 99) -> Client:
    """A second device of the same person: it knows nothing, not even ``random_password``."""
    return Client(d.server, uid, d.backend, entropy=random.Random(seed), ledger=d.ledger)


def escrowed_world(d: Deployment, v: Vault) -> tuple[str, str, str, str]:
    """Alice escrows her first E2E password, then a group with Bob gets two messages."""
    a, b = d.add_user("alice"), d.add_user("bob")
    ca = d.clients[a]
    ca.login(d.people[a].account_password, now=T0)
    assert ca.state == E2EEState.SAVE_PASSWORD
    password = ca.random_password
    assert password is not None
    ca.escrow_password(v, PIN)  # while the client still shows the password
    ca.confirm_password_saved()
    d.login(b, now=T0 + 1)
    rid = d.server.create_private_group(a, "g", [b], now=T0 + 2)
    d.pump(T0 + 2)
    ca.send(rid, "from alice", now=T0 + 3)
    d.clients[b].send(rid, "from bob", now=T0 + 4)
    return a, b, rid, password


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_new_device_unlocks_with_the_pin_and_reads_the_history(crypto: str) -> None:
    d = e2e_deployment("escrow", crypto=crypto)
    v = vault(max_guesses=3)
    a, b, rid, password = escrowed_world(d, v)
    assert v.recover(a, PIN) == password  # the vault holds exactly the generated password
    assert password not in str(d.server.dump())  # and the server never saw it
    d.clients[a].logout()  # the old phone is gone
    phone = new_device(d, a)
    phone.login(d.people[a].account_password, now=T0 + 10)
    assert phone.state == E2EEState.ENTER_PASSWORD and phone.random_password is None
    with pytest.raises(EscrowError) as exc:
        phone.unlock_from_escrow(v, WRONG, now=T0 + 11)
    assert exc.value.details == {"guesses_left": 2}
    assert phone.state == E2EEState.ENTER_PASSWORD and not phone.functional
    assert phone.unlock_from_escrow(v, PIN, now=T0 + 12) is True
    assert phone.state == E2EEState.READY
    assert v.guesses_left(a) == 3  # the right PIN restored the budget
    assert phone.public_key == d.server.user(a).e2e_public_key  # the same key pair
    assert phone.holds_current_key(rid)
    assert read(d, phone, rid) == ["from alice", "from bob"]
    phone.send(rid, "back again", now=T0 + 13)
    assert read(d, d.clients[b], rid) == ["from alice", "from bob", "back again"]
    assert phone.resets == [] and d.server.user(a).e2e_private_key is not None
    passwords = [p.account_password for p in d.people.values()]
    assert check_all(d.server, d.clients, d.ledger, passwords=[*passwords, password]) == []


def test_unlock_without_a_record_is_not_found_and_leaves_enter_password() -> None:
    d = e2e_deployment("escrow")
    v = vault()
    a, _, rid, _ = escrowed_world(d, v)
    assert v.lose(a)
    phone = new_device(d, a)
    phone.login(d.people[a].account_password, now=T0 + 10)
    with pytest.raises(NotFoundError) as exc:
        phone.unlock_from_escrow(v, PIN, now=T0 + 11)
    assert exc.value.code == "error-escrow-not-found"
    assert phone.state == E2EEState.ENTER_PASSWORD and not phone.holds_current_key(rid)


def test_a_destroyed_record_leaves_the_new_device_locked_out() -> None:
    d = e2e_deployment("escrow")
    v = vault(max_guesses=2)
    a, _, rid, _ = escrowed_world(d, v)
    phone = new_device(d, a)
    phone.login(d.people[a].account_password, now=T0 + 10)
    for left in (1, 0):
        with pytest.raises(EscrowError) as exc:
            phone.unlock_from_escrow(v, WRONG, now=T0 + 11)
        assert exc.value.details == {"guesses_left": left}
    assert v.destroyed == 1
    with pytest.raises(NotFoundError) as gone:
        phone.unlock_from_escrow(v, PIN, now=T0 + 12)
    assert gone.value.code == "error-escrow-not-found"
    assert phone.state == E2EEState.ENTER_PASSWORD and read(d, phone, rid) == [None, None]


def test_stale_escrowed_password_returns_false_after_a_password_change() -> None:
    d = e2e_deployment("escrow")
    v = vault(max_guesses=3)
    a, _, rid, _ = escrowed_world(d, v)
    d.clients[a].change_password("a brand new password", now=T0 + 5)  # not re-escrowed
    phone = new_device(d, a)
    phone.login(d.people[a].account_password, now=T0 + 10)
    assert phone.unlock_from_escrow(v, PIN, now=T0 + 11) is False
    assert phone.state == E2EEState.ENTER_PASSWORD and not phone.holds_current_key(rid)
    assert v.guesses_left(a) == 3  # the PIN was right: no guess spent
    assert phone.enter_password("a brand new password", now=T0 + 12) is True


def test_escrow_password_needs_a_newly_generated_password() -> None:
    d = e2e_deployment("escrow")
    v = vault()
    a, _, _, _ = escrowed_world(d, v)
    ca = d.clients[a]
    assert ca.state == E2EEState.READY and ca.random_password is None  # confirmed: gone
    with pytest.raises(E2EError) as exc:
        ca.escrow_password(v, "1111")
    assert exc.value.code == "error-invalid-state"
    assert v.recover(a, PIN) is not None  # the earlier record is untouched
    phone = new_device(d, a)
    phone.login(d.people[a].account_password, now=T0 + 10)  # unlocking a stored key: nothing new
    with pytest.raises(E2EError) as exc2:
        phone.escrow_password(v, "1111")
    assert exc2.value.code == "error-invalid-state"


@pytest.mark.parametrize("where", ["ready", "logged_out", "never_logged_in"])
def test_unlock_from_escrow_needs_enter_password_online(where: str) -> None:
    d = e2e_deployment("escrow")
    v = vault(max_guesses=3)
    a, _, _, _ = escrowed_world(d, v)
    client = d.clients[a]
    if where == "logged_out":
        client.logout()
    elif where == "never_logged_in":
        client = new_device(d, a)
    with pytest.raises(E2EError) as exc:
        client.unlock_from_escrow(v, WRONG, now=T0 + 10)
    assert exc.value.code == "error-invalid-state"
    assert v.guesses_left(a) == 3  # refused before the vault was asked


def test_unlock_after_the_session_ended_is_refused() -> None:
    d = e2e_deployment("escrow")
    v = vault(max_guesses=3)
    a, _, _, _ = escrowed_world(d, v)
    phone = new_device(d, a)
    phone.login(d.people[a].account_password, now=T0 + 10)
    d.server.logout_everywhere(a)  # the phone still shows ENTER_PASSWORD, but is not online
    assert phone.state == E2EEState.ENTER_PASSWORD and not phone.online
    with pytest.raises(E2EError) as exc:
        phone.unlock_from_escrow(v, PIN, now=T0 + 11)
    assert exc.value.code == "error-invalid-state"
    assert v.guesses_left(a) == 3
