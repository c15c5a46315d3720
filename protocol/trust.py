"""Opt-in mitigations against a malicious server (keysim extensions; Rocket.Chat has neither).

Rocket.Chat's server hands out every public key with no fingerprint check, so it can substitute
its own key for a member's and receive the room key (#42088, "closed as feature"); and suggested
keys are unauthenticated, so whoever can write a suggestion that decrypts can plant a room key
(spec section 6).  Two mitigations, each chosen per client with :class:`Mitigations`:

* ``verify_fingerprints``: before wrapping a room key for a member, the client checks the
  member's public key against a :class:`KeyDirectory` of fingerprints the people exchanged out of
  band (compared in person, or scanned as a QR code).  A substituted key is refused, so the room
  key never reaches the server's key.  Its own public key the client derives from its private
  key instead of taking ``e2e.fetchMyKeys``' answer, so its wraps for itself are its own too.
  And a recovery contact (policy ``contacts``) answers a request only if its one-time key's
  fingerprint is the one the person gave it out of band (:func:`recovery_request_id`).
* ``signed_suggestions``: a suggestion carries the sender's signature over (room, receiver, key);
  the receiver accepts it only if the signature verifies under the sender's public key, which
  must itself be in the directory when there is one.  A planted key has no valid signature.

The directory is outside the server's reach: in a simulation it is written when a person makes a
new key pair, standing for that person telling its contacts the new fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["KeyDirectory", "Mitigations", "recovery_request_id", "suggestion_payload"]


@dataclass(frozen=True, slots=True)
class Mitigations:
    verify_fingerprints: bool = False
    signed_suggestions: bool = False

    @classmethod
    def named(cls, name: str) -> Mitigations:
        """``none``, ``fingerprints``, ``signed`` or ``both``."""
        table = {
            "none": cls(),
            "fingerprints": cls(verify_fingerprints=True),
            "signed": cls(signed_suggestions=True),
            "both": cls(verify_fingerprints=True, signed_suggestions=True),
        }
        if name not in table:
            from .errors import ValidationError

            raise ValidationError("error-invalid-params", f"mitigation: one of {sorted(table)}, got {name!r}")
        return table[name]


@dataclass(slots=True)
class KeyDirectory:
    """Fingerprints vouched for out of band: user id -> every fingerprint it ever published."""

    fingerprints: dict[str, set[str]] = field(default_factory=dict)

    def publish(self, user_id: str, fingerprint: str) -> None:
        self.fingerprints.setdefault(user_id, set()).add(fingerprint)

    def vouches(self, user_id: str, fingerprint: str) -> bool:
        return fingerprint in self.fingerprints.get(user_id, ())


def suggestion_payload(room_id: str, receiver_id: str, wrapped: str) -> bytes:
    """What a signed suggestion's signature covers."""
    return f"keysim-suggestion\x00{room_id}\x00{receiver_id}\x00{wrapped}".encode()


def recovery_request_id(user_id: str) -> str:
    """The directory entry for the one-time key of ``user_id``'s request to its recovery contacts
    (policy ``contacts``): the fingerprint the person confirms with a contact out of band."""
    return f"{user_id}/recovery-request"
