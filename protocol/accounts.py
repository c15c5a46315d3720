"""User records, passwords, login tokens and the failed-login blocker.

The documents mirror Rocket.Chat's ``users`` collection where the protocol needs them
(``services.totp``, ``services.email2fa``, ``services.emailCode``, ``services.resume.loginTokens``,
``e2e``).  Passwords are kept as a salted SHA-256 (Rocket.Chat uses bcrypt over SHA-256): keysim
models which checks happen, not their cost.

The login blocker reproduces ``isValidAttemptByUser`` (``apps/meteor/server/lib/loginAttempts``):
a user whose failed logins since ``max(now - 5 min, last successful login)`` reach 10 is refused
(``error-login-blocked-for-user``) until the failures age out of the window.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .entropy import Entropy, choice_string, random_bytes
from .settings import Settings

__all__ = [
    "EmailAddress",
    "EmailCode",
    "FactorGuard",
    "LoginBlocker",
    "LoginToken",
    "TotpService",
    "User",
    "hash_password",
    "new_id",
    "new_token",
    "verify_password",
]

#: Meteor's ``Random.id()`` alphabet; ids are 17 characters.
ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def new_id(entropy: Entropy) -> str:
    """A Meteor-style document id (``Random.id()``: 17 characters)."""
    return choice_string(entropy, ID_ALPHABET, 17)


def new_token(entropy: Entropy) -> str:
    """A login token (``Random.secret()``: 43 characters)."""
    return choice_string(entropy, TOKEN_ALPHABET, 43)


def hash_password(password: str, entropy: Entropy) -> str:
    salt = random_bytes(entropy, 16).hex()
    return f"{salt}${hashlib.sha256((salt + password).encode('utf-8')).hexdigest()}"


def verify_password(stored: str | None, password: str) -> bool:
    if stored is None or not isinstance(password, str):
        return False
    salt, digest = stored.split("$", 1)
    candidate = hashlib.sha256((salt + password).encode("utf-8")).hexdigest()
    return hmac.compare_digest(candidate, digest)


@dataclass(slots=True)
class EmailAddress:
    address: str
    verified: bool


@dataclass(slots=True)
class LoginToken:
    """One entry of ``services.resume.loginTokens``."""

    token: str
    created_at: float
    #: ``twoFactorAuthorizedUntil``: the "remember" window after a successful 2FA check.
    two_factor_authorized_until: float | None = None


@dataclass(slots=True)
class TotpService:
    """``services.totp``."""

    enabled: bool = False
    secret: str | None = None
    temp_secret: str | None = None
    hashed_backup: list[str] = field(default_factory=list)
    #: hardened only: the last accepted time step (RFC 6238 section 5.2).
    last_step: int | None = None


@dataclass(slots=True)
class EmailCode:
    """``services.emailCode``: one outstanding e-mail code, stored hashed."""

    code_hash: str
    expire: float
    attempts: int = 0


@dataclass(slots=True)
class FactorGuard:
    """hardened only: consecutive failures of one factor, back-off and lock."""

    failures: int = 0
    next_attempt_at: float = float("-inf")
    locked: bool = False


@dataclass(slots=True)
class User:
    id: str
    username: str
    created_at: float | None
    roles: tuple[str, ...]
    emails: list[EmailAddress]
    password_hash: str | None
    totp: TotpService = field(default_factory=TotpService)
    email2fa_enabled: bool = False
    email_code: EmailCode | None = None
    login_tokens: dict[str, LoginToken] = field(default_factory=dict)
    guards: dict[str, FactorGuard] = field(default_factory=dict)
    #: ``e2e.public_key`` / ``e2e.private_key`` (the E2EE part of the protocol).
    e2e_public_key: str | None = None
    e2e_private_key: str | None = None
    #: policy ``backup`` only: the public half of the user's recovery key (keysim extension).
    e2e_backup_public_key: str | None = None

    @property
    def verified_emails(self) -> list[str]:
        return [e.address for e in self.emails if e.verified]

    def guard(self, factor: str) -> FactorGuard:
        return self.guards.setdefault(factor, FactorGuard())

    def to_document(self) -> dict[str, Any]:
        """The user as Rocket.Chat stores it (secrets only in the forms RC stores them)."""
        services: dict[str, Any] = {
            "totp": {"enabled": self.totp.enabled},
            "email2fa": {"enabled": self.email2fa_enabled},
            "resume": {
                "loginTokens": [
                    {
                        "hashedToken": hashlib.sha256(t.token.encode()).hexdigest(),
                        "when": t.created_at,
                    }
                    for t in self.login_tokens.values()
                ]
            },
        }
        if self.totp.secret is not None:
            services["totp"]["secret"] = self.totp.secret
            services["totp"]["hashedBackup"] = list(self.totp.hashed_backup)
        if self.totp.temp_secret is not None:
            services["totp"]["tempSecret"] = self.totp.temp_secret
        if self.password_hash is not None:
            services["password"] = {"bcrypt": self.password_hash}
        if self.email_code is not None:
            services["emailCode"] = {
                "code": self.email_code.code_hash,
                "expire": self.email_code.expire,
                "attempts": self.email_code.attempts,
            }
        doc: dict[str, Any] = {
            "_id": self.id,
            "username": self.username,
            "createdAt": self.created_at,
            "roles": list(self.roles),
            "emails": [{"address": e.address, "verified": e.verified} for e in self.emails],
            "services": services,
        }
        if self.e2e_public_key is not None or self.e2e_private_key is not None:
            doc["e2e"] = {"public_key": self.e2e_public_key, "private_key": self.e2e_private_key}
        if self.e2e_backup_public_key is not None:
            doc.setdefault("e2e", {})["backup_public_key"] = self.e2e_backup_public_key
        return doc


class LoginBlocker:
    """Rocket.Chat's per-user failed-login blocker, driven by explicit ``now``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._failures: dict[str, deque[float]] = {}
        self._last_success: dict[str, float] = {}

    def is_blocked(self, username: str, now: float) -> bool:
        s = self._settings
        if not s.block_failed_logins_enabled or not s.block_failed_logins_attempts:
            return False
        failures = self._failures.get(username)
        if not failures:  # "if user never failed to login, then it's valid"
            return False
        window_start = now - s.block_failed_logins_seconds
        while failures and failures[0] < window_start:
            failures.popleft()  # aged out; ``now`` only moves forward
        # "successful logins should reset the counter"
        start = max(window_start, self._last_success.get(username, window_start))
        return sum(1 for ts in failures if ts >= start) >= s.block_failed_logins_attempts

    def record_failure(self, username: str, now: float) -> None:
        self._failures.setdefault(username, deque()).append(now)

    def record_success(self, username: str, now: float) -> None:
        self._last_success[username] = now
