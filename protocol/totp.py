"""TOTP (RFC 6238 over RFC 4226 HOTP) as Rocket.Chat uses it.

Rocket.Chat calls the npm library speakeasy with its defaults: HMAC-SHA-1, 6 digits, a 30 s step,
T0 = 0 (``apps/meteor/app/2fa/server/lib/totp.ts``).  The one-time values themselves come from
pyotp; this module only decides *which* time steps are tried and how input is screened, and takes
the time as an argument (``now``, seconds since the epoch) instead of reading a clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pyotp

from .entropy import Entropy, choice_string

__all__ = [
    "DIGITS",
    "PERIOD",
    "SECRET_LENGTH",
    "generate_secret",
    "hotp",
    "is_well_formed",
    "matching_step",
    "otpauth_url",
    "time_step",
    "totp",
]

PERIOD = 30  # seconds per step (RFC 6238 X)
DIGITS = 6
#: speakeasy.generateSecret(): 32 characters from this alphabet (symbols on by default), ~204 bits.
SECRET_LENGTH = 32
SECRET_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!@#$%^&*()<>?/[]{},.:;"
ISSUER = "Rocket.Chat"

_DIGESTS: dict[str, Callable[..., hashlib._Hash]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
_WELL_FORMED = {n: re.compile(f"[0-9]{{{n}}}") for n in (6, 7, 8)}


def generate_secret(entropy: Entropy) -> str:
    """A new shared secret in base32 without padding (52 characters), as speakeasy returns it."""
    ascii_secret = choice_string(entropy, SECRET_ALPHABET, SECRET_LENGTH)
    return base64.b32encode(ascii_secret.encode("ascii")).decode("ascii").rstrip("=")


def time_step(now: float, period: int = PERIOD) -> int:
    """RFC 6238 section 4.2: T = floor((now - T0) / X) with T0 = 0."""
    return math.floor(now / period)


def hotp(secret: str, counter: int, *, digits: int = DIGITS, algorithm: str = "sha1") -> str:
    """RFC 4226 HOTP value of ``secret`` (base32) at ``counter``, computed by pyotp."""
    return pyotp.HOTP(secret, digits=digits, digest=_DIGESTS[algorithm]).at(counter)


def totp(
    secret: str, now: float, *, digits: int = DIGITS, algorithm: str = "sha1", period: int = PERIOD
) -> str:
    """RFC 6238 TOTP value of ``secret`` (base32) at time ``now``."""
    return hotp(secret, time_step(now, period), digits=digits, algorithm=algorithm)


def is_well_formed(code: str, digits: int = DIGITS) -> bool:
    """Exactly ``digits`` ASCII digits: no spaces, signs, letters or full-width digits."""
    return _WELL_FORMED[digits].fullmatch(code) is not None


def candidate_steps(now: float, window: int) -> Iterator[int]:
    """Steps T-window .. T+window, oldest first (speakeasy ``totp.verifyDelta`` order); steps
    before the epoch do not exist."""
    t = time_step(now)
    return iter(range(max(0, t - window), max(0, t + window + 1)))


def matching_step(secret: str, code: str, now: float, window: int) -> int | None:
    """The time step whose value is ``code``, within ``window`` steps of ``now``; else None.

    Malformed input never matches.  ``window = 0`` is speakeasy's ``totp.verify`` (current step
    only); ``window = d`` is ``totp.verifyDelta`` with ``window: d`` (RC ``MaxDelta``, #9732).
    """
    if not is_well_formed(code):
        return None
    for step in candidate_steps(now, window):
        if hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def otpauth_url(secret: str, username: str, *, issuer: bool = False) -> str:
    """The provisioning URI shown as a QR code.

    Rocket.Chat: exactly ``otpauth://totp/Rocket.Chat:<username>?secret=<base32>`` with no
    ``issuer``, ``algorithm``, ``digits`` or ``period``, so apps assume SHA1/6/30.  With
    ``issuer=True`` (hardened) ``&issuer=Rocket.Chat`` is appended, as Google's Key URI format
    recommends.
    """
    url = f"otpauth://totp/{ISSUER}:{quote(username, safe='')}?secret={secret}"
    if issuer:
        url += f"&issuer={quote(ISSUER, safe='')}"
    return url
