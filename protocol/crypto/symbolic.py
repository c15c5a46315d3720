"""The symbolic backend: who can open what, without the arithmetic.

Theory of operation: a simulation of thousands of accounts cannot afford RSA key generation and
100,000 PBKDF2 rounds per step, but it must still get right *which* key opens *which* ciphertext.
Here every key is an opaque token drawn from the injected entropy, and every "ciphertext" is a
self-describing record that names the key it was sealed under and carries its payload.  The backend
opens a record only with the named key; anything else is a CryptoError, exactly as in the real
backend.  Nothing is kept in a registry: a record opens on any instance, in any process.

Tokens and records (all JSON-serialisable, deterministic for a seeded entropy):

* private key — ``"sym-priv-<32 hex>"``; its public key text is the JSON text
  ``{"alg":"SYM-OAEP","kty":"SYM","pub":"<32 hex>"}`` where ``pub`` is a hash of the private token.
* private-key blob — RC's v2 JSON shape ``{"iv","ciphertext","salt","iterations"}`` (salt
  ``v2:<uid>:<uuid>``); ``ciphertext`` is base64 of the token's 16 secret bytes masked by a hash of
  (salt, iterations, iv, password) followed by a 16-byte hash check of the same — a wrong password
  fails the check.  The password itself never appears.  The legacy ``{"$binary": ...}`` shape is
  produced and read the same way with salt = the user id and 1,000 iterations.
* room key — ``"sym-room-<32 hex>"`` with a random UUID kid; a legacy one
  (``generate_room_key_v1``) has a 12-hex-digit kid, a hash of its secret, as 7.0's was of its JWK.
* wrapped room key — ``kid + base64(256-byte record)``, i.e. RC's exact prefixed layout, so
  ``wrapped_kid`` is shared with the real backend.  The record holds a magic tag, the recipient's
  ``pub``, the room secret and a checksum.
* message content — ``{"algorithm": "rc.v2.aes-sha2", "kid", "iv", "ciphertext"}`` where
  ``ciphertext`` is base64 of a magic tag, the room key's id (a hash of its secret), a 16-byte keyed
  hash over (secret, iv, payload), and the payload (the plaintext's JSON).  Tampering fails the hash.
  The legacy writer ``encrypt_message_v1`` puts the same record in RC's v1 layout,
  ``{"algorithm": "rc.v1.aes-sha2", "ciphertext": kid(12) + b64(iv[16] || record)}``; both open.

This is a *model*, not encryption: records carry their payloads readably (the room secret in a
wrapped record, the message JSON), and the protocol must treat them as opaque.  Hashing (a few
SHA-256 calls per operation) is the only computation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, Final

from protocol.crypto import codec
from protocol.crypto.base import CryptoBackend, KeyPair, PrivateKey, RoomKey
from protocol.entropy import Entropy, random_bytes, uuid4
from protocol.errors import CryptoError, ValidationError

__all__ = ["SymbolicBackend"]

_PRIV_PREFIX: Final = "sym-priv-"
_ROOM_PREFIX: Final = "sym-room-"
_PRIV_RE: Final = re.compile(r"sym-priv-[0-9a-f]{32}")
_ROOM_RE: Final = re.compile(r"sym-room-[0-9a-f]{32}")
_PUB_RE: Final = re.compile(r"[0-9a-f]{32}")
_PUB_ALG: Final = "SYM-OAEP"
_WRAP_MAGIC: Final = b"KSYMWRAP"
_MSG_MAGIC: Final = b"KSYMMSG1"
_SECRET_BYTES: Final = 16
_TAG_BYTES: Final = 16


def _h(label: str, *parts: bytes) -> bytes:
    """Domain-separated SHA-256 over length-prefixed parts (unambiguous concatenation)."""
    digest = hashlib.sha256(label.encode("ascii") + b"\x00")
    for part in parts:
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.digest()


def _secret_of_private(handle: PrivateKey) -> bytes:
    if not isinstance(handle, str) or not _PRIV_RE.fullmatch(handle):
        raise ValidationError(message="not a symbolic private key (expected 'sym-priv-<32 hex>')")
    return bytes.fromhex(handle[len(_PRIV_PREFIX) :])


def _secret_of_room(room_key: object) -> bytes:
    if (
        not isinstance(room_key, RoomKey)
        or not isinstance(room_key.key, str)
        or not _ROOM_RE.fullmatch(room_key.key)
    ):
        raise ValidationError(message="not a symbolic RoomKey (expected key 'sym-room-<32 hex>')")
    return bytes.fromhex(room_key.key[len(_ROOM_PREFIX) :])


def _pub_of(secret: bytes) -> bytes:
    return _h("keysim-sym-pub", secret)[:16]


def _public_text(pub: bytes) -> str:
    return codec.json_text({"alg": _PUB_ALG, "kty": "SYM", "pub": pub.hex()})


def _parse_public(text: object) -> bytes:
    obj = codec.parse_json_object(codec.require_str(text, "public_key"), "public key")
    pub = obj.get("pub")
    if obj.get("kty") != "SYM" or not isinstance(pub, str) or not _PUB_RE.fullmatch(pub):
        raise CryptoError(message="public key: not a symbolic public key")
    return bytes.fromhex(pub)


def _seal(secret: bytes, *, salt: bytes, iterations: int, iv: bytes, password: bytes) -> bytes:
    """The masked secret followed by its password check (16 + 16 bytes)."""
    params = (salt, iterations.to_bytes(8, "big"), iv, password)
    mask = _h("keysim-sym-seal", *params)[:_SECRET_BYTES]
    masked = bytes(a ^ b for a, b in zip(secret, mask, strict=True))
    return masked + _h("keysim-sym-check", *params, masked)[:_TAG_BYTES]


def _unseal(sealed: bytes, *, salt: bytes, iterations: int, iv: bytes, password: bytes) -> str:
    if len(sealed) != _SECRET_BYTES + _TAG_BYTES:
        raise CryptoError(message="private key blob: not a symbolic blob")
    masked, tag = sealed[:_SECRET_BYTES], sealed[_SECRET_BYTES:]
    params = (salt, iterations.to_bytes(8, "big"), iv, password)
    if not hmac.compare_digest(tag, _h("keysim-sym-check", *params, masked)[:_TAG_BYTES]):
        raise CryptoError(message="private key blob: does not decrypt (wrong password?)")
    mask = _h("keysim-sym-seal", *params)[:_SECRET_BYTES]
    return _PRIV_PREFIX + bytes(a ^ b for a, b in zip(masked, mask, strict=True)).hex()


def _message_record(secret: bytes, iv: bytes, payload: bytes) -> bytes:
    """Magic tag, the room key's id, a keyed hash over (secret, iv, payload), the payload."""
    key_id = _h("keysim-sym-room", secret)[:16]
    tag = _h("keysim-sym-mac", secret, iv, payload)[:_TAG_BYTES]
    return _MSG_MAGIC + key_id + tag + payload


