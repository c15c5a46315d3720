"""Recovery contacts, server side (policy ``contacts``; beyond Rocket.Chat).

Theory of operation.  Apple's account recovery contacts (Apple Platform Security guide, "Account
recovery contact security"; up to five contacts per account) let a person who lost access get it
back with the help of somebody it trusts: the contact's device, online, produces what the person
needs, and nobody else (Apple included) can.  keysim gives the design Rocket.Chat's shape:

* the person's client seals its E2E password under a fresh secret ``R`` (``sealed``, an encrypted
  message content) and wraps ``R`` for each contact's public key (``shares``), as it wraps room
  keys; the server keeps both and can open neither (:meth:`e2e_contacts_set`);
* a person who forgot its E2E password asks from a new device, with a one-time public key
  (:meth:`e2e_contacts_request`);
* any contact's client, when it is online, opens its share and wraps ``R`` for that one-time key
  (:meth:`e2e_contacts_pending`, :meth:`e2e_contacts_answer`);
* the person's device opens ``R``, then the sealed password, and unlocks its own key pair: every
  room comes back with its history.

The server relays the one-time key, so a malicious server can swap it for its own and learn the
password (:mod:`protocol.adversary`, ``swap_recovery_request_key``); Apple has the contact confirm
the request person to person, which the mitigation ``fingerprints`` stands for: the person gives
the one-time key's fingerprint to its contacts out of band
(:func:`protocol.trust.recovery_request_id`).  A reset of the person's key drops its record (the password it sealed opens nothing any
more); a contact that reset its own key can no longer open its share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import E2EError, NotFoundError, PermissionDenied, ValidationError

if TYPE_CHECKING:
    from .accounts import User
    from .policies import Mechanisms

__all__ = ["MAX_CONTACTS", "ContactsServerMixin", "RecoveryRecord"]

#: Apple allows up to five account recovery contacts
MAX_CONTACTS = 5


@dataclass(slots=True)
class RecoveryRecord:
    """One person's recovery contacts: its sealed E2E password and each contact's share."""

    sealed: dict[str, Any]
    shares: dict[str, str]
    #: the one-time public key of an open request, and the first contact's answer
    request_key: str | None = None
    answer: str | None = None
    answered_by: str | None = None


class ContactsServerMixin:
    # Supplied by protocol.Server.
    policy: str
    mechanisms: Mechanisms
    _users: dict[str, User]
    _contacts: dict[str, RecoveryRecord]

    if TYPE_CHECKING:

        def user(self, user_id: str) -> User: ...

    def e2e_contacts_set(self, user_id: str, sealed: Mapping[str, Any], shares: Mapping[str, str]) -> None:
        """Store (replace) ``user_id``'s sealed E2E password and its contacts' shares."""
        self._require_contacts()
        self.user(user_id)
        if not isinstance(sealed, Mapping) or not sealed:
            raise ValidationError(message="sealed must be an encrypted content")
        if not isinstance(shares, Mapping) or not 1 <= len(shares) <= MAX_CONTACTS:
            raise ValidationError(message=f"shares must name 1 to {MAX_CONTACTS} contacts")
        for contact_id, share in shares.items():
            self.user(contact_id)
            if contact_id == user_id:
                raise ValidationError(message="a person cannot be its own recovery contact")
            if not isinstance(share, str) or not share:
                raise ValidationError(message=f"the share for {contact_id!r} must be a wrapped key")
        self._contacts[user_id] = RecoveryRecord(dict(sealed), dict(shares))

    def e2e_contacts_of(self, user_id: str) -> list[str]:
        """The contacts holding a share of ``user_id``'s record (none: no record)."""
        record = self._contacts.get(user_id)
        return [] if record is None else list(record.shares)

    def e2e_contacts_request(self, user_id: str, public_key: str) -> None:
        """A person asks its contacts, from a device with the one-time ``public_key``."""
        self._require_contacts()
        record = self._record(user_id)
        if not isinstance(public_key, str) or not public_key:
            raise ValidationError(message="public_key must be a public key text")
        record.request_key, record.answer, record.answered_by = public_key, None, None

    def e2e_contacts_pending(self, contact_id: str) -> list[dict[str, str]]:
        """The open requests ``contact_id`` can answer: person, one-time key, its share."""
        self._require_contacts()
        return [
            {"userId": uid, "publicKey": record.request_key, "share": record.shares[contact_id]}
            for uid, record in self._contacts.items()
            if record.request_key is not None and record.answer is None and contact_id in record.shares
        ]

    def e2e_contacts_answer(self, contact_id: str, user_id: str, wrapped: str) -> None:
        """A contact's answer: ``R`` wrapped for the request's one-time key (the first one wins)."""
        self._require_contacts()
        record = self._record(user_id)
        if contact_id not in record.shares:
            raise PermissionDenied(
                "error-not-allowed", f"{contact_id!r} is not a recovery contact of {user_id!r}"
            )
        if record.request_key is None:
            raise E2EError("error-invalid-state", f"{user_id!r} has no open recovery request")
        if not isinstance(wrapped, str) or not wrapped:
            raise ValidationError(message="wrapped must be a wrapped key")
        if record.answer is None:
            record.answer, record.answered_by = wrapped, contact_id

    def e2e_contacts_fetch(self, user_id: str) -> dict[str, Any]:
        """The person's sealed password and the answer to its request (None: not yet)."""
        self._require_contacts()
        record = self._record(user_id)
        return {"sealed": dict(record.sealed), "answer": record.answer, "answeredBy": record.answered_by}

    def _drop_contacts(self, user_id: str) -> None:
        """A reset of ``user_id``'s key: its sealed password opens nothing any more."""
        self._contacts.pop(user_id, None)

    def _record(self, user_id: str) -> RecoveryRecord:
        self.user(user_id)
        record = self._contacts.get(user_id)
        if record is None:
            raise NotFoundError("error-contacts-not-found", f"{user_id!r} has no recovery contacts")
        return record

    def _require_contacts(self) -> None:
        if not self.mechanisms.contacts:
            raise E2EError(
                "error-not-allowed", f"recovery contacts need policy 'contacts', not {self.policy!r}"
            )

    def _contacts_dump(self) -> list[dict[str, Any]]:
        return [
            {
                "userId": uid,
                "sealed": dict(r.sealed),
                "shares": dict(r.shares),
                "requestKey": r.request_key,
                "answer": r.answer,
                "answeredBy": r.answered_by,
            }
            for uid, r in self._contacts.items()
        ]
