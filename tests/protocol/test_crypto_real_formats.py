"""The real backend speaks Rocket.Chat's exact formats (spec §1), checked in both directions.

* The code opens every case of the checked-in ``tests/vectors/e2ee.json``, and regenerates it.
* An independent decoder, written below directly against cryptography's primitives (PBKDF2HMAC,
  AESGCM, AES-CBC, RSA-OAEP from JWK numbers) and sharing no code with ``protocol.crypto``, opens
  the vectors and what the code produces now; an independent encoder writes RC-format texts the
  code must open.
* Exact format details: blob members and order, salt ``v2:<uid>:<uuid>``, IV sizes, 100,000
  iterations, 344-character wrapped suffix, UUID kids, JWK members and ``alg`` values.
"""

from __future__ import annotations

import base64
import json
import random
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from protocol.crypto import KeyPair, RealBackend, RoomKey
from protocol.crypto.primes import is_probable_prime
from protocol.crypto.real import (
    encrypt_message_v1,
    generate_room_key_v1,
    private_jwk,
    private_key_from_jwk,
    room_key_from_jwk,
    room_key_jwk,
)
from protocol.crypto.vectors import dumps_vectors, make_vectors
from protocol.errors import CryptoError

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "e2ee.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
CASES: list[dict[str, Any]] = VECTORS["cases"]
UID = "Hb9tq3XkQ7mFzWc2e"
PASSWORD = "Grüße aus Köln"
B64_344 = re.compile(r"[A-Za-z0-9+/]{342}==")
PUBLIC_MEMBERS = ["alg", "e", "ext", "key_ops", "kty", "n"]
PRIVATE_MEMBERS = ["alg", "d", "dp", "dq", "e", "ext", "key_ops", "kty", "n", "p", "q", "qi"]

# -- the independent implementation ------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def unb64url(text: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text), "JWK fields are unpadded base64url"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_int(text: str) -> int:
    return int.from_bytes(unb64url(text), "big")


