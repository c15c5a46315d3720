"""Two-factor authentication, server side (spec rocketchat-2fa.md).

Theory of operation.  :class:`TwoFactor` holds no users of its own: it acts on the
:class:`~protocol.accounts.User` records the server passes in, under one :class:`Settings` and one
:class:`Profile`, and draws randomness from the injected entropy source.  Every call that depends on
time takes ``now`` (seconds).  Three code-check methods exist, as in Rocket.Chat
(``apps/meteor/app/2fa/server/code/``): ``totp`` (authenticator app, or an 8-character backup code),
``email`` (a 6-digit code sent by e-mail) and ``password`` (fallback when the user has no second
factor).  :meth:`TwoFactor.check` is ``checkCodeForUser``: select a method, let it prepare (the
e-mail method sends a code), then verify, and remember a success on the login token.

Invariants: a backup code is accepted at most once; under ``hardened`` no TOTP time step is
accepted twice for a user and at most ``max_consecutive_failures`` consecutive failures of a
factor are ever evaluated before the factor locks; the server never stores a code in clear.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import backup, totp
from .accounts import EmailCode, TotpService, User, hash_password, verify_password
from .entropy import Entropy, choice_string
from .errors import ProtocolError, TwoFactorError, ValidationError
from .profiles import Profile
from .settings import Settings

__all__ = ["METHODS", "EmailMessage", "TotpEnrollment", "TwoFactor"]

#: Code-check methods in Rocket.Chat's order of preference (``checkMethods`` in code/index.ts).
METHODS = ("totp", "email")


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    """What ``2fa:enable`` returns: the temporary secret and its otpauth URI."""

    secret: str
    url: str


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """What an authentication-code e-mail carries (``EmailCheck.send2FAEmail``)."""

    to: tuple[str, ...]
    subject: str
    #: The code as the e-mail shows it, ``123-456``.
    code: str
    sent_at: float
    expires_at: float


class TwoFactor:
    def __init__(
        self, settings: Settings, profile: Profile, entropy: Entropy, outbox: list[EmailMessage]
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.entropy = entropy
        self._outbox = outbox

    # ------------------------------------------------------------------ TOTP lifecycle

    def enable(self, user: User, *, now: float) -> TotpEnrollment:
        """``2fa:enable``: a new temporary secret; nothing is active until validated."""
        if user.totp.enabled:
            # Current RC refuses; older RC silently overwrote the active secret (a bug).
            raise TwoFactorError("error-2fa-already-enabled", "TOTP is already enabled")
        if any(not e.verified for e in user.emails):
            raise ProtocolError("error-invalid-user", "You need to verify your emails before setting up 2FA")
        self._check_guard(user, "totp", now)
        secret = totp.generate_secret(self.entropy)
        user.totp.temp_secret = secret
        url = totp.otpauth_url(secret, user.username, issuer=self.profile.uri_issuer)
        return TotpEnrollment(secret=secret, url=url)

    def validate_temp_token(
        self, user: User, code: str, *, now: float, keep_token: str | None = None
    ) -> list[str]:
        """``2fa:validateTempToken``: enable TOTP and return 12 backup codes, shown once.

        Backup codes are not accepted here.  Every other session of the user is logged out.
        """
        _check_code_type(code)
        temp = user.totp.temp_secret
        if temp is None:
            raise TwoFactorError("invalid-totp", "no TOTP enrolment in progress")
        if not self._guarded(user, "totp", now, lambda: self._verify_totp(user, temp, code, now)):
            raise TwoFactorError("invalid-totp", "TOTP code does not match the new secret")
        codes = backup.generate_codes(self.entropy)
        user.totp = TotpService(
            enabled=True,
            secret=temp,
            hashed_backup=backup.hash_codes(codes, self.profile, self.entropy),
            last_step=user.totp.last_step,
        )
        for token in [t for t in user.login_tokens if t != keep_token]:
            del user.login_tokens[token]
        return codes

    def disable(self, user: User, code: str, *, now: float) -> bool:
        """``2fa:disable``: a TOTP or backup code turns TOTP off; a wrong code returns False."""
        _check_code_type(code)
        if not user.totp.enabled or user.totp.secret is None:
            return False  # current RC disableTotp: nothing to disable
        secret = user.totp.secret
        if not self._guarded(
            user, "totp", now, lambda: self._verify_totp(user, secret, code, now, allow_backup=True)
        ):
            return False
        user.totp = TotpService()
        return True

    def regenerate_codes(self, user: User, code: str, *, now: float) -> list[str]:
        """``2fa:regenerateCodes``: 12 new codes replace all old ones.

        A wrong code returns an empty list (Rocket.Chat returns nothing and changes nothing).
        """
        _check_code_type(code)
        secret = self._active_secret(user)
        if not self._guarded(
            user, "totp", now, lambda: self._verify_totp(user, secret, code, now, allow_backup=True)
        ):
            return []
        codes = backup.generate_codes(self.entropy)
        user.totp.hashed_backup = backup.hash_codes(codes, self.profile, self.entropy)
        return codes

    def codes_remaining(self, user: User) -> int:
        """``2fa:checkCodesRemaining``."""
        self._active_secret(user)
        return len(user.totp.hashed_backup)

    def reset_totp(self, user: User) -> bool:
        """``resetTOTP``: remove the user's TOTP and log it out everywhere; True if anything changed."""
        guard = user.guards.pop("totp", None)
        changed = (
            user.totp.enabled or user.totp.temp_secret is not None or (guard is not None and guard.locked)
        )
        user.totp = TotpService()
        if changed:
            user.login_tokens.clear()
        return changed

    # ------------------------------------------------------------------ e-mail codes

    def send_email_code(self, user: User, *, now: float) -> EmailMessage:
        """``EmailCheck.sendEmailCode``: 6 digits to every verified address, stored hashed."""
        addresses = tuple(user.verified_emails)
        if not addresses:
            raise ProtocolError("error-invalid-email", "the user has no verified e-mail address")
        digits = choice_string(self.entropy, "0123456789", 6)
        expire = now + self.settings.email_code_expiration
        user.email_code = EmailCode(code_hash=hash_password(digits, self.entropy), expire=expire)
        message = EmailMessage(
            to=addresses,
            subject="Authentication code",
            code=f"{digits[:3]}-{digits[3:]}",
            sent_at=now,
            expires_at=expire,
        )
        self._outbox.append(message)
        return message

    # ------------------------------------------------------------------ the gate

    def available_methods(self, user: User) -> list[str]:
        return [m for m in METHODS if self._is_enabled(m, user)]

    def check(
        self,
        user: User,
        code: str | None,
        *,
        method: str | None = None,
        now: float,
        login_token: str | None = None,
        require_second_factor: bool = False,
        disable_remember_me: bool = False,
        disable_password_fallback: bool = False,
    ) -> bool:
        """``checkCodeForUser``: True, or :class:`TwoFactorError` with RC's code."""
        if code is not None:
            _check_code_type(code)
        if method is not None and not isinstance(method, str):
            raise ValidationError("error-invalid-params", "method must be a string")
        if login_token is not None and not isinstance(login_token, str):
            raise ValidationError("error-invalid-params", "login_token must be a string")
        if not self.settings.two_factor_enabled:
            return True
        token = user.login_tokens.get(login_token) if login_token is not None else None
        if token is not None and self._authorized_by_token(
            user, token.two_factor_authorized_until, now, require_second_factor, disable_remember_me
        ):
            return True
        selected = self._select(user, method, require_second_factor, disable_password_fallback)
        if selected is None:
            return True
        data = self._prepare(selected, user, now)
        details: dict[str, Any] = {
            "method": selected,
            "available_methods": self.available_methods(user),
            **data,
        }
        if not code:
            raise TwoFactorError("totp-required", "TOTP Required", **details)
        if not self._verify(selected, user, code, now, require_second_factor):
            if selected == "email" and self._email_attempts_exhausted(user):
                raise TwoFactorError("totp-max-attempts", "TOTP Maximum Failed Attempts Reached", **details)
            raise TwoFactorError("totp-invalid", "TOTP Invalid", **details)
        if token is not None and not disable_remember_me and self.settings.remember_for > 0:
            token.two_factor_authorized_until = now + self.settings.remember_for
        return True

    # ------------------------------------------------------------------ internals

    def _authorized_by_token(
        self,
        user: User,
        authorized_until: float | None,
        now: float,
        require_second_factor: bool,
        disable_remember_me: bool,
    ) -> bool:
        # isAuthorizedForToken (code/index.ts).  RC also binds the window to a fingerprint of
        # user agent + IP; keysim's login token stands for that whole connection.
        if require_second_factor or disable_remember_me:
            return False
        remember = self.settings.remember_for
        # "remember user right after their registration"
        if remember > 0 and user.created_at is not None and user.created_at + remember >= now:
            return True
        return authorized_until is not None and authorized_until >= now

    def _is_enabled(self, method: str, user: User) -> bool:
        if method == "totp":
            return self.settings.totp_enabled and user.totp.enabled
        if method == "email":
            return self.settings.email_enabled and user.email2fa_enabled and bool(user.verified_emails)
        return False

    def _select(
        self,
        user: User,
        method: str | None,
        require_second_factor: bool,
        disable_password_fallback: bool,
    ) -> str | None:
        # getSecondFactorMethod: a *named* method is taken even if the user lacks it (its verify
        # then fails); otherwise the first enabled one; otherwise the password fallback.
        if method in METHODS:
            return method
        for candidate in METHODS:
            if self._is_enabled(candidate, user):
                return candidate
        if require_second_factor:
            return "password"
        if (
            not disable_password_fallback
            and self.settings.enforce_password_fallback
            and user.password_hash is not None
        ):
            return "password"
        return None

    def _prepare(self, method: str, user: User, now: float) -> dict[str, Any]:
        """``processInvalidCode``: the e-mail method sends a code unless a usable one is out."""
        if method != "email":
            return {"code_generated": False}
        code = user.email_code
        if code is not None and code.expire < now:
            user.email_code = code = None  # removeExpiredEmailCodeOfUserId
        if code is not None and not self._email_attempts_exhausted(user):
            return {"code_generated": False, "code_expires": code.expire}
        self.send_email_code(user, now=now)
        return {"code_generated": True}

    def _verify(self, method: str, user: User, code: str, now: float, require_second_factor: bool) -> bool:
        if method == "totp":
            if not self._is_enabled("totp", user):
                return False
            secret = user.totp.secret
            assert secret is not None
            return self._guarded(
                user,
                "totp",
                now,
                lambda: self._verify_totp(user, secret, code, now, allow_backup=True),
            )
        if method == "email":
            if not self._is_enabled("email", user):
                return False
            return self._guarded(user, "email", now, lambda: self._verify_email(user, code, now))
        # password fallback (PasswordCheckFallback): not a second factor, not counted here;
        # the login blocker counts password failures at login.
        if not require_second_factor and not self.settings.enforce_password_fallback:
            return False
        return verify_password(user.password_hash, code)

    def _verify_totp(
        self, user: User, secret: str, code: str, now: float, *, allow_backup: bool = False
    ) -> bool:
        # TOTP.verify (lib/totp.ts): a token of length 8 takes the backup-code path.
        if allow_backup and len(code) == backup.CODE_LENGTH:
            remaining = backup.consume(user.totp.hashed_backup, code)
            if remaining is None:
                return False
            user.totp.hashed_backup = remaining
            return True
        step = totp.matching_step(secret, code, now, self.settings.totp_max_delta)
        if step is None:
            return False
        if self.profile.reject_replay:
            # RFC 6238 section 5.2: accept only a strictly later time step.  RC (speakeasy) is
            # stateless and accepts the same code again for its whole window.
            if user.totp.last_step is not None and step <= user.totp.last_step:
                return False
            user.totp.last_step = step
        return True

    def _verify_email(self, user: User, code: str, now: float) -> bool:
        stored = user.email_code
        if stored is None or stored.expire < now:
            return False
        digits = re.sub(r"[^0-9]", "", code)  # "Remove non digits" (ASCII, as JS \d)
        if verify_password(stored.code_hash, digits):
            user.email_code = None  # single use
            return True
        stored.attempts += 1
        return False

    def _email_attempts_exhausted(self, user: User) -> bool:
        code = user.email_code
        limit = self.settings.email_max_invalid_attempts
        return code is not None and code.attempts >= limit

    def _active_secret(self, user: User) -> str:
        if not user.totp.enabled or user.totp.secret is None:
            raise TwoFactorError("invalid-totp", "TOTP is not enabled for this user")
        return user.totp.secret

    def _check_guard(self, user: User, factor: str, now: float) -> None:
        if not self.profile.count_failures_everywhere:
            return
        guard = user.guard(factor)
        if guard.locked:
            raise TwoFactorError(
                "totp-max-attempts",
                f"{factor} is locked after too many failures; an administrator must reset it",
                method=factor,
                locked=True,
            )
        if now < guard.next_attempt_at:
            raise TwoFactorError(
                "totp-max-attempts",
                f"too many failures; retry in {guard.next_attempt_at - now:.0f} s",
                method=factor,
                retry_after=guard.next_attempt_at - now,
            )

    def _guarded(self, user: User, factor: str, now: float, attempt: Callable[[], bool]) -> bool:
        """Run ``attempt``; under ``hardened`` refuse during back-off and count the outcome."""
        if not self.profile.count_failures_everywhere:
            return attempt()
        self._check_guard(user, factor, now)
        guard = user.guard(factor)
        if attempt():
            guard.failures = 0
            guard.next_attempt_at = float("-inf")
            return True
        guard.failures += 1
        cap = self.profile.max_consecutive_failures
        if cap and guard.failures >= cap:
            guard.locked = True  # NIST SP 800-63B-4 section 3.2.2: disable the authenticator
        guard.next_attempt_at = now + self.profile.backoff_delay(guard.failures)
        return False


def _check_code_type(code: object) -> None:
    if not isinstance(code, str):
        raise ValidationError("error-invalid-params", f"code must be a string, got {type(code).__name__}")
