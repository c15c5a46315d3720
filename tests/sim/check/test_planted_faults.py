"""Proof that ``keysim check`` catches bugs: faults planted in the protocol, one per test.

Each fault is a ``monkeypatch`` on a protocol class, undone when its test ends, and each is the
smallest change that makes the protocol wrong in one named way.  The explorer (and, for one
fault, the Hypothesis state machine of ``tests/protocol/test_e2e_stateful.py``) must find it, within a scope small
enough to take a second or two.  Two faults the explorer cannot see in this model are shown
benign, and their behaviour is asserted directly instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from protocol import Client, Deployment, Server
from protocol.rooms import WaitingUser
from sim.check import CheckResult, explore


def caught(result: CheckResult, invariant: str) -> None:
    assert not result.ok, result.report()
    assert any(v.startswith(invariant) for v in result.violations), result.report()
    assert result.trace[0].startswith("start:")


def _keep_queue(method: Callable[..., Any], rooms: Callable[..., list[str]]) -> Callable[..., Any]:
    """``method`` with the queues of ``rooms(self, *args)`` left as they were before it ran."""

    def wrapper(self: Server, *args: Any, **kwargs: Any) -> Any:
        saved = {}
        for rid in rooms(self, *args):
            waiting = self.room(rid).users_waiting
            saved[rid] = list(waiting) if waiting is not None else None
        out = method(self, *args, **kwargs)
        for rid, waiting in saved.items():
            self.room(rid).users_waiting = waiting
        return out

    return wrapper


# ------------------------------------------------------------------------------ caught by the explorer


def test_accepting_a_suggestion_without_checking_it_decrypts(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Client._import_group_key

    def trusting(self: Client, session: Any, wrapped: str, source: str, now: float) -> bool:
        opened = original(self, session, wrapped, source, now)
        return True if source in ("suggestion", "backup") else opened

    monkeypatch.setattr(Client, "_import_group_key", trusting)
    # a suggestion wrapped for the key pair u0 had before its reset is accepted as E2EKey
    caught(explore(3, 2, 4, "queue"), "stored_keys_open")


def test_reset_forgetting_to_clear_old_room_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Server._reset_user_e2e_key

    def keeps_old(self: Server, user_id: str, now: float) -> None:
        saved = {rid: self.room(rid).subscriptions[user_id].old_room_keys for rid in self.rooms_of(user_id)}
        original(self, user_id, now)
        for rid, old in saved.items():
            self.room(rid).subscriptions[user_id].old_room_keys = old

    monkeypatch.setattr(Server, "_reset_user_e2e_key", keeps_old)
    # old keys exist once u0 reset the room key (offered because it lacked the key)
    result = explore(3, 2, 5, "queue")
    caught(result, "reset_forgets_keys")
    assert any("resets the room key" in step for step in result.trace)


def test_skipping_the_2fa_gate_on_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Server.e2e_reset_own_key

    def ungated(self: Server, user_id: str, code: str | None, **kwargs: Any) -> None:
        check = self.twofactor.check
        self.twofactor.check = lambda *a, **k: True  # type: ignore[method-assign]
        try:
            original(self, user_id, code, **kwargs)
        finally:
            self.twofactor.check = check  # type: ignore[method-assign]

    monkeypatch.setattr(Server, "e2e_reset_own_key", ungated)
    result = explore(3, 2, 2, "queue")
    caught(result, "two_factor_gate")
    assert result.trace[1] == "u0 resets its E2E key"  # u0 has TOTP; no code was given


def test_serving_a_member_without_a_public_key(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Server.e2e_fetch_users_waiting_for_group_key

    def with_keyless(self: Server, user_id: str, room_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = dict(original(self, user_id, room_ids))
        for rid in room_ids:
            for uid, sub in self.room(rid).subscriptions.items():
                keyless = self.user(uid).e2e_public_key is None
                if uid != user_id and sub.e2e_key is None and sub.e2e_suggested_key is None and keyless:
                    out.setdefault(rid, []).append({"_id": uid, "public_key": None})
        return out

    monkeypatch.setattr(Server, "e2e_fetch_users_waiting_for_group_key", with_keyless)
    caught(explore(3, 2, 3, "queue"), "operation_failed")  # the holder's tick fails to wrap
    # the stateful tests find it too: tests/protocol/test_e2e_stateful.py


def test_wrapping_for_the_wrong_public_key(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Client._wrap_for

    def for_self(self: Client, session: Any, user_id: str, public_key: str, old_keys: Any) -> Any:
        assert self.public_key is not None
        return original(self, session, user_id, self.public_key, old_keys)

    monkeypatch.setattr(Client, "_wrap_for", for_self)
    # nobody can open what it is served: it rejects, is queued again, and never gets the key
    caught(explore(3, 2, 2, "queue"), "queue_restores")


def test_not_dequeuing_on_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    accept = Server.e2e_accept_suggested_group_key
    patched = _keep_queue(accept, lambda self, user_id, room_id: [room_id])
    monkeypatch.setattr(Server, "e2e_accept_suggested_group_key", patched)
    # the deprecated updateGroupKey dequeues nobody: only the acceptance takes the user off
    result = explore(3, 2, 4, "queue")
    caught(result, "queue_is_clean")
    assert "updateGroupKey" in result.trace[-1]
    # forked workers run the planted fault too, and find the same shortest trace, counted alike
    two = explore(3, 2, 4, "queue", workers=2)
    assert (two.violations, two.trace, two.ops) == (result.violations, result.trace, result.ops)
    assert (two.states, two.transitions) == (result.states, result.transitions)


def test_a_served_user_staying_on_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    provide = Server.e2e_provide_users_suggested_group_keys
    patched = _keep_queue(provide, lambda self, user_id, keys: [r for r in keys if r in self.room_ids])
    monkeypatch.setattr(Server, "e2e_provide_users_suggested_group_keys", patched)
    caught(explore(3, 2, 4, "queue"), "served_users_leave_queue")


def test_clearing_the_whole_queue_on_provide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Legacy servers removed the whole ``usersWaitingForE2EKeys`` on provide.  A fault under the
    current invariants: a provide that serves only some (a late suggestion, a backup restore)
    drops the others, who then wait nowhere (``nobody_silently_lost``)."""
    provide = Server.e2e_provide_users_suggested_group_keys

    def clears_all(self: Server, user_id: str, keys: dict[str, Any], *, now: float) -> None:
        provide(self, user_id, keys, now=now)
        for rid in keys:
            if rid in self.room_ids and user_id in self.room(rid).subscriptions:
                self.room(rid).users_waiting = None

    monkeypatch.setattr(Server, "e2e_provide_users_suggested_group_keys", clears_all)
    caught(explore(3, 2, 4, "queue"), "nobody_silently_lost")
    caught(explore(3, 2, 4, "backup"), "nobody_silently_lost")