def int_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def pbkdf2(password: str, salt: str, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(hashes.SHA256(), 32, salt.encode("latin-1"), iterations)
    return kdf.derive(password.encode("latin-1"))


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = block_padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = block_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def rsa_private(jwk: dict[str, Any]) -> rsa.RSAPrivateKey:
    """From JWK numbers, with OpenSSL's full key validation (primality included)."""
    n, e, d, p, q, dp, dq, qi = (jwk_int(jwk[k]) for k in ("n", "e", "d", "p", "q", "dp", "dq", "qi"))
    return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()


def rsa_public(jwk_text: str) -> rsa.RSAPublicKey:
    jwk = json.loads(jwk_text)
    return rsa.RSAPublicNumbers(jwk_int(jwk["e"]), jwk_int(jwk["n"])).public_key()


def open_blob(blob: str, user_id: str, password: str) -> str:
    """keychain.ts decryptKey: returns the private JWK *text*."""
    stored = json.loads(blob)
    if "$binary" in stored:
        raw = unb64(stored["$binary"])
        key = pbkdf2(password, user_id, 1000)
        return cbc_decrypt(key, raw[:16], raw[16:]).decode("latin-1")
    key = pbkdf2(password, stored["salt"], stored["iterations"])
    plain = AESGCM(key).decrypt(unb64(stored["iv"]), unb64(stored["ciphertext"]), None)
    return plain.decode("latin-1")


def seal_blob_v2(jwk_text: str, user_id: str, password: str, *, iterations: int) -> str:
    salt = f"v2:{user_id}:{uuid.UUID(int=7, version=4)}"
    iv = bytes(range(12))
    ct = AESGCM(pbkdf2(password, salt, iterations)).encrypt(iv, jwk_text.encode("latin-1"), None)
    # another member order and whitespace: readers must not depend on either
    return json.dumps({"salt": salt, "iterations": iterations, "ciphertext": b64(ct), "iv": b64(iv)})


def seal_blob_v1(jwk_text: str, user_id: str, password: str) -> str:
    iv = bytes(range(16))
    ct = cbc_encrypt(pbkdf2(password, user_id, 1000), iv, jwk_text.encode("latin-1"))
    return json.dumps({"$binary": b64(iv + ct)})


def unwrap(wrapped: str, member_private_jwk: dict[str, Any]) -> tuple[str, str]:
    """prefixed.ts + rsa.ts decrypt: returns (kid, room-key JWK *text*)."""
    kid, suffix = wrapped[:-344], wrapped[-344:]
    plain = rsa_private(member_private_jwk).decrypt(unb64(suffix), OAEP)
    return kid, plain.decode("latin-1")


def wrap(kid: str, room_jwk_text: str, member_public_key: str) -> str:
    return kid + b64(rsa_public(member_public_key).encrypt(room_jwk_text.encode("latin-1"), OAEP))


def open_message(content: dict[str, Any], room_jwk: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """content.ts decodeEncryptedContent + aes.ts decrypt (the key's algorithm decides)."""
    if content["algorithm"] == "rc.v1.aes-sha2":
        kid, raw = content["ciphertext"][:12], unb64(content["ciphertext"][12:])
        iv, ct = raw[:16], raw[16:]
    else:
        assert content["algorithm"] == "rc.v2.aes-sha2"
        kid, iv, ct = content["kid"], unb64(content["iv"]), unb64(content["ciphertext"])
    secret = unb64url(room_jwk["k"])
    if room_jwk["alg"] == "A256GCM":
        plain = AESGCM(secret).decrypt(iv, ct, None)
    else:
        assert room_jwk["alg"] == "A128CBC"
        plain = cbc_decrypt(secret, iv, ct)
    return kid, json.loads(plain.decode("utf-8"))


def seal_message(
    room_jwk: dict[str, Any], kid: str, plaintext: dict[str, Any], *, v1: bool
) -> dict[str, Any]:
    data = json.dumps(plaintext).encode("utf-8")
    secret = unb64url(room_jwk["k"])
    if v1:
        iv = bytes(16)
        return {"algorithm": "rc.v1.aes-sha2", "ciphertext": kid + b64(iv + cbc_encrypt(secret, iv, data))}
    iv = bytes(12)
    return {
        "algorithm": "rc.v2.aes-sha2",
        "kid": kid,
        "iv": b64(iv),
        "ciphertext": b64(AESGCM(secret).encrypt(iv, data, None)),
    }


def compact_sorted(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


# -- shared fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> RealBackend:
    return RealBackend()


@pytest.fixture(scope="module")
def pair(backend: RealBackend) -> KeyPair:
    return backend.generate_key_pair(random.Random(2024))


# -- the checked-in vectors ----------------------------------------------------------------------------


def test_vector_file_covers_every_kind() -> None:
    kinds = Counter(case["kind"] for case in CASES)
    for kind in ("private_key_v2", "private_key_v1", "room_key", "message_v2", "message_v1"):
        assert kinds[kind] >= 2, kind
    assert VECTORS["seed"] == 0
    assert VECTORS_PATH.read_text() == dumps_vectors(VECTORS)  # canonical text form


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c['kind']}" for i, c in enumerate(CASES)])
def test_code_and_independent_decoder_open_every_vector(backend: RealBackend, case: dict[str, Any]) -> None:
    kind = case["kind"]
    if kind.startswith("private_key"):
        opened = backend.decrypt_private_key(
            case["private_key"], user_id=case["user_id"], password=case["password"]
        )
        assert private_jwk(opened) == case["private_jwk"]
        assert backend.public_key_text(opened) == case["public_key"]
        text = open_blob(case["private_key"], case["user_id"], case["password"])
        assert json.loads(text) == case["private_jwk"]
        assert ("$binary" in json.loads(case["private_key"])) == (kind == "private_key_v1")
    elif kind == "room_key":
        member = private_key_from_jwk(case["member_private_jwk"])
        room_key = backend.unwrap_room_key(case["wrapped"], member)
        assert room_key.kid == case["kid"] == backend.wrapped_kid(case["wrapped"])
        assert room_key_jwk(room_key) == case["room_key_jwk"]
        assert backend.public_key_text(member) == case["member_public_key"]
        kid, text = unwrap(case["wrapped"], case["member_private_jwk"])
        assert (kid, json.loads(text)) == (case["kid"], case["room_key_jwk"])
    else:
        assert kind in ("message_v2", "message_v1")
        room_key = room_key_from_jwk(case["kid"], case["room_key_jwk"])
        assert backend.decrypt_message(case["content"], room_key) == case["plaintext"]
        assert backend.message_kid(case["content"]) == case["kid"]
        assert open_message(case["content"], case["room_key_jwk"]) == (case["kid"], case["plaintext"])
        expected_alg = "rc.v1.aes-sha2" if kind == "message_v1" else "rc.v2.aes-sha2"
        assert case["content"]["algorithm"] == expected_alg


def test_vectors_are_reproducible() -> None:
    fresh = make_vectors(0)
    for old, new in zip(CASES, fresh["cases"], strict=True):
        if "wrapped" in old:  # RSA-OAEP padding is random inside cryptography
            assert old["wrapped"][:-344] == new["wrapped"][:-344]
            assert old["wrapped"] != new["wrapped"]
            old, new = {**old, "wrapped": None}, {**new, "wrapped": None}
        assert old == new
    assert make_vectors(1)["cases"][0] != CASES[0]


# -- fresh outputs, opened independently ------------------------------------------------------------------


def test_key_pair_jwk_format(backend: RealBackend, pair: KeyPair) -> None:
    public = json.loads(pair.public_key)
    assert list(public) == PUBLIC_MEMBERS  # Chrome's exportKey('jwk') order
    assert pair.public_key == compact_sorted(public)  # JSON.stringify: compact
    assert public["alg"] == "RSA-OAEP-256" and public["kty"] == "RSA" and public["ext"] is True
    assert public["e"] == "AQAB" and public["key_ops"] == ["encrypt"]
    assert len(unb64url(public["n"])) == 256 and jwk_int(public["n"]).bit_length() == 2048
    secret = private_jwk(pair.private_key)
    assert sorted(secret) == PRIVATE_MEMBERS
    assert secret["alg"] == "RSA-OAEP-256" and secret["key_ops"] == ["decrypt"]
    assert secret["n"] == public["n"] and secret["e"] == "AQAB"
    # the seeded key is a genuine RSA key: OpenSSL's full check (primality of p and q) accepts it
    full = rsa_private(secret)
    assert full.key_size == 2048 and full.private_numbers().public_numbers.e == 65537


def test_fresh_v2_blob(backend: RealBackend, pair: KeyPair) -> None:
    blob = backend.encrypt_private_key(
        pair.private_key, user_id=UID, password=PASSWORD, entropy=random.Random(1)
    )
    stored = json.loads(blob)
    assert blob == json.dumps(stored, separators=(",", ":"), ensure_ascii=False)
    assert list(stored) == ["iv", "ciphertext", "salt", "iterations"]
    assert stored["iterations"] == 100_000
    match = re.fullmatch(r"v2:(.+):([0-9a-f-]{36})", stored["salt"])
    assert match and match[1] == UID and uuid.UUID(match[2]).version == 4
    assert len(unb64(stored["iv"])) == 12
    text = open_blob(blob, UID, PASSWORD)
    assert text == compact_sorted(private_jwk(pair.private_key))
    assert len(unb64(stored["ciphertext"])) == len(text) + 16  # GCM tag appended


def test_fresh_v1_blob(backend: RealBackend, pair: KeyPair) -> None:
    blob = backend.encrypt_private_key_v1(
        pair.private_key, user_id=UID, password=PASSWORD, entropy=random.Random(2)
    )
    stored = json.loads(blob)
    assert list(stored) == ["$binary"]
    raw = unb64(stored["$binary"])
    assert len(raw) % 16 == 0 and len(raw) > 16
    assert json.loads(open_blob(blob, UID, PASSWORD)) == private_jwk(pair.private_key)


def test_fresh_wrapped_key(backend: RealBackend, pair: KeyPair) -> None:
    room_key = backend.generate_room_key(random.Random(3))
    assert uuid.UUID(room_key.kid).version == 4 and str(uuid.UUID(room_key.kid)) == room_key.kid
    jwk = room_key_jwk(room_key)
    assert list(jwk) == ["alg", "ext", "k", "key_ops", "kty"]
    assert jwk["alg"] == "A256GCM" and jwk["kty"] == "oct" and jwk["ext"] is True
    assert jwk["key_ops"] == ["encrypt", "decrypt"] and len(unb64url(jwk["k"])) == 32
    wrapped = backend.wrap_room_key(room_key, pair.public_key, random.Random(4))
    assert wrapped.startswith(room_key.kid) and B64_344.fullmatch(wrapped[len(room_key.kid) :])
    kid, text = unwrap(wrapped, private_jwk(pair.private_key))
    assert kid == room_key.kid and text == compact_sorted(jwk)


def test_fresh_legacy_room_key(backend: RealBackend, pair: KeyPair) -> None:
    room_key = generate_room_key_v1(random.Random(5))
    jwk = room_key_jwk(room_key)
    assert jwk["alg"] == "A128CBC" and len(unb64url(jwk["k"])) == 16
    assert re.fullmatch(r"[0-9a-f]{12}", room_key.kid)
    wrapped = backend.wrap_room_key(room_key, pair.public_key, random.Random(6))
    assert len(wrapped) == 12 + 344
    assert backend.unwrap_room_key(wrapped, pair.private_key) == room_key


@pytest.mark.parametrize("legacy_key", [False, True], ids=["A256GCM", "A128CBC"])
def test_fresh_messages(backend: RealBackend, legacy_key: bool) -> None:
    entropy = random.Random(7)
    room_key = generate_room_key_v1(entropy) if legacy_key else backend.generate_room_key(entropy)
    body = {"msg": "Grüße ☃ 🚀", "attachments": [{"title": "x"}]}
    content = backend.encrypt_message(room_key, body, entropy)
    assert list(content) == ["algorithm", "kid", "iv", "ciphertext"]
    assert content["algorithm"] == "rc.v2.aes-sha2" and content["kid"] == room_key.kid
    # crypto/aes.ts encrypt: 12-byte IV for GCM, 16 for a legacy CBC key
    assert len(unb64(content["iv"])) == (16 if legacy_key else 12)
    utf8 = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if not legacy_key:
        assert len(unb64(content["ciphertext"])) == len(utf8) + 16
    assert open_message(content, room_key_jwk(room_key)) == (room_key.kid, body)
    if legacy_key:
        v1 = encrypt_message_v1(room_key, body, entropy)
        assert list(v1) == ["algorithm", "ciphertext"] and v1["algorithm"] == "rc.v1.aes-sha2"
        assert v1["ciphertext"][:12] == room_key.kid
        assert len(unb64(v1["ciphertext"][12:])) % 16 == 0
        assert open_message(v1, room_key_jwk(room_key)) == (room_key.kid, body)
        assert backend.decrypt_message(v1, room_key) == body


# -- the other direction: independently written RC texts, opened by the code ------------------------------


def test_code_opens_independent_texts(backend: RealBackend, pair: KeyPair) -> None:
    jwk_text = compact_sorted(private_jwk(pair.private_key))
    for blob in (
        seal_blob_v2(jwk_text, UID, PASSWORD, iterations=100_000),
        seal_blob_v2(jwk_text, UID, PASSWORD, iterations=1_234),  # RC reads the count from the blob
        seal_blob_v1(jwk_text, UID, PASSWORD),
    ):
        opened = backend.decrypt_private_key(blob, user_id=UID, password=PASSWORD)
        assert backend.public_key_text(opened) == pair.public_key
    secret = b64url(bytes(range(32)))
    # Firefox-like member order, reversed key_ops: still an A256GCM key to crypto/aes.ts
    room_text = json.dumps(
        {"kty": "oct", "k": secret, "alg": "A256GCM", "key_ops": ["decrypt", "encrypt"], "ext": True}
    )
    kid = str(uuid.UUID(int=99, version=4))
    room_key = backend.unwrap_room_key(wrap(kid, room_text, pair.public_key), pair.private_key)
    assert room_key == room_key_from_jwk(kid, json.loads(room_text))
    for v1 in (False, True):
        room_jwk = {"alg": "A128CBC", "k": b64url(bytes(16)), "kty": "oct"} if v1 else json.loads(room_text)
        key_id = "abcdef012345" if v1 else kid
        content = seal_message(room_jwk, key_id, {"msg": "from elsewhere"}, v1=v1)
        key = room_key_from_jwk(key_id, room_jwk)
        assert backend.decrypt_message(content, key) == {"msg": "from elsewhere"}
        assert backend.message_kid(content) == key_id
    # a public key JWK text written with other whitespace and member order is still usable
    public = json.loads(pair.public_key)
    loose = json.dumps(dict(reversed(list(public.items()))), indent=1)
    wrapped = backend.wrap_room_key(room_key, loose, random.Random(0))
    assert json.loads(unwrap(wrapped, private_jwk(pair.private_key))[1]) == room_key_jwk(room_key)
    assert backend.fingerprint(loose) == backend.fingerprint(pair.public_key)


# -- real-backend specifics ------------------------------------------------------------------------------


def test_fingerprint_is_the_rfc7638_thumbprint(backend: RealBackend) -> None:
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
        "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368Q"
        "QMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2"
        "NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    text = json.dumps({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RSA-OAEP-256"})
    assert backend.fingerprint(text) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"  # RFC 7638 §3.1


