"""Backup (recovery) codes for TOTP.

Rocket.Chat makes 12 codes of 8 characters with ``Random.id(8)`` (alphabet below, ~46 bits each)
and stores them as unsalted SHA-256 hex in ``services.totp.hashedBackup``
(``apps/meteor/app/2fa/server/lib/totp.ts``).  A submitted token of length 8 takes the backup path.
A code is consumed by a read-modify-write of the whole list (splice, then write the list back), so
two concurrent requests can both spend one code; keysim's server is sequential, so that race is
documented here rather than reproduced.

The hardened variant stores each code under scrypt with a random per-set salt (one KDF evaluation
per attempt, compared in constant time against every stored hash) and removes exactly the matched
entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from .entropy import Entropy, choice_string, random_bytes
from .profiles import Profile

__all__ = ["ALPHABET", "CODE_COUNT", "CODE_LENGTH", "consume", "generate_codes", "hash_codes"]

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"  # Meteor Random.id
CODE_COUNT = 12
CODE_LENGTH = 8


def generate_codes(entropy: Entropy) -> list[str]:
    """Twelve fresh codes in plain text (shown to the user once)."""
    return [choice_string(entropy, ALPHABET, CODE_LENGTH) for _ in range(CODE_COUNT)]


def hash_codes(codes: list[str], profile: Profile, entropy: Entropy) -> list[str]:
    """The stored form of ``codes`` under ``profile``."""
    if profile.backup_hash == "sha256":
        return [_sha256(code) for code in codes]
    salt = random_bytes(entropy, 16)
    prefix = f"scrypt${profile.backup_scrypt_n}${base64.b64encode(salt).decode()}$"
    return [prefix + _scrypt(code, salt, profile.backup_scrypt_n).hex() for code in codes]


def consume(stored: list[str], code: str) -> list[str] | None:
    """The stored list without ``code``'s entry if ``code`` is one of them, else None.

    The caller writes the returned list back; ``stored`` itself is not modified.
    """
    if len(code) != CODE_LENGTH or not stored:
        return None
    if stored[0].startswith("scrypt$"):
        _, n, salt_b64, _ = stored[0].split("$")
        candidate = _scrypt(code, base64.b64decode(salt_b64), int(n)).hex()
        digests = [entry.rsplit("$", 1)[1] for entry in stored]
    else:
        candidate = _sha256(code)
        digests = stored
    # Compare against every entry so the time taken does not reveal which one matched.
    matched = [hmac.compare_digest(candidate, digest) for digest in digests]
    if not any(matched):
        return None
    index = matched.index(True)
    return stored[:index] + stored[index + 1 :]


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _scrypt(code: str, salt: bytes, n: int) -> bytes:
    return hashlib.scrypt(code.encode("utf-8"), salt=salt, n=n, r=8, p=1, dklen=32)
