"""The 2FA lifecycle step by step, with explicit ``now``, under both profiles."""

from __future__ import annotations

import hashlib

import pytest
from conftest import HARDENED_FAST, T0, make_server

from protocol import PermissionDenied, ProtocolError, TwoFactorError, backup
from protocol import totp as T


def enrolled(profile: object = "rocketchat", **settings: object):  # type: ignore[no-untyped-def]
    server = make_server(profile, **settings)  # type: ignore[arg-type]
    uid = server.create_user("alice", "pw", "alice@example.org")
    enrollment = server.totp_enable(uid, now=T0)
    codes = server.totp_validate_temp_token(uid, T.totp(enrollment.secret, T0), now=T0)
    return server, uid, enrollment.secret, codes


def test_enable_gives_a_temporary_secret_only(profile_name: str) -> None:
    server = make_server(profile_name)
    uid = server.create_user("alice", "pw")
    enrollment = server.totp_enable(uid, now=T0)
    assert len(enrollment.secret) == 52 and "=" not in enrollment.secret
    user = server.user(uid)
    assert user.totp.enabled is False and user.totp.temp_secret == enrollment.secret
    # nothing active yet: the gate falls back to the password, not to TOTP
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, None, now=T0)
    assert exc.value.code == "totp-required" and exc.value.details["method"] == "password"


def test_otpauth_uri_per_profile() -> None:
    server = make_server("rocketchat")
    uid = server.create_user("bob")
    enrollment = server.totp_enable(uid, now=T0)
    assert enrollment.url == f"otpauth://totp/Rocket.Chat:bob?secret={enrollment.secret}"
    hardened = make_server("hardened")
    uid = hardened.create_user("bob")
    enrollment = hardened.totp_enable(uid, now=T0)
    assert enrollment.url == (f"otpauth://totp/Rocket.Chat:bob?secret={enrollment.secret}&issuer=Rocket.Chat")


def test_validate_returns_twelve_backup_codes_and_enables(profile_name: str) -> None:
    server, uid, _secret, codes = enrolled(profile_name)
    assert len(codes) == 12 and len(set(codes)) == 12
    assert all(len(c) == 8 and set(c) <= set(backup.ALPHABET) for c in codes)
    assert server.totp_codes_remaining(uid) == 12
    stored = server.user(uid).totp.hashed_backup
    if profile_name == "rocketchat":
        assert stored == [hashlib.sha256(c.encode()).hexdigest() for c in codes]
    else:
        assert all(s.startswith("scrypt$16384$") for s in stored)
        assert len({s.split("$")[2] for s in stored}) == 1  # one salt per set
        assert not any(c in s for c in codes for s in stored)
        assert hashlib.sha256(codes[0].encode()).hexdigest() not in stored


def test_enable_twice_is_refused(profile_name: str) -> None:
    server, uid, _, _ = enrolled(profile_name)
    with pytest.raises(TwoFactorError) as exc:
        server.totp_enable(uid, now=T0 + 60)
    assert exc.value.code == "error-2fa-already-enabled"


def test_validate_wrong_code_and_backup_codes_are_refused(profile_name: str) -> None:
    server = make_server(profile_name)
    uid = server.create_user("alice", "pw")
    secret = server.totp_enable(uid, now=T0).secret
    wrong = "000000" if T.totp(secret, T0) != "000000" else "111111"
    with pytest.raises(TwoFactorError) as exc:
        server.totp_validate_temp_token(uid, wrong, now=T0)
    assert exc.value.code == "invalid-totp"
    with pytest.raises(TwoFactorError):
        server.totp_validate_temp_token(uid, "ABCDEFGH", now=T0)  # backup path not open here
    assert server.user(uid).totp.enabled is False


def test_validate_logs_out_other_sessions() -> None:
    server = make_server()
    uid = server.create_user("alice", "pw")
    keep = server.login(uid, "pw", now=T0)
    other = server.login(uid, "pw", now=T0)
    secret = server.totp_enable(uid, now=T0).secret
    server.totp_validate_temp_token(uid, T.totp(secret, T0), now=T0, login_token=keep)
    assert server.is_logged_in(uid, keep) and not server.is_logged_in(uid, other)


