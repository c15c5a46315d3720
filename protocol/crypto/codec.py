"""Byte and text codecs shared by both crypto backends (no cryptography here).

Theory of operation: Rocket.Chat's E2EE formats are layers of text around bytes — JSON text holding
base64 fields, a key id glued in front of 344 base64 characters, passwords turned into bytes one
Latin-1 character at a time.  Both backends produce and parse the same outer layers, so those layers
live here once.  Every decoder is *strict* and fails with :class:`~protocol.errors.CryptoError` on
data that does not parse (it came from storage or from the wire), and with
:class:`~protocol.errors.ValidationError` when the caller passed an argument of the wrong Python
type or an impossible value (a password with a character above U+00FF).

This module must not know any cipher: it never imports ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from dataclasses import dataclass
from typing import Any, Final

from protocol.entropy import Entropy, uuid4
from protocol.errors import CryptoError, ValidationError

__all__ = [
    "ALGORITHM_V1",
    "ALGORITHM_V2",
    "MAX_ITERATIONS",
    "V1_ITERATIONS",
    "V1_KID_LENGTH",
    "V2_ITERATIONS",
    "WRAPPED_B64_LENGTH",
    "WRAPPED_RAW_LENGTH",
    "DecodedContent",
    "b64decode",
    "b64encode",
    "b64url_decode",
    "b64url_encode",
    "b64url_to_int",
    "content_kid",
    "decode_content",
    "dump_message",
    "get_int",
    "get_str",
    "int_to_b64url",
    "json_text",
    "latin1",
    "legacy_content",
    "load_message",
    "new_v2_salt",
    "parse_json_object",
    "require_dict",
    "require_entropy",
    "require_str",
    "split_prefixed",
]

#: PBKDF2 iterations of a current private-key blob (client/lib/e2ee/keychain.ts ``encryptKey``).
V2_ITERATIONS: Final = 100_000
#: PBKDF2 iterations of a legacy ``{"$binary": ...}`` blob (keychain.ts ``EncryptedKeyCodec.decode``).
V1_ITERATIONS: Final = 1_000
#: keysim guard, not in Rocket.Chat: a stored blob may name its own iteration count, so cap it to
#: keep a hostile or corrupted blob from stalling a simulation (10x RC's current value).
MAX_ITERATIONS: Final = 1_000_000
#: RSA-OAEP-2048 ciphertexts are 256 bytes, always 344 base64 characters (client/lib/e2ee/prefixed.ts).
WRAPPED_RAW_LENGTH: Final = 256
WRAPPED_B64_LENGTH: Final = 344
#: A legacy message is ``kid(12 chars) + b64(iv[16] + ct)`` (client/lib/e2ee/content.ts).
V1_KID_LENGTH: Final = 12
ALGORITHM_V1: Final = "rc.v1.aes-sha2"
ALGORITHM_V2: Final = "rc.v2.aes-sha2"

_URL_ALPHABET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# -- argument checks (ValidationError: the caller's fault) ------------------------------------------


def require_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(message=f"{name} must be a str, not {type(value).__name__}")
    return value


def require_dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(message=f"{name} must be a dict, not {type(value).__name__}")
    return value


def require_entropy(entropy: object) -> Entropy:
    if not isinstance(entropy, random.Random):
        raise ValidationError(message=f"entropy must be a random.Random, not {type(entropy).__name__}")
    return entropy


def latin1(text: object, name: str) -> bytes:
    """Each character as one byte, as RC's ``Binary.toArrayBuffer`` (client/lib/e2ee/binary.ts).

    RC throws ``RangeError('illegal char code')`` above U+00FF; so do we, as a ValidationError.
    """
    text = require_str(text, name)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValidationError(message=f"{name} has a character above U+00FF at index {exc.start}") from None


def new_v2_salt(user_id: object, entropy: Entropy) -> str:
    """``v2:<userId>:<random UUID>`` (keychain.ts ``encryptKey``); the user id must be Latin-1."""
    uid = require_str(user_id, "user_id")
    if not uid:
        raise ValidationError(message="user_id must not be empty")
    latin1(uid, "user_id")
    return f"v2:{uid}:{uuid4(entropy)}"


# -- base64 (CryptoError: the data's fault) -------------------------------------------------------


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, what: str) -> bytes:
    """Strict standard base64 (padding required, no stray characters)."""
    if not isinstance(text, str):
        raise CryptoError(message=f"{what}: expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(message=f"{what}: not valid base64") from None


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, as JWK fields are written (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not text or not set(text) <= _URL_ALPHABET or len(text) % 4 == 1:
        raise CryptoError(message=f"{what}: not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        raise CryptoError(message=f"{what}: not unpadded base64url") from None


def int_to_b64url(value: int) -> str:
    """A JWK ``Base64urlUInt``: big-endian, minimal length, zero as one octet (RFC 7518 §2)."""
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def b64url_to_int(text: object, what: str) -> int:
    return int.from_bytes(b64url_decode(text, what), "big")


# -- JSON ----------------------------------------------------------------------------------------


def json_text(obj: object) -> str:
    """Compact JSON, key order as given: what JavaScript's ``JSON.stringify`` writes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_json_object(text: object, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise CryptoError(message=f"{what}: expected JSON text, got {type(text).__name__}")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise CryptoError(message=f"{what}: not JSON") from None
    if not isinstance(obj, dict):
        raise CryptoError(message=f"{what}: not a JSON object")
    return obj


def get_str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise CryptoError(message=f"{what}: field {key!r} missing or not a string")
    return value