class SymbolicBackend(CryptoBackend):
    """Tokens and records instead of ciphers (see the module docstring)."""

    name = "symbolic"

    def generate_key_pair(self, entropy: Entropy) -> KeyPair:
        secret = random_bytes(codec.require_entropy(entropy), _SECRET_BYTES)
        return KeyPair(public_key=_public_text(_pub_of(secret)), private_key=_PRIV_PREFIX + secret.hex())

    def public_key_text(self, private_key: PrivateKey) -> str:
        return _public_text(_pub_of(_secret_of_private(private_key)))

    def fingerprint(self, public_key: str) -> str:
        return codec.b64url_encode(_h("keysim-sym-fingerprint", _parse_public(public_key)))

    def sign(self, private_key: PrivateKey, data: bytes) -> str:
        # A record naming the signer's public key.  Like every symbolic record it is unforgeable
        # by convention only: nothing but sign(), which needs the private key, makes one.
        pub = _pub_of(_secret_of_private(private_key))
        return "sym-sig-" + _h("keysim-sym-sig", pub, bytes(data)).hex()

    def verify(self, public_key: str, data: bytes, signature: str) -> bool:
        try:
            pub = _parse_public(public_key)
        except (CryptoError, ValidationError):
            return False
        expected = "sym-sig-" + _h("keysim-sym-sig", pub, bytes(data)).hex()
        return isinstance(signature, str) and hmac.compare_digest(signature, expected)

    def encrypt_private_key(
        self, private_key: PrivateKey, *, user_id: str, password: str, entropy: Entropy
    ) -> str:
        secret = _secret_of_private(private_key)
        pw = codec.latin1(password, "password")
        salt = codec.new_v2_salt(user_id, codec.require_entropy(entropy))
        iv = random_bytes(entropy, 12)
        sealed = _seal(
            secret, salt=salt.encode("latin-1"), iterations=codec.V2_ITERATIONS, iv=iv, password=pw
        )
        return codec.private_blob_v2(iv, sealed, salt)

    def encrypt_private_key_v1(
        self, private_key: PrivateKey, *, user_id: str, password: str, entropy: Entropy
    ) -> str:
        secret = _secret_of_private(private_key)
        pw = codec.latin1(password, "password")
        salt = codec.latin1(user_id, "user_id")
        if not salt:
            raise ValidationError(message="user_id must not be empty")
        iv = random_bytes(codec.require_entropy(entropy), 16)
        sealed = _seal(secret, salt=salt, iterations=codec.V1_ITERATIONS, iv=iv, password=pw)
        return codec.private_blob_v1(iv, sealed)

    def decrypt_private_key(self, blob: str, *, user_id: str, password: str) -> PrivateKey:
        pw = codec.latin1(password, "password")
        iv, sealed, salt, iterations = codec.parse_private_blob(blob, user_id)
        return _unseal(sealed, salt=salt, iterations=iterations, iv=iv, password=pw)

    def generate_room_key(self, entropy: Entropy) -> RoomKey:
        entropy = codec.require_entropy(entropy)
        secret = random_bytes(entropy, _SECRET_BYTES)
        return RoomKey(kid=uuid4(entropy), key=_ROOM_PREFIX + secret.hex())

    def generate_room_key_v1(self, entropy: Entropy) -> RoomKey:
        secret = random_bytes(codec.require_entropy(entropy), _SECRET_BYTES)
        kid = _h("keysim-sym-kid-v1", secret).hex()[: codec.V1_KID_LENGTH]
        return RoomKey(kid=kid, key=_ROOM_PREFIX + secret.hex())

    def wrap_room_key(self, room_key: RoomKey, public_key: str, entropy: Entropy) -> str:
        secret = _secret_of_room(room_key)
        codec.require_entropy(entropy)
        pub = _parse_public(public_key)
        body = _WRAP_MAGIC + pub + secret
        record = body + _h("keysim-sym-wrap", body)[:_TAG_BYTES]
        return room_key.kid + codec.b64encode(record.ljust(codec.WRAPPED_RAW_LENGTH, b"\x00"))

    def unwrap_room_key(self, wrapped: str, private_key: PrivateKey) -> RoomKey:
        own_pub = _pub_of(_secret_of_private(private_key))
        kid, record = codec.split_prefixed(wrapped)
        size = len(_WRAP_MAGIC) + 16 + _SECRET_BYTES
        body, tag, pad = record[:size], record[size : size + _TAG_BYTES], record[size + _TAG_BYTES :]
        if (
            not body.startswith(_WRAP_MAGIC)
            or pad.strip(b"\x00")
            or not hmac.compare_digest(tag, _h("keysim-sym-wrap", body)[:_TAG_BYTES])
        ):
            raise CryptoError(message="wrapped key: not a symbolic record")
        if not hmac.compare_digest(body[len(_WRAP_MAGIC) : len(_WRAP_MAGIC) + 16], own_pub):
            raise CryptoError(message="wrapped key: not for this key pair")
        return RoomKey(kid=kid, key=_ROOM_PREFIX + body[-_SECRET_BYTES:].hex())

    def encrypt_message(
        self, room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy
    ) -> dict[str, Any]:
        secret = _secret_of_room(room_key)
        payload = codec.dump_message(plaintext)
        iv = random_bytes(codec.require_entropy(entropy), 12)
        return {
            "algorithm": codec.ALGORITHM_V2,
            "kid": room_key.kid,
            "iv": codec.b64encode(iv),
            "ciphertext": codec.b64encode(_message_record(secret, iv, payload)),
        }

    def encrypt_message_v1(
        self, room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy
    ) -> dict[str, Any]:
        secret = _secret_of_room(room_key)
        if len(room_key.kid) != codec.V1_KID_LENGTH:
            raise ValidationError(message="v1 messages need a legacy room key with a 12-char kid")
        payload = codec.dump_message(plaintext)
        iv = random_bytes(codec.require_entropy(entropy), 16)
        packed = codec.b64encode(iv + _message_record(secret, iv, payload))
        return {"algorithm": codec.ALGORITHM_V1, "ciphertext": room_key.kid + packed}

    def decrypt_message(self, content: dict[str, Any], room_key: RoomKey) -> dict[str, Any]:
        secret = _secret_of_room(room_key)
        decoded = codec.decode_content(content)
        record = decoded.ciphertext
        head = len(_MSG_MAGIC)
        if not record.startswith(_MSG_MAGIC):
            raise CryptoError(message="message: not a symbolic record")
        key_id, tag = record[head : head + 16], record[head + 16 : head + 16 + _TAG_BYTES]
        payload = record[head + 16 + _TAG_BYTES :]
        if not hmac.compare_digest(key_id, _h("keysim-sym-room", secret)[:16]):
            raise CryptoError(message="message: sealed under another room key")
        if not hmac.compare_digest(tag, _h("keysim-sym-mac", secret, decoded.iv, payload)[:_TAG_BYTES]):
            raise CryptoError(message="message: tampered")
        return codec.load_message(payload)
