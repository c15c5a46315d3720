"""Hypothesis properties of the 2FA gate."""

from __future__ import annotations

import pytest
from conftest import HARDENED_FAST, T0, make_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import TwoFactorError, ValidationError
from protocol import totp as T

SLOW_OK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def enrolled(profile: object, seed: int, **kw: object):  # type: ignore[no-untyped-def]
    server = make_server(profile, seed=seed, **kw)  # type: ignore[arg-type]
    uid = server.create_user("alice", "pw", "alice@example.org")
    secret = server.totp_enable(uid, now=T0).secret
    codes = server.totp_validate_temp_token(uid, T.totp(secret, T0 - 300), now=T0 - 300)
    return server, uid, secret, codes


@SLOW_OK
@given(
    seed=st.integers(0, 2**32),
    now=st.floats(T0, T0 + 10**8, allow_nan=False),
    offset=st.integers(-4, 4),
    delta=st.integers(0, 2),
)
def test_totp_accepted_iff_within_window(seed: int, now: float, offset: int, delta: int) -> None:
    server, uid, secret, _ = enrolled("rocketchat", seed, totp_max_delta=delta)
    code = T.totp(secret, now + 30 * offset)
    t = T.time_step(now)
    expected = code in {T.hotp(secret, s) for s in range(t - delta, t + delta + 1)}
    try:
        accepted = server.check_two_factor(uid, code, now=now, require_second_factor=True)
    except TwoFactorError as exc:
        assert exc.code == "totp-invalid"
        accepted = False
    assert accepted == expected
    if abs(offset) <= delta:
        assert accepted


@SLOW_OK
@given(
    profile=st.sampled_from(["rocketchat", HARDENED_FAST]),
    picks=st.lists(st.integers(0, 11), min_size=1, max_size=30),
)
def test_backup_code_never_accepted_twice(profile: object, picks: list[int]) -> None:
    server, uid, _secret, codes = enrolled(profile, 0)
    used: set[str] = set()
    for i, pick in enumerate(picks):
        code = codes[pick]
        try:
            # an hour apart: past any hardened back-off, so only single use decides
            now = T0 + i * 3601
            accepted = server.check_two_factor(uid, code, now=now, require_second_factor=True)
        except TwoFactorError:
            accepted = False
        assert accepted == (code not in used)
        used.add(code)
    assert server.totp_codes_remaining(uid) == 12 - len(used)


@SLOW_OK
@given(
    seed=st.integers(0, 2**16),
    attempts=st.lists(
        st.tuples(st.floats(0, 90, allow_nan=False), st.integers(-2, 2)), min_size=1, max_size=40
    ),
)
def test_hardened_never_accepts_a_totp_step_twice(seed: int, attempts: list[tuple[float, int]]) -> None:
    server, uid, secret, _ = enrolled(HARDENED_FAST, seed)
    now = T0
    accepted_steps: list[int] = []
    for gap, offset in attempts:
        now += gap
        step = T.time_step(now) + offset
        try:
            server.check_two_factor(uid, T.hotp(secret, step), now=now, require_second_factor=True)
        except TwoFactorError:
            continue
        accepted_steps.append(step)
    assert accepted_steps == sorted(set(accepted_steps))  # strictly increasing: no replay


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    gaps=st.lists(st.floats(0, 5000, allow_nan=False), min_size=100, max_size=260),
    path=st.sampled_from(["check", "disable", "regenerate"]),
)
def test_hardened_lets_at_most_100_consecutive_failures_through(
    seed: int, gaps: list[float], path: str
) -> None:
    server, uid, secret, _ = enrolled(HARDENED_FAST, seed)
    now = T0
    evaluated_failures = 0
    for gap in gaps:
        now += gap
        window = {T.totp(secret, now + 30 * k) for k in (-1, 0, 1)}
        wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in window)
        try:
            if path == "check":
                server.check_two_factor(uid, wrong, now=now, require_second_factor=True)
                ok = True
            elif path == "disable":
                ok = server.totp_disable(uid, wrong, now=now)
            else:
                ok = server.totp_regenerate_codes(uid, wrong, now=now) != []
        except TwoFactorError as exc:
            if exc.code == "totp-max-attempts":
                continue  # refused before evaluation
            ok = False
        assert not ok
        evaluated_failures += 1
    assert evaluated_failures <= 100
    guard = server.user(uid).guards["totp"]
    assert guard.locked == (guard.failures >= 100)


@settings(max_examples=200, deadline=None)
@given(code=st.one_of(st.text(max_size=12), st.none()), method=st.sampled_from([None, "totp", "email", "x"]))
def test_arbitrary_input_never_crashes_the_gate(code: str | None, method: str | None) -> None:
    server, uid, _secret, _ = enrolled("rocketchat", 1)
    try:
        assert server.check_two_factor(uid, code, method=method, now=T0) is True
    except TwoFactorError as exc:
        assert exc.code in {"totp-required", "totp-invalid", "totp-max-attempts"}


@settings(max_examples=100, deadline=None)
@given(code=st.one_of(st.integers(), st.binary(), st.lists(st.text()), st.floats()))
def test_non_string_codes_are_validation_errors(code: object) -> None:
    server, uid, _secret, _ = enrolled("rocketchat", 1)
    for call in (
        lambda: server.check_two_factor(uid, code, now=T0),  # type: ignore[arg-type]
        lambda: server.totp_disable(uid, code, now=T0),  # type: ignore[arg-type]
        lambda: server.totp_regenerate_codes(uid, code, now=T0),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValidationError):
            call()