def test_a_backup_that_restores_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "restore_from_backup", lambda self, key, *, now: [])
    caught(explore(3, 2, 2, "backup"), "backup_restores")


def test_a_reject_that_does_not_queue_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """``e2e.rejectSuggestedGroupKey`` clears the suggestion and must queue the user again.  Without
    the queueing, a user whose stale suggestion (for its old key pair) arrives after its relogin
    rejects it and waits nowhere.  In the default scope the late suggestion lands only before the
    relogin, whose own queueing hides the fault; widened, the explorer finds it in 3 steps."""

    def forgetful(self: Server, user_id: str, room_id: str, *, now: float) -> None:
        _, sub = self._suggestion(user_id, room_id)
        sub.e2e_suggested_key = sub.suggested_old_room_keys = None
        sub.suggestion_signer = sub.suggestion_signature = None

    monkeypatch.setattr(Server, "e2e_reject_suggested_group_key", forgetful)
    assert explore(3, 2, 5, "queue").ok  # the default scope: the fault survives
    result = explore(3, 2, 5, "queue", late_after_login=True)
    caught(result, "nobody_silently_lost")
    assert [op.kind for op in result.ops] == ["reset", "login", "deliver_late"]


def test_a_logout_that_keeps_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """RC's ``stopClient`` forgets the private key and the room keys at logout; a device that keeps
    them is caught in one step, now that logged-out devices are in scope."""

    def sticky(self: Client) -> None:
        token = self._local.login_token
        if token is not None:
            self.server.logout(self.user_id, token)

    monkeypatch.setattr(Client, "logout", sticky)
    result = explore(3, 2, 3, "queue")
    caught(result, "logged_out_forgets")
    assert [op.kind for op in result.ops] == ["logout"]


