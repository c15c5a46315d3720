"""keysim's protocol core: a sans-IO reference implementation of Rocket.Chat's account security.

Nothing here does I/O, reads a clock or uses global randomness: time is the ``now`` argument of
every call that depends on it, and randomness comes from an injected entropy source.
"""

from .deployment import Deployment, Person
from .e2e_client import Client, E2EEState, E2ERoomState, KeyAcquired
from .e2e_server import POLICIES, KeyRequest, Notification, SubscriptionChanged
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
from .invariants import Violation, check_all
from .ledger import KeyLedger
from .profiles import HARDENED, PROFILES, ROCKETCHAT, Profile, get_profile
from .server import Server
from .settings import Settings
from .twofactor import EmailMessage, TotpEnrollment

__all__ = [
    "HARDENED",
    "POLICIES",
    "PROFILES",
    "ROCKETCHAT",
    "Client",
    "CryptoError",
    "Deployment",
    "E2EEState",
    "E2EError",
    "E2ERoomState",
    "EmailMessage",
    "Entropy",
    "KeyAcquired",
    "KeyLedger",
    "KeyRequest",
    "NotFoundError",
    "Notification",
    "PermissionDenied",
    "Person",
    "Profile",
    "ProtocolError",
    "Server",
    "Settings",
    "SubscriptionChanged",
    "TotpEnrollment",
    "TwoFactorError",
    "ValidationError",
    "Violation",
    "check_all",
    "default_entropy",
    "get_profile",
]
