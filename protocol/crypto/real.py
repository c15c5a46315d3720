"""The real backend: Rocket.Chat's exact E2EE bytes (spec §1), built on ``cryptography``.

Theory of operation: this is the only module of keysim that imports ``cryptography``.  It mirrors the
WebCrypto calls of RC's web client (paths relative to ``apps/meteor/client/lib/e2ee/``):

* key pair — RSA-OAEP, 2048 bits, e = 65537, SHA-256 (``crypto/rsa.ts``), exported as JWK with
  ``alg: "RSA-OAEP-256"``.  JWK texts are written as Chrome's ``exportKey('jwk')`` + ``JSON.stringify``
  writes them: compact, members in alphabetical order.
* private key at rest — v2: PBKDF2-HMAC-SHA-256(password, ``v2:<uid>:<uuid>``, 100,000) -> AES-GCM-256
  with a 12-byte IV over the private JWK text; v1 (read, plus a legacy writer): PBKDF2 with salt = the
  user id and 1,000 iterations -> AES-CBC-256 with a 16-byte IV.  As in ``keychain.ts``, the IV length
  picks the cipher when reading (16 = CBC, otherwise GCM).
* room key — AES-GCM-256 JWK ``A256GCM`` with a random UUID kid (``rocketchat.e2e.room.ts``); legacy
  room keys are AES-CBC-128 ``A128CBC`` with a 12-character kid (``crypto/aes.ts`` imports both).
* wrapped room key — ``kid + base64(RSA-OAEP-SHA-256(JWK text))`` (``prefixed.ts``).
* message — ``{"algorithm": "rc.v2.aes-sha2", "kid", "iv", "ciphertext"}``; the cipher is the room
  key's own (``crypto/aes.ts`` ``encrypt``/``decrypt`` use ``key.algorithm``), so a legacy CBC key
  writes v2-shaped content with a 16-byte IV, as the current web client does.  Legacy ``rc.v1``
  content (``kid + b64(iv[16] || ct)``) is read, and written only by :func:`encrypt_message_v1`.

Randomness: IVs, salts, kids and room keys come from the injected entropy.  RSA keys come from OpenSSL
under ``random.SystemRandom`` and from :mod:`protocol.crypto.primes` under a seeded ``random.Random``.
OAEP padding randomness is internal to ``cryptography`` and not reproducible.

Every ``cryptography``/``json``/``binascii`` exception is translated into CryptoError here.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from protocol.crypto import codec
from protocol.crypto.base import CryptoBackend, KeyPair, PrivateKey, RoomKey
from protocol.crypto.primes import generate_rsa_primes
from protocol.entropy import Entropy, random_bytes, uuid4
from protocol.errors import CryptoError, ValidationError

__all__ = [
    "AesKey",
    "RealBackend",
    "encrypt_message_v1",
    "generate_room_key_v1",
    "private_jwk",
    "private_key_from_jwk",
    "public_jwk",
    "room_key_from_jwk",
    "room_key_jwk",
]

RSA_ALG: Final = "RSA-OAEP-256"
MODULUS_BITS: Final = 2048
PUBLIC_EXPONENT: Final = 65537
GCM_ALG: Final = "A256GCM"
CBC_ALG: Final = "A128CBC"
_AES_KEY_BYTES: Final = {GCM_ALG: 32, CBC_ALG: 16}
_PRIVATE_FIELDS: Final = ("n", "e", "d", "p", "q", "dp", "dq", "qi")
# the exceptions ``cryptography`` raises on bad input (InvalidTag: a GCM tag did not verify)
_CRYPTO_ERRORS: Final = (InvalidTag, ValueError, TypeError, OverflowError)


@dataclass(frozen=True, slots=True)
class AesKey:
    """The real backend's room-key handle: the JWK ``alg`` and the raw secret."""

    alg: str
    secret: bytes = field(repr=False)

    def jwk(self) -> dict[str, Any]:
        return {
            "alg": self.alg,
            "ext": True,
            "k": codec.b64url_encode(self.secret),
            "key_ops": ["encrypt", "decrypt"],
            "kty": "oct",
        }