def test_login_requires_the_second_factor(profile_name: str) -> None:
    server, uid, secret, _ = enrolled(profile_name)
    with pytest.raises(TwoFactorError) as exc:
        server.login(uid, "pw", now=T0 + 60)
    assert exc.value.code == "totp-required"
    assert exc.value.details["available_methods"] == ["totp", "email"]
    with pytest.raises(PermissionDenied):
        server.login(uid, "wrong", now=T0 + 60, code=T.totp(secret, T0 + 60))
    token = server.login(uid, "pw", now=T0 + 60, code=T.totp(secret, T0 + 60))
    assert server.is_logged_in(uid, token)


def test_window_is_max_delta_steps_either_side(profile_name: str) -> None:
    server, uid, secret, _ = enrolled(profile_name)
    now = T0 + 3000
    for offset, ok in [(-2, False), (-1, True), (0, True), (1, True), (2, False)]:
        code = T.totp(secret, now + 30 * offset)
        if ok:
            assert server.check_two_factor(uid, code, now=now, require_second_factor=True)
        else:
            with pytest.raises(TwoFactorError):
                server.check_two_factor(uid, code, now=now, require_second_factor=True)
        now += 0.001  # same step; hardened needs later steps, so go in increasing order


def test_max_delta_zero_accepts_only_the_current_step() -> None:
    server, uid, secret, _ = enrolled("rocketchat", totp_max_delta=0)
    now = T0 + 3000
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, T.totp(secret, now - 30), now=now)
    assert server.check_two_factor(uid, T.totp(secret, now), now=now, require_second_factor=True)


def test_replay_accepted_by_rocketchat_refused_by_hardened(profile_name: str) -> None:
    server, uid, secret, _ = enrolled(profile_name)
    code = T.totp(secret, T0 + 600)
    assert server.check_two_factor(uid, code, now=T0 + 600, require_second_factor=True)
    if profile_name == "rocketchat":
        assert server.check_two_factor(uid, code, now=T0 + 620, require_second_factor=True)
    else:
        with pytest.raises(TwoFactorError) as exc:
            server.check_two_factor(uid, code, now=T0 + 620, require_second_factor=True)
        assert exc.value.code == "totp-invalid"
        # an earlier step inside the window is a replay too
        with pytest.raises(TwoFactorError):
            server.check_two_factor(uid, T.totp(secret, T0 + 570), now=T0 + 600, require_second_factor=True)
        # the next step is fine
        nxt = T.totp(secret, T0 + 630)
        assert server.check_two_factor(uid, nxt, now=T0 + 630, require_second_factor=True)


def test_backup_codes_are_single_use_and_regenerate(profile_name: str) -> None:
    server, uid, _secret, codes = enrolled(profile_name)
    assert server.check_two_factor(uid, codes[3], now=T0 + 60, require_second_factor=True)
    assert server.totp_codes_remaining(uid) == 11
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, codes[3], now=T0 + 61, require_second_factor=True)
    new = server.totp_regenerate_codes(uid, codes[4], now=T0 + 62)
    assert len(new) == 12 and not set(new) & set(codes)
    assert server.totp_codes_remaining(uid) == 12
    with pytest.raises(TwoFactorError):  # the old set is gone
        server.check_two_factor(uid, codes[5], now=T0 + 63, require_second_factor=True)
    assert server.check_two_factor(uid, new[0], now=T0 + 64, require_second_factor=True)
    assert server.totp_regenerate_codes(uid, "ZZZZZZZZ", now=T0 + 65) == []
    assert server.totp_codes_remaining(uid) == 11


def test_disable_with_totp_or_backup_code(profile_name: str) -> None:
    server, uid, secret, codes = enrolled(profile_name)
    assert server.totp_disable(uid, "ZZZZZZZZ", now=T0 + 60) is False
    assert server.totp_disable(uid, codes[0], now=T0 + 60) is True
    assert server.user(uid).totp.enabled is False
    with pytest.raises(TwoFactorError) as exc:
        server.totp_codes_remaining(uid)
    assert exc.value.code == "invalid-totp"
    # enrol again and disable with a TOTP code
    secret = server.totp_enable(uid, now=T0 + 90).secret
    server.totp_validate_temp_token(uid, T.totp(secret, T0 + 90), now=T0 + 90)
    assert server.totp_disable(uid, T.totp(secret, T0 + 120), now=T0 + 120) is True