def test_a_phone_left_signed_in_by_a_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """resetUserE2EKey.ts signs the user out everywhere and the apps wipe their keys (spec 3.4);
    a deployment whose other devices stay signed in is caught in one step once phones are in
    scope, and not at all without them."""

    def reset(self: Deployment, user_id: str, *, now: float, code: str | None = None) -> None:
        self.clients[user_id].reset_own_key(code, now=now)
        self.people[user_id].e2e_password = None
        self.pump(now)

    monkeypatch.setattr(Deployment, "reset", reset)
    result = explore(3, 2, 3, "queue", phones=1)
    caught(result, "reset_forgets_keys")
    assert "u0's phone is still signed in" in result.violations[0]
    assert [op.kind for op in result.ops] == ["reset"]
    assert explore(3, 2, 3, "queue", eventually=False).ok


def test_a_server_handing_back_a_stale_own_public_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client takes its own public key from ``e2e.fetchMyKeys`` (spec 3.2).  A server that
    keeps answering with the key pair's public key from before a reset makes members wrap the
    room key for a key the user no longer holds.  A phone reaches it sooner: it signs in first and
    makes the new pair, the web client then fetches the stale public key."""
    reset, fetch = Server._reset_user_e2e_key, Server.e2e_fetch_my_keys
    stale: dict[tuple[int, str], str | None] = {}

    def remembering(self: Server, user_id: str, now: float) -> None:
        stale[id(self), user_id] = self.user(user_id).e2e_public_key
        reset(self, user_id, now)

    def stale_fetch(self: Server, user_id: str) -> dict[str, str]:
        keys = fetch(self, user_id)
        old = stale.get((id(self), user_id))
        return {**keys, "public_key": old} if keys and old else keys

    monkeypatch.setattr(Server, "_reset_user_e2e_key", remembering)
    monkeypatch.setattr(Server, "e2e_fetch_my_keys", stale_fetch)
    web, phone = explore(3, 2, 6, "queue"), explore(3, 2, 6, "queue", phones=1)
    caught(web, "queue_restores")
    caught(phone, "queue_restores")
    # the web client alone needs 6 operations (reset, login, logout, login, password, change),
    # with a phone 4: reset, the phone signs in and makes the pair, the web client fetches
    assert len(phone.ops) < len(web.ops) and [op.kind for op in phone.ops][:2] == ["reset", "phone_login"]


def test_a_holder_that_ignores_live_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "_provide_key_to_user", lambda self, request, now: None)
    caught(explore(3, 2, 2, "live"), "live_restoration")


# ----------------------------------------------------------------------- benign here: shown directly


def _holder_waiting_in_team() -> tuple[Deployment, str, str]:
    """u0 holds the team's key; u1 reset and is back.  Then u0 is put on the queue by hand (no
    flow of the protocol puts a holder there: ``queue_is_clean`` holds in every state)."""
    d = Deployment(policy="queue", seed=3)
    u0, u1 = d.add_user("u0"), d.add_user("u1")
    for uid in (u0, u1):
        d.login(uid, now=0)
    team = d.server.create_private_group(u0, "team", [u1], now=1)
    d.pump(1)
    d.reset(u1, now=2)
    d.login(u1, now=3)
    room = d.server.room(team)
    assert room.is_waiting(u1) and d.client(u0).holds_current_key(team)
    room.users_waiting = [*(room.users_waiting or []), WaitingUser(u0, 4.0)]
    return d, u0, team


def test_a_holder_on_the_queue_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """RC's loop skips rooms where the client itself waits.  Dropping that filter is invisible to
    the explorer: a member on the queue never holds the current key (``queue_is_clean``), and the
    tick re-checks the key anyway; so the filter is asserted directly."""

    def unfiltered(self: Client) -> list[str]:
        return [
            r for r in self.server.rooms_of(self.user_id) if self.server.room(r).users_waiting is not None
        ]

    d, u0, team = _holder_waiting_in_team()
    assert team not in d.client(u0).distribution_candidates()
    monkeypatch.setattr(Client, "distribution_candidates", unfiltered)
    assert team in d.client(u0).distribution_candidates()  # the fault, seen directly
    assert explore(3, 2, 4, "queue").ok  # ... and not by the explorer: it is benign here