def test_public_keys_webcrypto_would_refuse(backend: RealBackend, pair: KeyPair) -> None:
    room_key = backend.generate_room_key(random.Random(0))
    public = json.loads(pair.public_key)
    small = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    refused = [
        {**public, "alg": "RSA-OAEP"},  # SHA-1 OAEP
        {**public, "kty": "EC"},
        {**public, "n": int_b64url(small.n)},  # prefixed.ts needs 256-byte ciphertexts
        {**public, "n": public["n"] + "=="},
        {**public, "e": "AQAA"},
    ]
    for jwk in refused:
        with pytest.raises(CryptoError):
            backend.wrap_room_key(room_key, json.dumps(jwk), random.Random(0))
    no_alg = {k: v for k, v in public.items() if k != "alg"}  # WebCrypto accepts a missing alg
    assert backend.wrap_room_key(room_key, json.dumps(no_alg), random.Random(0)).startswith(room_key.kid)


def test_inconsistent_jwks_are_refused(pair: KeyPair) -> None:
    good = private_jwk(pair.private_key)
    for change in (
        {"dp": good["dq"]},
        {"qi": "AQ"},
        {"p": good["q"]},
        {"kty": "oct"},
        {"alg": "RS256"},
        {"d": None},
    ):
        with pytest.raises(CryptoError):
            private_key_from_jwk({**good, **change})
    with pytest.raises(CryptoError):
        private_key_from_jwk([good])
    room = {"alg": "A256GCM", "ext": True, "k": b64url(bytes(32)), "key_ops": ["encrypt"], "kty": "oct"}
    for change in ({"alg": "A128GCM"}, {"k": b64url(bytes(16))}, {"kty": "RSA"}, {"k": "!!"}):
        with pytest.raises(CryptoError):
            room_key_from_jwk("kid", {**room, **change})
    assert isinstance(room_key_from_jwk("kid", room), RoomKey)


def test_miller_rabin() -> None:
    primes = [2, 3, 5, 37, 41, 65537, 2**61 - 1, 2**127 - 1, 2**521 - 1]
    # 561, 41041: Carmichael numbers; 2047, 3215031751: strong pseudoprimes to small bases
    composites = [0, 1, 4, 9, 561, 41041, 2047, 3215031751, 2**128 + 1, (2**61 - 1) * (2**89 - 1)]
    assert all(is_probable_prime(p) for p in primes)
    assert not any(is_probable_prime(c) for c in composites)