def test_email_codes(profile_name: str) -> None:
    server = make_server(profile_name)
    uid = server.create_user("carol", "pw", "carol@example.org")
    # auto opt-in: e-mail is carol's second factor; asking for a code sends one
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, None, now=T0)
    assert exc.value.code == "totp-required"
    assert exc.value.details["method"] == "email" and exc.value.details["code_generated"] is True
    message = server.outbox[-1]
    assert message.to == ("carol@example.org",) and message.expires_at == T0 + 3600
    assert len(message.code) == 7 and message.code[3] == "-" and message.code.replace("-", "").isdigit()
    # a second ask inside the validity does not send another
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, None, now=T0 + 10)
    assert len(server.outbox) == 1
    assert server.check_two_factor(uid, message.code, now=T0 + 20)  # "123-456": dash stripped
    with pytest.raises(TwoFactorError):  # single use (and a new one is sent)
        server.check_two_factor(uid, message.code, now=T0 + 30)
    assert len(server.outbox) == 2


def test_email_code_expires_after_3600_s() -> None:
    server = make_server()
    uid = server.create_user("carol", "pw", "carol@example.org")
    message = server.email_2fa_send_code(uid, now=T0)
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, message.code, now=T0 + 3601)
    message = server.email_2fa_send_code(uid, now=T0 + 4000)
    assert server.check_two_factor(uid, message.code, now=T0 + 4000 + 3599)


def test_email_code_allows_five_invalid_attempts() -> None:
    server = make_server()
    uid = server.create_user("carol", "pw", "carol@example.org")
    message = server.email_2fa_send_code(uid, now=T0)
    right = message.code.replace("-", "")
    wrong = "000000" if right != "000000" else "111111"
    codes = []
    for i in range(5):
        with pytest.raises(TwoFactorError) as exc:
            server.check_two_factor(uid, wrong, now=T0 + i)
        codes.append(exc.value.code)
    assert codes == ["totp-invalid"] * 4 + ["totp-max-attempts"]
    # the code is spent: the next check sends a new one and the old code no longer works
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, right, now=T0 + 10)
    assert len(server.outbox) == 2


def test_remember_window(profile_name: str) -> None:
    server, uid, secret, _ = enrolled(profile_name)
    token = server.login(uid, "pw", now=T0 + 60, code=T.totp(secret, T0 + 60))
    assert server.check_two_factor(uid, T.totp(secret, T0 + 90), now=T0 + 90, login_token=token)
    # remembered for 1800 s on this token
    assert server.check_two_factor(uid, None, now=T0 + 90 + 1800, login_token=token)
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, None, now=T0 + 91 + 1800, login_token=token)
    # never for actions that disable remember-me or require a second factor
    assert server.check_two_factor(uid, T.totp(secret, T0 + 120), now=T0 + 120, login_token=token)
    for options in ({"disable_remember_me": True}, {"require_second_factor": True}):
        with pytest.raises(TwoFactorError):
            server.check_two_factor(uid, None, now=T0 + 130, login_token=token, **options)
    # another token is not remembered
    other = server.login(uid, "pw", now=T0 + 150, code=T.totp(secret, T0 + 150))
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, None, now=T0 + 160, login_token=other)


def test_remembered_right_after_registration() -> None:
    server = make_server(email_auto_opt_in=False)
    uid = server.create_user("dave", "pw", now=T0)
    token = server.login(uid, "pw", now=T0 + 5)
    assert server.check_two_factor(uid, None, now=T0 + 1800, login_token=token)
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, None, now=T0 + 1801, login_token=token)


def test_password_fallback() -> None:
    server = make_server(email_auto_opt_in=False)
    uid = server.create_user("erin", "secret pw")
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, None, now=T0)
    assert exc.value.details["method"] == "password"
    with pytest.raises(TwoFactorError):
        server.check_two_factor(uid, "wrong", now=T0)
    assert server.check_two_factor(uid, "secret pw", now=T0)
    # no password and no second factor: nothing to check
    nopw = server.create_user("oauth-user")
    assert server.check_two_factor(nopw, None, now=T0)
    # ... unless the action requires a second factor: then the password is demanded
    with pytest.raises(TwoFactorError):
        server.check_two_factor(nopw, None, now=T0, require_second_factor=True)
    relaxed = make_server(email_auto_opt_in=False, enforce_password_fallback=False)
    uid = relaxed.create_user("erin", "secret pw")
    assert relaxed.check_two_factor(uid, None, now=T0)