def _jwk_text(jwk: dict[str, Any]) -> str:
    # Chrome's exportKey('jwk') lists members alphabetically; JSON.stringify keeps that order.
    return codec.json_text(dict(sorted(jwk.items())))


# -- RSA JWK conversion (crypto/rsa.ts IPublicJwk / IPrivateJwk) ----------------------------------


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> dict[str, Any]:
    numbers = (
        key.public_key().public_numbers() if isinstance(key, rsa.RSAPrivateKey) else (key.public_numbers())
    )
    return {
        "alg": RSA_ALG,
        "e": codec.int_to_b64url(numbers.e),
        "ext": True,
        "key_ops": ["encrypt"],
        "kty": "RSA",
        "n": codec.int_to_b64url(numbers.n),
    }


def private_jwk(key: PrivateKey) -> dict[str, Any]:
    """The private JWK object of a real private-key handle (what the v2 blob encrypts)."""
    numbers = _rsa_of(key).private_numbers()
    return {
        "alg": RSA_ALG,
        "d": codec.int_to_b64url(numbers.d),
        "dp": codec.int_to_b64url(numbers.dmp1),
        "dq": codec.int_to_b64url(numbers.dmq1),
        "e": codec.int_to_b64url(numbers.public_numbers.e),
        "ext": True,
        "key_ops": ["decrypt"],
        "kty": "RSA",
        "n": codec.int_to_b64url(numbers.public_numbers.n),
        "p": codec.int_to_b64url(numbers.p),
        "q": codec.int_to_b64url(numbers.q),
        "qi": codec.int_to_b64url(numbers.iqmp),
    }


def _check_rsa_jwk(jwk: dict[str, Any], what: str) -> None:
    # WebCrypto's importKey with {name: 'RSA-OAEP', hash: 'SHA-256'} rejects another alg.
    if jwk.get("kty") != "RSA":
        raise CryptoError(message=f"{what}: kty is not RSA")
    if "alg" in jwk and jwk["alg"] != RSA_ALG:
        raise CryptoError(message=f"{what}: alg is not {RSA_ALG}")


def private_key_from_jwk(jwk: object) -> rsa.RSAPrivateKey:
    """Import a private JWK object; CryptoError unless it is a consistent RSA-2048 key."""
    if not isinstance(jwk, dict):
        raise CryptoError(message="private key: JWK is not an object")
    _check_rsa_jwk(jwk, "private key")
    n, e, d, p, q, dp, dq, qi = (codec.b64url_to_int(jwk.get(k), "private key") for k in _PRIVATE_FIELDS)
    # Consistency checked here with cheap integer arithmetic; OpenSSL's full check re-tests the
    # primes (~25 ms) and buys nothing for a blob its owner wrote.
    if (
        n.bit_length() != MODULUS_BITS
        or min(p, q) < 3
        or p * q != n
        or e < 3
        or not 0 < d < n
        or dp != d % (p - 1)
        or dq != d % (q - 1)
        or e * dp % (p - 1) != 1
        or e * dq % (q - 1) != 1
        or qi * q % p != 1
    ):
        raise CryptoError(message="private key: inconsistent or not 2048-bit RSA")
    numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
    try:
        return numbers.private_key(unsafe_skip_rsa_key_validation=True)
    except _CRYPTO_ERRORS:  # pragma: no cover - the checks above exclude OpenSSL's objections
        raise CryptoError(message="private key: rejected by the RSA implementation") from None


