"""keysim's protocol core: a sans-IO reference implementation of Rocket.Chat's account security.

Nothing here does I/O, reads a clock or uses global randomness: time is the ``now`` argument of
every call that depends on it, and randomness comes from an injected entropy source.
"""

from .entropy import Entropy, default_entropy
from .errors import (
    CryptoError,
    E2EError,
    NotFoundError,
    PermissionDenied,
    ProtocolError,
    TwoFactorError,
    ValidationError,
)
from .profiles import HARDENED, PROFILES, ROCKETCHAT, Profile, get_profile
from .server import Server
from .settings import Settings
from .twofactor import EmailMessage, TotpEnrollment

__all__ = [
    "HARDENED",
    "PROFILES",
    "ROCKETCHAT",
    "CryptoError",
    "E2EError",
    "EmailMessage",
    "Entropy",
    "NotFoundError",
    "PermissionDenied",
    "Profile",
    "ProtocolError",
    "Server",
    "Settings",
    "TotpEnrollment",
    "TwoFactorError",
    "ValidationError",
    "default_entropy",
    "get_profile",
]