def test_settings_switches() -> None:
    server, uid, _, _ = enrolled("rocketchat", two_factor_enabled=False)
    assert server.check_two_factor(uid, None, now=T0)
    server, uid, _, _ = enrolled("rocketchat", totp_enabled=False)
    with pytest.raises(TwoFactorError) as exc:  # TOTP off instance-wide: e-mail is next
        server.check_two_factor(uid, None, now=T0)
    assert exc.value.details["method"] == "email"
    server, uid, _secret, _ = enrolled("rocketchat", email_enabled=False, totp_enabled=False)
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, None, now=T0)
    assert exc.value.details["method"] == "password"


def test_named_method_is_used_even_if_not_enabled() -> None:
    # getMethodByNameOrFirstActiveForUser: a requested method is taken as is; its verify fails.
    server = make_server(email_auto_opt_in=False)
    uid = server.create_user("frank", "pw")
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, "123456", method="totp", now=T0)
    assert exc.value.code == "totp-invalid" and exc.value.details["method"] == "totp"


def test_login_blocker_rocketchat() -> None:
    server = make_server()
    uid = server.create_user("gina", "pw")
    for i in range(10):
        with pytest.raises(PermissionDenied):
            server.login(uid, "wrong", now=T0 + i)
    with pytest.raises(PermissionDenied) as exc:
        server.login(uid, "pw", now=T0 + 20)
    assert exc.value.code == "error-login-blocked-for-user"
    # failures age out of the 5-minute window
    assert server.login(uid, "pw", now=T0 + 9 + 300.5)


def test_rocketchat_does_not_count_step_up_failures() -> None:
    server, uid, secret, _ = enrolled("rocketchat")
    wrong = "000000" if T.totp(secret, T0 + 60) != "000000" else "111111"
    for i in range(200):
        with pytest.raises(TwoFactorError) as exc:
            server.check_two_factor(uid, wrong, now=T0 + 60 + i * 0.01, require_second_factor=True)
        assert exc.value.code == "totp-invalid"
    assert server.check_two_factor(uid, T.totp(secret, T0 + 63), now=T0 + 63, require_second_factor=True)


def test_hardened_backoff_and_lock() -> None:
    server, uid, secret, codes = enrolled(HARDENED_FAST)
    now = T0 + 60
    wrong = "000000"
    outcomes: list[str] = []
    while len(outcomes) < 2000:
        if T.totp(secret, now) == wrong or T.totp(secret, now - 30) == wrong:
            now += 30
            continue
        try:
            server.check_two_factor(uid, wrong, now=now, require_second_factor=True)
            outcomes.append("ok")
        except TwoFactorError as exc:
            outcomes.append(exc.code)
            if exc.code == "totp-max-attempts" and "retry_after" in exc.details:
                now += exc.details["retry_after"]
                continue
        now += 1
    assert outcomes.count("totp-invalid") == 100
    assert "ok" not in outcomes
    # back-off started after the free failures
    assert outcomes[:5] == ["totp-invalid"] * 5
    assert server.user(uid).guards["totp"].locked
    # locked: even the right code and a backup code are refused, on every path
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, T.totp(secret, now), now=now, require_second_factor=True)
    assert exc.value.code == "totp-max-attempts"
    with pytest.raises(TwoFactorError):
        server.totp_disable(uid, codes[0], now=now)
    # an administrator resets it
    admin = server.create_user("admin", "adminpw", roles=("admin",))
    assert server.admin_reset_totp(admin, uid, "adminpw", now=now)
    assert server.user(uid).totp.enabled is False and "totp" not in server.user(uid).guards


def test_hardened_counts_failures_on_disable_and_success_resets() -> None:
    server, uid, _secret, codes = enrolled(HARDENED_FAST)
    for i in range(5):
        assert server.totp_disable(uid, "ZZZZZZZZ", now=T0 + 60 + i) is False
    assert server.user(uid).guards["totp"].failures == 5
    assert server.check_two_factor(uid, codes[0], now=T0 + 100, require_second_factor=True)
    assert server.user(uid).guards["totp"].failures == 0


def test_admin_reset_totp() -> None:
    server, uid, secret, _ = enrolled("rocketchat")
    token = server.login(uid, "pw", now=T0 + 60, code=T.totp(secret, T0 + 60))
    mallory = server.create_user("mallory", "mpw")
    with pytest.raises(PermissionDenied) as exc:
        server.admin_reset_totp(mallory, uid, "mpw", now=T0 + 70)
    assert exc.value.code == "error-not-allowed"
    admin = server.create_user("root", "rpw", "root@example.org", roles=("admin",))
    with pytest.raises(TwoFactorError):  # the admin's own second factor first
        server.admin_reset_totp(admin, uid, None, now=T0 + 70)
    mail = server.outbox[-1]
    assert server.admin_reset_totp(admin, uid, mail.code, now=T0 + 71, notify=True) is True
    assert server.outbox[-1].to == ("alice@example.org",)
    assert server.user(uid).totp.enabled is False
    assert not server.is_logged_in(uid, token)  # logged out everywhere
    assert (
        server.admin_reset_totp(admin, uid, server.email_2fa_send_code(admin, now=T0 + 80).code, now=T0 + 80)
        is False
    )  # nothing left to reset