def _public_key_from_text(text: object) -> rsa.RSAPublicKey:
    jwk = codec.parse_json_object(text, "public key")
    _check_rsa_jwk(jwk, "public key")
    n = codec.b64url_to_int(jwk.get("n"), "public key")
    e = codec.b64url_to_int(jwk.get("e"), "public key")
    # prefixed.ts insists on 256-byte ciphertexts: only 2048-bit moduli are usable
    if n.bit_length() != MODULUS_BITS or e < 3 or e % 2 == 0:
        raise CryptoError(message="public key: not a 2048-bit RSA key")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except _CRYPTO_ERRORS:  # pragma: no cover - excluded by the checks above
        raise CryptoError(message="public key: rejected by the RSA implementation") from None


def _rsa_of(handle: PrivateKey) -> rsa.RSAPrivateKey:
    if not isinstance(handle, rsa.RSAPrivateKey):
        raise ValidationError(message=f"not a real-backend private key: {type(handle).__name__}")
    return handle


def _key_from_primes(p: int, q: int) -> rsa.RSAPrivateKey:
    e = PUBLIC_EXPONENT
    d = rsa.rsa_recover_private_exponent(e, p, q)  # d = e^-1 mod lcm(p-1, q-1), as OpenSSL
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    # consistent by construction, so OpenSSL's slow re-check is skipped
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


# -- AES room keys -------------------------------------------------------------------------------


def room_key_jwk(room_key: RoomKey) -> dict[str, Any]:
    """The JWK object of a real room key (what gets wrapped)."""
    return _aes_of(room_key).jwk()


