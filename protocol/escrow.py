"""An escrow vault behind a short PIN with a guess limit (policy ``escrow``; beyond Rocket.Chat).

Theory of operation.  Signal's Secure Value Recovery (SVR2/SVR3: a secret stored in an SGX
enclave, released against a PIN, deleted after ``max_tries`` wrong guesses; signal.org/blog/
secure-value-recovery, github.com/signalapp/SecureValueRecovery2), WhatsApp's end-to-end
encrypted backups (an HSM-based Backup Key Vault releasing the backup key against a password, the
key destroyed after a limited number of failed attempts; "Security of End-To-End Encrypted
Backups", WhatsApp, 2021) and iCloud Keychain escrow (HSM clusters that allow 10 attempts at the
iCloud Security Code, then destroy the record; Apple Platform Security guide, "Escrow security for
iCloud Keychain") all rest on one idea: a secret too short to resist guessing is safe because a
component the server's operator cannot read counts the guesses.

:class:`Vault` is that component.  It is *not* part of :class:`~protocol.Server`'s documents:
the operator (and keysim's adversarial server) sees neither the secret nor the PIN.  What a
keysim client escrows is its E2E password, the secret that opens the private key Rocket.Chat
already stores on the server; with it back the person logs in on a new device, unlocks the same
key pair and reads every room, history included, without anybody else online.

Rules, as the systems above document them:

* one record per user; enrolling again replaces it (a new key pair has a new E2E password) and
  restores the full guess budget;
* a wrong PIN spends one guess (``error-escrow-wrong-pin``, ``guesses_left`` in the details); the
  guess that spends the last one destroys the record;
* a right PIN releases the secret and restores the guess budget (SVR2 restores its tries on a
  successful restore);
* a user without a record (never enrolled, destroyed, or the vault lost it) gets
  ``error-escrow-not-found``.

The PIN is kept as a salted SHA-256 inside the vault: its strength is the guess limit, not the
hash (a 4-6 digit PIN falls to any offline search).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .entropy import Entropy, default_entropy, random_bytes
from .errors import NotFoundError, PermissionDenied, ValidationError

__all__ = ["DEFAULT_MAX_GUESSES", "EscrowError", "Vault"]

#: iCloud Keychain escrow's limit, and Signal's default ``maxTries`` for SVR2 (10)
DEFAULT_MAX_GUESSES = 10


class EscrowError(PermissionDenied):
    """The vault refused: a wrong PIN (``error-escrow-wrong-pin``)."""

    default_code = "error-escrow-wrong-pin"


@dataclass(slots=True)
class _Record:
    salt: bytes
    digest: bytes
    secret: str
    guesses_left: int


class Vault:
    """An HSM-style vault: per-user secrets behind a PIN, at most ``max_guesses`` wrong guesses."""

    def __init__(self, *, max_guesses: int = DEFAULT_MAX_GUESSES, entropy: Entropy | None = None) -> None:
        if isinstance(max_guesses, bool) or not isinstance(max_guesses, int) or max_guesses < 1:
            raise ValidationError(message=f"max_guesses must be a positive integer, not {max_guesses!r}")
        self.max_guesses = max_guesses
        self._entropy = entropy if entropy is not None else default_entropy()
        self._records: dict[str, _Record] = {}
        #: records destroyed by the guess limit, and lost (:meth:`lose`), so far
        self.destroyed = 0
        self.lost = 0

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._records

    def enrol(self, user_id: str, pin: str, secret: str) -> None:
        """Store ``secret`` for ``user_id`` behind ``pin`` (replacing any earlier record)."""
        for name, value in (("user_id", user_id), ("pin", pin), ("secret", secret)):
            if not isinstance(value, str) or not value:
                raise ValidationError(message=f"{name} must be a non-empty string")
        salt = random_bytes(self._entropy, 16)
        self._records[user_id] = _Record(salt, _digest(salt, pin), secret, self.max_guesses)

    def recover(self, user_id: str, pin: str) -> str:
        """The secret, if ``pin`` is right; a wrong PIN spends a guess (the last destroys it)."""
        if not isinstance(pin, str):
            raise ValidationError(message="pin must be a string")
        record = self._records.get(user_id)
        if record is None:
            raise NotFoundError("error-escrow-not-found", f"no escrow record for {user_id!r}")
        if hmac.compare_digest(_digest(record.salt, pin), record.digest):
            record.guesses_left = self.max_guesses
            return record.secret
        record.guesses_left -= 1
        if record.guesses_left <= 0:
            del self._records[user_id]
            self.destroyed += 1
        raise EscrowError(message="wrong PIN", guesses_left=record.guesses_left)

    def guesses_left(self, user_id: str) -> int:
        """Wrong guesses ``user_id``'s record still allows (0: no record)."""
        record = self._records.get(user_id)
        return 0 if record is None else record.guesses_left

    def lose(self, user_id: str) -> bool:
        """The vault loses ``user_id``'s record (an HSM cluster lost, the backup switched off on
        an old phone); False if there was none."""
        if self._records.pop(user_id, None) is None:
            return False
        self.lost += 1
        return True


def _digest(salt: bytes, pin: str) -> bytes:
    return hashlib.sha256(b"keysim-escrow-pin\x00" + salt + pin.encode("utf-8", "surrogatepass")).digest()
