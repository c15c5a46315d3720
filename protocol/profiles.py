"""Profiles: Rocket.Chat as it is, and a hardened variant beside it.

A profile is chosen per server.  ``rocketchat`` reproduces Rocket.Chat's 2FA including its
weaknesses, so that their effect can be measured; ``hardened`` follows RFC 6238 section 5.2 and
NIST SP 800-63B (spec rocketchat-2fa.md section 6).  Both accept only ``^[0-9]{6}$`` as TOTP input
(Rocket.Chat's speakeasy compares ``parseInt`` values, so ``"26920x"`` can pass there; keysim does
not reproduce that parsing quirk and says so in the spec).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ValidationError

__all__ = ["HARDENED", "PROFILES", "ROCKETCHAT", "Profile", "get_profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    #: Accept a TOTP code only for a strictly later time step than the last accepted one.
    reject_replay: bool
    #: Count second-factor failures on every path (step-up, disable, regenerate, validate),
    #: not only at login through the generic login blocker.
    count_failures_everywhere: bool
    #: Consecutive failures after which the factor is disabled (locked until an admin resets it);
    #: 0 means no cap (Rocket.Chat).
    max_consecutive_failures: int
    #: Failures allowed before exponential back-off starts.
    backoff_free_failures: int
    #: First back-off delay in seconds; doubles with every further failure.
    backoff_base_seconds: float
    #: Upper bound of one back-off delay, seconds.
    backoff_max_seconds: float
    #: How backup codes are stored: ``"sha256"`` (Rocket.Chat: unsalted SHA-256 hex) or
    #: ``"scrypt"`` (salted, memory-hard).
    backup_hash: str
    #: scrypt cost parameter N for ``backup_hash = "scrypt"`` (2**14: ~16 MiB, tens of ms).
    backup_scrypt_n: int
    #: Add ``&issuer=Rocket.Chat`` to the otpauth URI (Google Key URI format).
    uri_issuer: bool

    def __post_init__(self) -> None:
        if self.backup_hash not in ("sha256", "scrypt"):
            raise ValidationError("error-invalid-profile", f"backup_hash: unknown {self.backup_hash!r}")
        if self.backup_scrypt_n < 2 or self.backup_scrypt_n & (self.backup_scrypt_n - 1):
            raise ValidationError("error-invalid-profile", "backup_scrypt_n: must be a power of two >= 2")
        if self.max_consecutive_failures < 0 or self.backoff_free_failures < 0:
            raise ValidationError("error-invalid-profile", "failure limits must be >= 0")

    def backoff_delay(self, consecutive_failures: int) -> float:
        """Seconds to wait after ``consecutive_failures`` failures before the next attempt."""
        excess = consecutive_failures - self.backoff_free_failures
        if not self.count_failures_everywhere or excess <= 0:
            return 0.0
        return float(min(self.backoff_base_seconds * 2 ** (excess - 1), self.backoff_max_seconds))


#: Rocket.Chat as it is (apps/meteor/app/2fa/server/lib/totp.ts: speakeasy, SHA256(code)).
ROCKETCHAT = Profile(
    name="rocketchat",
    reject_replay=False,
    count_failures_everywhere=False,
    max_consecutive_failures=0,
    backoff_free_failures=0,
    backoff_base_seconds=0.0,
    backoff_max_seconds=0.0,
    backup_hash="sha256",
    backup_scrypt_n=2,
    uri_issuer=False,
)

#: RFC 6238 section 5.2 (no replay) and NIST SP 800-63B-4 section 3.2.2 (<= 100 failures).
HARDENED = Profile(
    name="hardened",
    reject_replay=True,
    count_failures_everywhere=True,
    max_consecutive_failures=100,
    backoff_free_failures=5,
    backoff_base_seconds=1.0,
    backoff_max_seconds=3600.0,
    backup_hash="scrypt",
    backup_scrypt_n=2**14,
    uri_issuer=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (ROCKETCHAT, HARDENED)}


def get_profile(profile: str | Profile) -> Profile:
    """A profile by name, or the given :class:`Profile` itself (for custom variants)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except (KeyError, TypeError):
        raise ValidationError(
            "error-invalid-profile",
            f"profile: must be one of {sorted(PROFILES)}, got {profile!r}",
        ) from None
