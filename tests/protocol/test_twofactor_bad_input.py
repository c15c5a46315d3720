"""Bad input gives a clear TwoFactorError or ProtocolError, never a crash."""

from __future__ import annotations

import pytest
from conftest import T0, make_server

from protocol import NotFoundError, ProtocolError, TwoFactorError
from protocol import totp as T

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.fixture(params=["rocketchat", "hardened"])
def enrolled(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    server = make_server(request.param)
    uid = server.create_user("alice", "pw", "alice@example.org")
    secret = server.totp_enable(uid, now=T0).secret
    server.totp_validate_temp_token(uid, T.totp(secret, T0), now=T0)
    return server, uid, secret


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.totp_enable("nobody", now=T0),
        lambda s: s.totp_validate_temp_token("nobody", "123456", now=T0),
        lambda s: s.totp_disable("nobody", "123456", now=T0),
        lambda s: s.totp_regenerate_codes("nobody", "123456", now=T0),
        lambda s: s.totp_codes_remaining("nobody"),
        lambda s: s.email_2fa_send_code("nobody", now=T0),
        lambda s: s.check_two_factor("nobody", "123456", now=T0),
        lambda s: s.login("nobody", "pw", now=T0),
        lambda s: s.check_two_factor(None, "123456", now=T0),
    ],
)
def test_unknown_user(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError) as exc:
        call(make_server())
    assert isinstance(exc.value, ProtocolError) and exc.value.code == "error-invalid-user"


def test_malformed_totp_codes_are_invalid(enrolled) -> None:  # type: ignore[no-untyped-def]
    server, uid, secret = enrolled
    now = T0 + 300
    for bad in [
        "FULL",  # full-width digits (pyotp would normalise them)
        "SHORT",  # too short
        "RIGHT0",  # too long
        "RIGHTx",  # non-digit suffix
        " RIGHT",
        "RIGHT\n",
        "-12345",
        "+12345",
        "1e5000",
        "",
    ]:
        now += 60  # past any hardened back-off
        right = T.totp(secret, now)
        bad = {"FULL": right.translate(FULL_WIDTH), "SHORT": right[:5]}.get(bad, bad)
        bad = bad.replace("RIGHT", right)
        with pytest.raises(TwoFactorError) as exc:
            server.check_two_factor(uid, bad, now=now, require_second_factor=True)
        assert exc.value.code in {"totp-invalid", "totp-required"}, bad
    now += 60
    assert server.check_two_factor(uid, T.totp(secret, now), now=now, require_second_factor=True)


def test_calls_in_the_wrong_state() -> None:
    server = make_server()
    uid = server.create_user("bob", "pw")
    with pytest.raises(TwoFactorError) as exc:
        server.totp_validate_temp_token(uid, "123456", now=T0)  # no enrolment
    assert exc.value.code == "invalid-totp"
    assert server.totp_disable(uid, "123456", now=T0) is False  # current RC disableTotp: nothing to do
    for call in (
        lambda: server.totp_regenerate_codes(uid, "123456", now=T0),
        lambda: server.totp_codes_remaining(uid),
    ):
        with pytest.raises(TwoFactorError) as exc:
            call()
        assert exc.value.code == "invalid-totp"
    with pytest.raises(ProtocolError) as exc:
        server.email_2fa_send_code(uid, now=T0)  # no verified address
    assert exc.value.code == "error-invalid-email"


def test_bad_user_creation() -> None:
    server = make_server()
    server.create_user("alice")
    with pytest.raises(ProtocolError) as exc:
        server.create_user("alice")
    assert exc.value.code == "error-field-unavailable"
    for bad in ("", "   ", None, 5):
        with pytest.raises(ProtocolError):
            server.create_user(bad)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        server.create_user("carl", password=123)  # type: ignore[arg-type]