def room_key_from_jwk(kid: str, jwk: object) -> RoomKey:
    """Import an ``A256GCM`` or ``A128CBC`` JWK (crypto/aes.ts ``importKey``); CryptoError if bad."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "oct":
        raise CryptoError(message="room key: not an oct JWK")
    alg = jwk.get("alg")
    if alg not in _AES_KEY_BYTES:
        raise CryptoError(message="room key: alg must be A256GCM or A128CBC")
    secret = codec.b64url_decode(jwk.get("k"), "room key")
    if len(secret) != _AES_KEY_BYTES[alg]:
        raise CryptoError(message=f"room key: wrong key length for {alg}")
    return RoomKey(kid=codec.require_str(kid, "kid"), key=AesKey(alg, secret))


def _aes_of(room_key: object) -> AesKey:
    if not isinstance(room_key, RoomKey) or not isinstance(room_key.key, AesKey):
        raise ValidationError(message="not a real-backend RoomKey")
    return room_key.key


def generate_room_key_v1(entropy: Entropy) -> RoomKey:
    """LEGACY: an AES-CBC-128 room key whose kid is the first 12 hex digits of SHA-256 of its JWK
    text (rocketchat.e2e.room.ts in 7.0, ``createSha256HashFromText(...).slice(0, 12)``)."""
    key = AesKey(CBC_ALG, random_bytes(codec.require_entropy(entropy), 16))
    kid = hashlib.sha256(_jwk_text(key.jwk()).encode("utf-8")).hexdigest()[: codec.V1_KID_LENGTH]
    return RoomKey(kid=kid, key=key)


# -- symmetric primitives ------------------------------------------------------------------------


def _cbc_encrypt(secret: bytes, iv: bytes, data: bytes) -> bytes:
    padder = block_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def _aes_decrypt(secret: bytes, iv: bytes, data: bytes, *, cbc: bool, what: str) -> bytes:
    try:
        if not cbc:
            return AESGCM(secret).decrypt(iv, data, None)
        decryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = block_padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except _CRYPTO_ERRORS:
        raise CryptoError(message=f"{what}: does not decrypt") from None


def _pbkdf2(password: bytes, salt: bytes, iterations: int) -> bytes:
    # crypto/pbkdf2.ts deriveBits: PBKDF2, SHA-256, 256 bits
    return PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(password)


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


def _oaep() -> padding.OAEP:
    # crypto/rsa.ts: RSA-OAEP with hash SHA-256 (WebCrypto uses the same hash for MGF1), no label
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


# -- legacy message writer -----------------------------------------------------------------------


def encrypt_message_v1(room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy) -> dict[str, Any]:
    """LEGACY writer: ``{"algorithm": "rc.v1.aes-sha2", "ciphertext": kid + b64(iv[16] || ct)}``
    under an ``A128CBC`` key with a 12-character kid (rocketchat.e2e.room.ts ``encryptText``, 7.0)."""
    aes = _aes_of(room_key)
    if aes.alg != CBC_ALG or len(room_key.kid) != codec.V1_KID_LENGTH:
        raise ValidationError(message="v1 messages need an A128CBC room key with a 12-char kid")
    iv = random_bytes(codec.require_entropy(entropy), 16)
    ct = _cbc_encrypt(aes.secret, iv, codec.dump_message(plaintext))
    return {"algorithm": codec.ALGORITHM_V1, "ciphertext": room_key.kid + codec.b64encode(iv + ct)}


# -- the backend ---------------------------------------------------------------------------------


class RealBackend(CryptoBackend):
    """Rocket.Chat's formats, byte for byte (see the module docstring)."""

    name = "real"

    def generate_key_pair(self, entropy: Entropy) -> KeyPair:
        entropy = codec.require_entropy(entropy)
        if isinstance(entropy, random.SystemRandom):
            key = rsa.generate_private_key(PUBLIC_EXPONENT, MODULUS_BITS)
        else:
            key = _key_from_primes(*generate_rsa_primes(entropy, modulus_bits=MODULUS_BITS))
        return KeyPair(public_key=_jwk_text(public_jwk(key)), private_key=key)

    def public_key_text(self, private_key: PrivateKey) -> str:
        return _jwk_text(public_jwk(_rsa_of(private_key)))

    def fingerprint(self, public_key: str) -> str:
        # RFC 7638 JWK thumbprint: SHA-256 of the required members in lexicographic order
        key = _public_key_from_text(public_key).public_numbers()
        members = {"e": codec.int_to_b64url(key.e), "kty": "RSA", "n": codec.int_to_b64url(key.n)}
        return codec.b64url_encode(hashlib.sha256(codec.json_text(members).encode()).digest())

    def sign(self, private_key: PrivateKey, data: bytes) -> str:
        # keysim extension: RSA-PSS (SHA-256, maximal salt) on the user's RSA key.  A production
        # design would give the user a separate signing key; WebCrypto will not sign with an
        # RSA-OAEP key.
        signature = _rsa_of(private_key).sign(bytes(data), _pss(), hashes.SHA256())
        return codec.b64encode(signature)

    def verify(self, public_key: str, data: bytes, signature: str) -> bool:
        try:
            key = _public_key_from_text(public_key)
            key.verify(codec.b64decode(signature, "signature"), bytes(data), _pss(), hashes.SHA256())
        except (InvalidSignature, CryptoError, ValidationError, TypeError, ValueError):
            return False
        return True

    def encrypt_private_key(
        self, private_key: PrivateKey, *, user_id: str, password: str, entropy: Entropy
    ) -> str:
        # keychain.ts encryptKey: always v2
        key = _rsa_of(private_key)
        pw = codec.latin1(password, "password")
        salt = codec.new_v2_salt(user_id, codec.require_entropy(entropy))
        iv = random_bytes(entropy, 12)
        derived = _pbkdf2(pw, codec.latin1(salt, "salt"), codec.V2_ITERATIONS)
        ct = AESGCM(derived).encrypt(iv, _jwk_text(private_jwk(key)).encode("latin-1"), None)
        # JSON.stringify of {iv, ciphertext, salt, iterations}, in that member order
        return codec.private_blob_v2(iv, ct, salt)

    def encrypt_private_key_v1(
        self, private_key: PrivateKey, *, user_id: str, password: str, entropy: Entropy
    ) -> str:
        key = _rsa_of(private_key)
        pw = codec.latin1(password, "password")
        salt = codec.latin1(user_id, "user_id")
        if not salt:
            raise ValidationError(message="user_id must not be empty")
        iv = random_bytes(codec.require_entropy(entropy), 16)
        derived = _pbkdf2(pw, salt, codec.V1_ITERATIONS)
        ct = _cbc_encrypt(derived, iv, _jwk_text(private_jwk(key)).encode("latin-1"))
        return codec.private_blob_v1(iv, ct)

    def decrypt_private_key(self, blob: str, *, user_id: str, password: str) -> PrivateKey:
        pw = codec.latin1(password, "password")
        iv, ct, salt, iterations = codec.parse_private_blob(blob, user_id)
        derived = _pbkdf2(pw, salt, iterations)
        # keychain.ts decryptKey: a 16-byte IV means AES-CBC, anything else AES-GCM
        plain = _aes_decrypt(derived, iv, ct, cbc=len(iv) == 16, what="private key blob")
        jwk = codec.parse_json_object(plain.decode("latin-1"), "private key")
        return private_key_from_jwk(jwk)

    def generate_room_key(self, entropy: Entropy) -> RoomKey:
        entropy = codec.require_entropy(entropy)
        secret = random_bytes(entropy, 32)
        return RoomKey(kid=uuid4(entropy), key=AesKey(GCM_ALG, secret))

    def generate_room_key_v1(self, entropy: Entropy) -> RoomKey:
        return generate_room_key_v1(entropy)

    def wrap_room_key(self, room_key: RoomKey, public_key: str, entropy: Entropy) -> str:
        # entropy is unused: OAEP's seed is drawn inside cryptography (see the module docstring)
        aes = _aes_of(room_key)
        codec.require_entropy(entropy)
        key = _public_key_from_text(codec.require_str(public_key, "public_key"))
        wrapped = key.encrypt(_jwk_text(aes.jwk()).encode("latin-1"), _oaep())
        return room_key.kid + codec.b64encode(wrapped)

    def unwrap_room_key(self, wrapped: str, private_key: PrivateKey) -> RoomKey:
        key = _rsa_of(private_key)
        kid, data = codec.split_prefixed(wrapped)
        try:
            plain = key.decrypt(data, _oaep())
        except _CRYPTO_ERRORS:
            raise CryptoError(message="wrapped key: not for this key pair") from None
        jwk = codec.parse_json_object(plain.decode("latin-1"), "room key")
        return room_key_from_jwk(kid, jwk)

    def encrypt_message(
        self, room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy
    ) -> dict[str, Any]:
        aes = _aes_of(room_key)
        data = codec.dump_message(plaintext)
        entropy = codec.require_entropy(entropy)
        if aes.alg == GCM_ALG:
            iv = random_bytes(entropy, 12)
            ct = AESGCM(aes.secret).encrypt(iv, data, None)
        else:  # crypto/aes.ts encrypt: a legacy CBC key gets a 16-byte IV, same v2 envelope
            iv = random_bytes(entropy, 16)
            ct = _cbc_encrypt(aes.secret, iv, data)
        return {
            "algorithm": codec.ALGORITHM_V2,
            "kid": room_key.kid,
            "iv": codec.b64encode(iv),
            "ciphertext": codec.b64encode(ct),
        }

    def encrypt_message_v1(
        self, room_key: RoomKey, plaintext: dict[str, Any], entropy: Entropy
    ) -> dict[str, Any]:
        return encrypt_message_v1(room_key, plaintext, entropy)

    def decrypt_message(self, content: dict[str, Any], room_key: RoomKey) -> dict[str, Any]:
        aes = _aes_of(room_key)
        decoded = codec.decode_content(content)
        # crypto/aes.ts decrypt: the key's algorithm decides, not the content's label
        plain = _aes_decrypt(
            aes.secret, decoded.iv, decoded.ciphertext, cbc=aes.alg == CBC_ALG, what="message"
        )
        return codec.load_message(plain)