def test_unknown_profile_and_bad_settings() -> None:
    from protocol import Server, Settings, ValidationError

    with pytest.raises(ValidationError) as exc:
        Server(profile="paranoid")
    assert "paranoid" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        Settings(totp_max_delta="1")  # type: ignore[arg-type]
    assert "totp_max_delta" in str(exc.value)
    with pytest.raises(ValidationError):
        Settings(email_code_expiration=0)
    assert isinstance(ValidationError("x"), ProtocolError)


def test_settings_round_trip_rocketchat_names() -> None:
    from protocol import Settings

    s = Settings(totp_max_delta=2, block_failed_logins_seconds=600)
    rc = s.to_rocketchat()
    assert rc["Accounts_TwoFactorAuthentication_MaxDelta"] == 2
    assert rc["Block_Multiple_Failed_Logins_Time_To_Unblock_By_User_In_Minutes"] == 10
    assert Settings.from_rocketchat(rc) == s
    assert Settings().to_rocketchat()["Accounts_TwoFactorAuthentication_RememberFor"] == 1800


@pytest.mark.parametrize("now", [0.0, 10.0, 29.9, -100.0])
def test_checks_near_the_epoch_do_not_crash(now: float) -> None:
    # the window T-1 .. T+1 must not ask for a step before 0 (pyotp rejects negative counters)
    server = make_server()
    uid = server.create_user("zed", "pw")
    secret = server.totp_enable(uid, now=0.0).secret
    server.totp_validate_temp_token(uid, T.totp(secret, 0.0), now=0.0)
    wrong = "000000" if T.totp(secret, 0.0) != "000000" else "111111"
    with pytest.raises(TwoFactorError) as exc:
        server.check_two_factor(uid, wrong, now=now, method="totp", require_second_factor=True)
    assert exc.value.code == "totp-invalid"


def test_admin_resets_need_no_password_fallback_setting() -> None:
    """PR #29634: ``users.resetE2EKey`` and ``users.resetTOTP`` for another user no longer need
    ``Enforce_Password_Fallback``; the admin's own factor is still checked (here its password,
    the fallback the gate itself offers to a user without TOTP or e-mail 2FA)."""
    server = make_server(enforce_password_fallback=False, email_auto_opt_in=False)
    uid = server.create_user("alice", "pw", "alice@example.org")
    enrollment = server.totp_enable(uid, now=T0)
    server.totp_validate_temp_token(uid, T.totp(enrollment.secret, T0), now=T0)
    admin = server.create_user("root", "rpw", roles=("admin",))
    server.user(uid).e2e_public_key, server.user(uid).e2e_private_key = "pub", "blob"
    sent = len(server.outbox)
    server.admin_reset_e2e_key(admin, uid, "rpw", now=T0 + 10)
    assert server.user(uid).e2e_public_key is None
    # RC's sendResetNotification: the user's verified addresses are told of the reset
    (mail,) = server.outbox[sent:]
    assert mail.subject == "E2E_key_reset_email" and mail.to == ("alice@example.org",)
    assert server.admin_reset_totp(admin, uid, "rpw", now=T0 + 20) is True
    assert server.user(uid).totp.enabled is False


def test_admin_reset_of_totp_needs_two_factor_enabled() -> None:
    server = make_server(two_factor_enabled=False)
    uid = server.create_user("alice", "pw", "alice@example.org")
    admin = server.create_user("root", "rpw", roles=("admin",))
    with pytest.raises(PermissionDenied) as exc:
        server.admin_reset_totp(admin, uid, None, now=T0)
    assert exc.value.code == "error-two-factor-not-enabled"


def test_an_own_e2e_reset_sends_no_mail() -> None:
    server = make_server(email_auto_opt_in=False)
    uid = server.create_user("alice", "pw", "alice@example.org")
    sent = len(server.outbox)
    server.admin_reset_e2e_key(uid, uid, "pw", now=T0)
    assert server.outbox[sent:] == []
