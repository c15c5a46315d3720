"""One exception root for the whole protocol package.

Every error the library raises on purpose is a :class:`ProtocolError` carrying a Rocket.Chat-style
error code in ``.code`` (``totp-invalid``, ``error-keys-already-set``, ...), so callers can branch on
the code exactly as Rocket.Chat's clients branch on ``Meteor.Error.error``.  Expected outcomes that
are not errors in Rocket.Chat (``2fa:disable`` with a wrong code returns ``false``; a suggested key
that does not decrypt is rejected) are return values, not exceptions.

Exceptions from third-party libraries (``cryptography``, ``binascii``, ``json``) are translated at
the boundary where they arise and never escape the package untranslated.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CryptoError",
    "E2EError",
    "NotFoundError",
    "PermissionDenied",
    "ProtocolError",
    "TwoFactorError",
    "ValidationError",
]


class ProtocolError(Exception):
    """Root of every error raised by :mod:`protocol`.

    ``code`` is Rocket.Chat's error identifier, ``details`` the structured data Rocket.Chat would
    attach to the ``Meteor.Error`` (for example the 2FA ``method`` that was selected).
    """

    default_code = "error-protocol"

    def __init__(self, code: str | None = None, message: str = "", **details: Any) -> None:
        self.code = code or self.default_code
        self.message = message or self.code
        self.details = details
        super().__init__(f"{self.code}: {self.message}" if message else self.code)


class ValidationError(ProtocolError):
    """A malformed argument: wrong type, wrong shape, out of range."""

    default_code = "error-invalid-params"


class NotFoundError(ProtocolError):
    """An unknown user, room, session or record."""

    default_code = "error-not-found"


class PermissionDenied(ProtocolError):
    """The caller is not allowed to do this (not logged in, missing permission, locked out)."""

    default_code = "error-not-allowed"


class TwoFactorError(ProtocolError):
    """A second-factor check failed.

    Codes are Rocket.Chat's: ``totp-required`` (no code given), ``totp-invalid`` (wrong code),
    ``totp-max-attempts`` (too many failures), plus ``invalid-totp`` from ``2fa:validateTempToken``
    and ``error-2fa-already-enabled`` from ``2fa:enable``.
    """

    default_code = "totp-invalid"


class E2EError(ProtocolError):
    """An end-to-end encryption operation was refused (``error-keys-already-set``, ...)."""

    default_code = "error-e2e"


class CryptoError(ProtocolError):
    """A ciphertext, blob or key did not open or did not parse (translated from the backend)."""

    default_code = "error-decryption-failed"
