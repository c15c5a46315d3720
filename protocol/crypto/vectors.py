"""Reproducible test vectors in Rocket.Chat's exact E2EE formats, made with the real backend.

Theory of operation: :func:`make_vectors` drives :class:`~protocol.crypto.real.RealBackend` (and its
legacy v1 writers) from one ``random.Random(seed)`` and returns a JSON-able document of cases that an
independent implementation — RC's web client, a WebCrypto script, or the decoder in
``tests/protocol/test_crypto_real_formats.py`` — can open.  The same seed yields the same document, except
the ``wrapped`` strings: RSA-OAEP draws its padding inside ``cryptography``.

Case kinds and their fields:

* ``private_key_v2`` / ``private_key_v1`` — ``user_id``, ``password``, ``public_key`` (the stored JWK
  text), ``private_key`` (the stored blob text), ``private_jwk`` (the decrypted JWK object);
* ``room_key`` — ``kid``, ``room_key_jwk``, ``member_public_key`` (JWK text), ``member_private_jwk``,
  ``wrapped`` (the ``E2EKey`` string);
* ``message_v2`` / ``message_v1`` — ``kid``, ``room_key_jwk``, ``content``, ``plaintext``.

The module writes no file (protocol/ does no I/O).  ``tests/vectors/e2ee.json`` was produced with::

    python -c "from protocol.crypto.vectors import *; print(dumps_vectors(make_vectors(0)), end='')" \\
        > tests/vectors/e2ee.json
"""

from __future__ import annotations

import json
import random
from typing import Any

from protocol.crypto import codec
from protocol.crypto.passphrase import generate_passphrase
from protocol.crypto.real import (
    RealBackend,
    encrypt_message_v1,
    generate_room_key_v1,
    private_jwk,
    room_key_jwk,
)
from protocol.entropy import Entropy, choice_string

__all__ = ["dumps_vectors", "make_vectors"]

#: Rocket.Chat ``Random.id()`` alphabet (17 characters per id)
_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


def _user_id(entropy: Entropy) -> str:
    return choice_string(entropy, _ID_ALPHABET, 17)


def _private_key_cases(backend: RealBackend, entropy: Entropy) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    # (kind, password, description): a generated 12-word passphrase, and a hand-typed Latin-1 one
    specs = [
        ("private_key_v2", generate_passphrase(entropy), "v2 blob, generated 12-word passphrase"),
        ("private_key_v2", "Grüße, señor! ½", "v2 blob, Latin-1 password (one byte per char)"),
        ("private_key_v1", generate_passphrase(entropy, 5), "legacy v1 $binary blob"),
        ("private_key_v1", "pässwörd", "legacy v1 $binary blob, Latin-1 password"),
    ]
    for kind, password, description in specs:
        pair = backend.generate_key_pair(entropy)
        user_id = _user_id(entropy)
        write = backend.encrypt_private_key if kind.endswith("v2") else backend.encrypt_private_key_v1
        blob = write(pair.private_key, user_id=user_id, password=password, entropy=entropy)
        cases.append(
            {
                "kind": kind,
                "description": description,
                "user_id": user_id,
                "password": password,
                "public_key": pair.public_key,
                "private_key": blob,
                "private_jwk": private_jwk(pair.private_key),
            }
        )
    return cases


def _room_key_cases(backend: RealBackend, entropy: Entropy) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for legacy in (False, True):
        member = backend.generate_key_pair(entropy)
        room_key = generate_room_key_v1(entropy) if legacy else backend.generate_room_key(entropy)
        cases.append(
            {
                "kind": "room_key",
                "description": "legacy A128CBC key, 12-char kid" if legacy else "A256GCM key, UUID kid",
                "kid": room_key.kid,
                "room_key_jwk": room_key_jwk(room_key),
                "member_public_key": member.public_key,
                "member_private_jwk": private_jwk(member.private_key),
                "wrapped": backend.wrap_room_key(room_key, member.public_key, entropy),
            }
        )
    return cases


def _message_cases(backend: RealBackend, entropy: Entropy) -> list[dict[str, Any]]:
    gcm = backend.generate_room_key(entropy)
    cbc = generate_room_key_v1(entropy)
    specs: list[tuple[str, Any, dict[str, Any], str]] = [
        ("message_v2", gcm, {"msg": "hello"}, "A256GCM, 12-byte IV"),
        (
            "message_v2",
            gcm,
            {"msg": "Grüße ☃ 🚀", "attachments": [{"title": "a.txt", "type": "file"}]},
            "A256GCM, non-ASCII text (UTF-8) and attachments",
        ),
        (
            "message_v2",
            cbc,
            {"msg": "legacy key, current client"},
            "v2 envelope under a legacy A128CBC key: 16-byte IV, AES-CBC (crypto/aes.ts)",
        ),
        ("message_v1", cbc, {"msg": "legacy message"}, "rc.v1.aes-sha2: kid(12) + b64(iv16||ct)"),
        ("message_v1", cbc, {"msg": "ümlaut", "attachments": []}, "rc.v1.aes-sha2, non-ASCII"),
    ]
    cases: list[dict[str, Any]] = []
    for kind, room_key, plaintext, description in specs:
        if kind == "message_v1":
            content = encrypt_message_v1(room_key, plaintext, entropy)
        else:
            content = backend.encrypt_message(room_key, plaintext, entropy)
        cases.append(
            {
                "kind": kind,
                "description": description,
                "kid": room_key.kid,
                "room_key_jwk": room_key_jwk(room_key),
                "content": content,
                "plaintext": plaintext,
            }
        )
    return cases


def make_vectors(seed: int = 0) -> dict[str, Any]:
    """The vector document for ``seed`` (see the module docstring)."""
    entropy = random.Random(seed)
    backend = RealBackend()
    cases = (
        _private_key_cases(backend, entropy)
        + _room_key_cases(backend, entropy)
        + _message_cases(backend, entropy)
    )
    return {
        "comment": (
            "Rocket.Chat E2EE formats (keysim spec section 1), made by "
            "protocol.crypto.vectors.make_vectors with the real backend; "
            f"v2 private keys use {codec.V2_ITERATIONS} PBKDF2 iterations"
        ),
        "seed": seed,
        "cases": cases,
    }


def dumps_vectors(document: dict[str, Any]) -> str:
    """The checked-in text form: two-space indent, sorted keys, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
