"""The narrow interface every crypto backend implements.

Theory of operation: the protocol (client and server machines) never touches a cipher.  It holds
*handles* — a :class:`KeyPair`'s private key, a :class:`RoomKey`'s key — that only the backend which
made them can use, and it moves *texts* — the stored private-key blob, the public JWK text, wrapped
room keys (``E2EKey``), message ``content`` objects — that it may store, copy and compare but never
needs to parse.  The texts have Rocket.Chat's shapes (spec §1) in both backends, so server-side code
that reads a kid prefix or a content's ``kid`` works whichever backend produced them.

Two backends implement the interface: ``real`` (Rocket.Chat's exact bytes, via ``cryptography``)
and ``symbolic`` (unique tokens and self-describing records, no arithmetic, for simulations at
scale).  One contract test suite (``tests/protocol/test_crypto_contract.py``) runs against both.

Failure rules, shared by every backend:

* anything that does not open or parse — wrong password, a key wrapped for another key pair, a
  tampered message, garbage text — raises :class:`~protocol.errors.CryptoError`;
* an argument of the wrong Python type or an impossible value (a password character above U+00FF,
  a handle from another backend) raises :class:`~protocol.errors.ValidationError`;
* no other exception escapes (third-party ones are translated at the backend boundary).

All randomness comes from the ``entropy`` argument; a seeded ``random.Random`` makes every output
reproducible (the real backend's RSA-OAEP padding is the one exception: ``cryptography`` draws it
internally, so wrapped keys differ between runs while still opening the same way).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from protocol.crypto import codec
from protocol.entropy import Entropy

__all__ = ["CryptoBackend", "KeyPair", "PrivateKey", "RoomKey"]

#: An opaque private-key handle: meaningful only to the backend that made it.
PrivateKey: TypeAlias = object


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A user's key pair (client/lib/e2ee/crypto/rsa.ts ``generate``)."""

    #: exactly the text stored in ``users.e2e.public_key``
    public_key: str
    #: opaque backend handle
    private_key: PrivateKey


@dataclass(frozen=True, slots=True)
class RoomKey:
    """A room (group session) key and its id (``rooms.e2eKeyId``; a random UUID in v2)."""

    kid: str
    #: opaque backend handle (real: an ``AesKey``; symbolic: a token string)
    key: object


class CryptoBackend(abc.ABC):
    """What the protocol may ask of cryptography; see the module docstring for the rules."""

    #: the name :func:`protocol.crypto.get_backend` knows this backend by
    name: ClassVar[str]

    # -- user key pair ---------------------------------------------------------------------------

    @abc.abstractmethod
    def generate_key_pair(self, entropy: Entropy) -> KeyPair:
        """A fresh key pair (RC: RSA-OAEP-2048, e = 65537, SHA-256)."""

    @abc.abstractmethod
    def public_key_text(self, private_key: PrivateKey) -> str:
        """The public key text (``users.e2e.public_key``) belonging to ``private_key``."""

    @abc.abstractmethod
    def fingerprint(self, public_key: str) -> str:
        """A short stable digest of a public key text, for out-of-band comparison.

        Rocket.Chat shows none (spec §6, #42088); keysim offers one so simulations can model the
        mitigation.  Raises CryptoError if ``public_key`` does not parse.
        """

    @abc.abstractmethod
    def sign(self, private_key: PrivateKey, data: bytes) -> str:
        """A signature over ``data`` by the key pair (keysim extension: RC signs nothing).

        Used by the opt-in ``signed_suggestions`` mitigation; the real backend uses RSA-PSS with
        SHA-256 on the user's RSA key.
        """

    @abc.abstractmethod
    def verify(self, public_key: str, data: bytes, signature: str) -> bool:
        """Whether ``signature`` is the key pair's signature over ``data`` (False on garbage)."""

    @abc.abstractmethod
    def encrypt_private_key(
        self, private_key: PrivateKey, *, user_id: str, password: str, entropy: Entropy
    ) -> str:
        """The ``users.e2e.private_key`` text, always in the current (v2) format."""

    @abc.abstractmethod
    def encrypt_private_key_v1(
        self, private_key: PrivateKey, *, user_id: str, password: str, entropy: Entropy
    ) -> str:
        """LEGACY writer: the ``{"$binary": ...}`` blob an old client stored.

        Only for vectors, tests and simulating accounts created before v2; protocol code writes
        v2 with :meth:`encrypt_private_key`.
        """

    @abc.abstractmethod
    def decrypt_private_key(self, blob: str, *, user_id: str, password: str) -> PrivateKey:
        """Open a v2 or v1 blob; wrong password or malformed blob -> CryptoError."""

    # -- room keys ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def generate_room_key(self, entropy: Entropy) -> RoomKey:
        """A fresh room key with a random UUID kid (rocketchat.e2e.room.ts ``createNewGroupKey``)."""

    @abc.abstractmethod
    def generate_room_key_v1(self, entropy: Entropy) -> RoomKey:
        """LEGACY: a room key of an old client, with a 12-character kid (spec §1).

        Only for vectors, tests and simulating history written before v2, with
        :meth:`encrypt_message_v1`; protocol code makes keys with :meth:`generate_room_key`.
        """

    @abc.abstractmethod
    def wrap_room_key(self, room_key: RoomKey, public_key: str, entropy: Entropy) -> str:
        """The ``E2EKey`` / ``E2ESuggestedKey`` string: ``kid + 344 base64 characters``.

        CryptoError if ``public_key`` does not parse as a key of this backend.
        """

    @abc.abstractmethod
    def unwrap_room_key(self, wrapped: str, private_key: PrivateKey) -> RoomKey:
        """Open a wrapped key; CryptoError if it is not for this key pair or is malformed.

        The kid is taken from the prefix, unauthenticated, exactly as RC does.
        """

    def wrapped_kid(self, wrapped: str) -> str:
        """The kid prefix of a wrapped key (everything before the last 344 characters).

        Both backends share RC's prefixed layout (client/lib/e2ee/prefixed.ts), so this is common.
        """
        kid, _ = codec.split_prefixed(wrapped)
        return kid

    # -- messages ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def encrypt_message(
        self, room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy
    ) -> dict[str, Any]:
        """The message ``content`` object (``rc.v2.aes-sha2``) for a JSON-able ``plaintext``."""

    @abc.abstractmethod
    def encrypt_message_v1(
        self, room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy
    ) -> dict[str, Any]:
        """LEGACY writer: ``{"algorithm": "rc.v1.aes-sha2", "ciphertext": kid + b64(iv[16] || ct)}``.

        ``room_key`` must come from :meth:`generate_room_key_v1` (ValidationError otherwise).  The
        ``ciphertext`` string alone is what an old client stored in a message's ``msg``
        (:func:`~protocol.crypto.codec.legacy_content` turns it back into this object).
        """

    @abc.abstractmethod
    def decrypt_message(self, content: dict[str, Any], room_key: RoomKey) -> dict[str, Any]:
        """Open a v2 or v1 ``content`` object; CryptoError on wrong key, tampering or malformed
        content."""

    def message_kid(self, content: dict[str, Any]) -> str:
        """The kid a content object names (v2: ``kid``; v1: the first 12 ciphertext characters)."""
        return codec.content_kid(content)