def get_int(obj: dict[str, Any], key: str, what: str, *, low: int, high: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CryptoError(message=f"{what}: field {key!r} must be an integer in [{low}, {high}]")
    return value


def dump_message(plaintext: object) -> bytes:
    """The message body as UTF-8 JSON (RC: ``TextEncoder().encode(EJSON.stringify(...))``)."""
    body = require_dict(plaintext, "plaintext")
    try:
        return json_text(body).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(message=f"plaintext is not JSON-serialisable: {exc}") from None


def load_message(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`dump_message`; RC rejects a body that is not an object (``decrypt``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError(message="message: plaintext is not UTF-8") from None
    return parse_json_object(text, "message")


# -- prefixed wrapped keys (client/lib/e2ee/prefixed.ts) -----------------------------------------


def split_prefixed(wrapped: object) -> tuple[str, bytes]:
    """``kid + base64(256 bytes)`` -> ``(kid, bytes)``; the kid may be any length, even empty."""
    text = require_str(wrapped, "wrapped")
    if len(text) < WRAPPED_B64_LENGTH:
        raise CryptoError(message="wrapped key: shorter than 344 characters")
    raw = b64decode(text[-WRAPPED_B64_LENGTH:], "wrapped key")
    if len(raw) != WRAPPED_RAW_LENGTH:  # 344 characters without '==' padding are 258 bytes
        raise CryptoError(message="wrapped key: payload is not 256 bytes")
    return text[:-WRAPPED_B64_LENGTH], raw


# -- message content (client/lib/e2ee/content.ts ``decodeEncryptedContent``) ---------------------


@dataclass(frozen=True, slots=True)
class DecodedContent:
    algorithm: str
    kid: str
    iv: bytes
    ciphertext: bytes


def content_kid(content: object) -> str:
    body = require_dict(content, "content")
    algorithm = body.get("algorithm")
    if algorithm == ALGORITHM_V2:
        return get_str(body, "kid", "content")
    if algorithm == ALGORITHM_V1:
        packed = get_str(body, "ciphertext", "content")
        if len(packed) <= V1_KID_LENGTH:
            raise CryptoError(message="content: v1 ciphertext shorter than its key id")
        return packed[:V1_KID_LENGTH]
    raise CryptoError(message="content: unsupported algorithm")


def legacy_content(msg: object) -> dict[str, Any]:
    """A legacy message's ``msg`` string as the v1 content object it stands for.

    Old clients put the ciphertext ``kid(12) + b64(iv[16] || ct)`` in ``msg`` and wrote no
    ``content``.  RC still reads it: ``decryptMessage`` (rocketchat.e2e.room.ts) passes such a
    ``msg`` to ``decrypt``, whose ``decodeEncryptedContent`` (content.ts) reads a string payload
    as ``{algorithm: 'rc.v1.aes-sha2', ciphertext: payload}``.  Nothing is parsed here, so a bad
    string fails later exactly as that v1 content would (CryptoError from :func:`content_kid` or
    :func:`decode_content`); a ``msg`` that is not a str is the caller's error (ValidationError).
    """
    return {"algorithm": ALGORITHM_V1, "ciphertext": require_str(msg, "msg")}


def decode_content(content: object) -> DecodedContent:
    """Split a v1 or v2 content object into kid, IV and ciphertext (no decryption)."""
    body = require_dict(content, "content")
    kid = content_kid(body)
    if body["algorithm"] == ALGORITHM_V2:
        iv = b64decode(body.get("iv"), "content iv")
        ciphertext = b64decode(body.get("ciphertext"), "content ciphertext")
    else:
        packed = b64decode(body["ciphertext"][V1_KID_LENGTH:], "content ciphertext")
        iv, ciphertext = packed[:16], packed[16:]
    return DecodedContent(body["algorithm"], kid, iv, ciphertext)


def parse_private_blob(blob: object, user_id: object) -> tuple[bytes, bytes, bytes, int]:
    """(iv, ciphertext, salt, iterations) of a stored private-key blob, v1 or v2.

    keychain.ts ``StoredKey.decode``: ``{"$binary"}`` first (v1: iv[16] || ct, salt = the user
    id, 1,000 iterations), then the v2 members ``iv``, ``ciphertext``, ``salt``, ``iterations``.
    """
    require_str(blob, "blob")
    uid = latin1(user_id, "user_id")
    stored = parse_json_object(blob, "private key blob")
    if isinstance(stored.get("$binary"), str):
        packed = b64decode(stored["$binary"], "private key blob")
        return packed[:16], packed[16:], uid, V1_ITERATIONS
    iv = b64decode(get_str(stored, "iv", "private key blob"), "blob iv")
    ct = b64decode(get_str(stored, "ciphertext", "private key blob"), "blob")
    salt_text = get_str(stored, "salt", "private key blob")
    iterations = get_int(stored, "iterations", "private key blob", low=1, high=MAX_ITERATIONS)
    try:
        salt = salt_text.encode("latin-1")
    except UnicodeEncodeError:
        raise CryptoError(message="private key blob: salt is not Latin-1") from None
    return iv, ct, salt, iterations


def private_blob_v2(iv: bytes, ciphertext: bytes, salt: str) -> str:
    """The stored v2 private-key blob text (keychain.ts ``encryptKey``)."""
    return json_text(
        {"iv": b64encode(iv), "ciphertext": b64encode(ciphertext), "salt": salt, "iterations": V2_ITERATIONS}
    )


def private_blob_v1(iv: bytes, ciphertext: bytes) -> str:
    """The stored legacy v1 blob text: ``{"$binary": b64(iv[16] || ct)}``."""
    return json_text({"$binary": b64encode(iv + ciphertext)})
