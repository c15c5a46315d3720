"""One contract, two backends: every test here runs against ``real`` and ``symbolic``.

The real backend costs ~0.3 s per seeded key pair and ~10 ms per 100k-iteration PBKDF2, so key
pairs are made once per module (``world``) and the Hypothesis properties take few examples there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.crypto import (
    BACKENDS,
    CryptoBackend,
    KeyPair,
    RoomKey,
    codec,
    generate_passphrase,
    get_backend,
)
from protocol.crypto.passphrase import wordlist
from protocol.errors import CryptoError, ProtocolError, ValidationError

UID = "kQ2mX8yZ4bN7cR3aT"
PASSWORD = "correct horse battery staple"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
EXPECTED = (CryptoError, ValidationError)


@dataclass(frozen=True)
class World:
    backend: CryptoBackend
    a: KeyPair
    b: KeyPair
    k1: RoomKey
    k2: RoomKey
    blob_a: str
    blob_a_v1: str
    wrapped_k1_for_a: str
    content_k1: dict[str, Any]
    #: the seed ``a`` was generated from (for the determinism test)
    seed_a: int


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    backend = get_backend(request.param)
    entropy = random.Random(101)
    a = backend.generate_key_pair(random.Random(11))
    b = backend.generate_key_pair(random.Random(12))
    k1, k2 = backend.generate_room_key(entropy), backend.generate_room_key(entropy)
    yield World(
        backend=backend,
        a=a,
        b=b,
        k1=k1,
        k2=k2,
        blob_a=backend.encrypt_private_key(a.private_key, user_id=UID, password=PASSWORD, entropy=entropy),
        blob_a_v1=backend.encrypt_private_key_v1(
            a.private_key, user_id=UID, password=PASSWORD, entropy=entropy
        ),
        wrapped_k1_for_a=backend.wrap_room_key(k1, a.public_key, entropy),
        content_k1=backend.encrypt_message(k1, {"msg": "hello"}, entropy),
        seed_a=11,
    )


def fuzz_settings(w: World, real: int = 15, symbolic: int = 150) -> settings:
    return settings(
        max_examples=real if w.backend.name == "real" else symbolic,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        derandomize=True,
        database=None,
    )


def only_expected(call: Callable[[], object]) -> None:
    """``call`` may succeed or fail, but only with CryptoError/ValidationError."""
    with contextlib.suppress(*EXPECTED):
        call()


def flip(text: str, index: int) -> str:
    """Replace one base64 character by a different one (in the middle: all 6 bits count)."""
    ch = text[index]
    return text[:index] + ("A" if ch != "A" else "B") + text[index + 1 :]


# -- registry --------------------------------------------------------------------------------------


def test_backends_by_name() -> None:
    assert BACKENDS == ("real", "symbolic")
    for name in BACKENDS:
        backend = get_backend(name)
        assert isinstance(backend, CryptoBackend)
        assert backend.name == name


@pytest.mark.parametrize("name", ["", "Real", "openssl", None, 3])
def test_unknown_backend_is_a_validation_error(name: Any) -> None:
    with pytest.raises(ValidationError) as info:
        get_backend(name)
    assert repr(name) in str(info.value)
    assert info.value.code == "error-invalid-params"


# -- key pairs and private-key blobs ---------------------------------------------------------------


def test_key_pair_shape(world: World) -> None:
    w = world
    assert isinstance(w.a.public_key, str)
    assert w.backend.public_key_text(w.a.private_key) == w.a.public_key
    assert w.a.public_key != w.b.public_key
    assert isinstance(json.loads(w.a.public_key), dict)  # a JSON text, as users.e2e.public_key
    assert w.backend.fingerprint(w.a.public_key) != w.backend.fingerprint(w.b.public_key)


def test_private_key_round_trip_v2(world: World) -> None:
    w = world
    stored = json.loads(w.blob_a)
    assert list(stored) == ["iv", "ciphertext", "salt", "iterations"]
    assert stored["iterations"] == 100_000
    prefix, uid, uuid = stored["salt"].split(":")
    assert (prefix, uid) == ("v2", UID) and UUID_RE.fullmatch(uuid)
    assert PASSWORD not in w.blob_a
    opened = w.backend.decrypt_private_key(w.blob_a, user_id=UID, password=PASSWORD)
    assert w.backend.public_key_text(opened) == w.a.public_key
    # v2 carries its own salt: RC ignores the user id when reading it (keychain.ts)
    again = w.backend.decrypt_private_key(w.blob_a, user_id="someone-else", password=PASSWORD)
    assert w.backend.public_key_text(again) == w.a.public_key


def test_private_key_round_trip_v1(world: World) -> None:
    w = world
    assert list(json.loads(w.blob_a_v1)) == ["$binary"]
    opened = w.backend.decrypt_private_key(w.blob_a_v1, user_id=UID, password=PASSWORD)
    assert w.backend.public_key_text(opened) == w.a.public_key
    with pytest.raises(CryptoError):  # v1's salt is the user id
        w.backend.decrypt_private_key(w.blob_a_v1, user_id="someone-else", password=PASSWORD)


@pytest.mark.parametrize("password", ["", "correct horse battery stapl", PASSWORD + " ", "é"])
def test_wrong_password_is_a_crypto_error(world: World, password: str) -> None:
    w = world
    for blob in (w.blob_a, w.blob_a_v1):
        with pytest.raises(CryptoError) as info:
            w.backend.decrypt_private_key(blob, user_id=UID, password=password)
        assert info.value.code == "error-decryption-failed"


def test_latin1_passwords(world: World) -> None:
    w, entropy = world, random.Random(3)
    password = "Grüße ÿ\x00"
    blob = w.backend.encrypt_private_key(w.a.private_key, user_id=UID, password=password, entropy=entropy)
    opened = w.backend.decrypt_private_key(blob, user_id=UID, password=password)
    assert w.backend.public_key_text(opened) == w.a.public_key
    for bad in ("snow ☃", "Ā", "😀"):
        with pytest.raises(ValidationError, match="U\\+00FF"):
            w.backend.encrypt_private_key(w.a.private_key, user_id=UID, password=bad, entropy=entropy)
        with pytest.raises(ValidationError):
            w.backend.decrypt_private_key(w.blob_a, user_id=UID, password=bad)


def test_passphrase_is_a_valid_password(world: World) -> None:
    w, entropy = world, random.Random(4)
    password = generate_passphrase(entropy)
    blob = w.backend.encrypt_private_key(w.b.private_key, user_id=UID, password=password, entropy=entropy)
    opened = w.backend.decrypt_private_key(blob, user_id=UID, password=password)
    assert w.backend.public_key_text(opened) == w.b.public_key


# -- room keys --------------------------------------------------------------------------------------


def test_room_key_round_trip(world: World) -> None:
    w = world
    assert UUID_RE.fullmatch(w.k1.kid) and w.k1 != w.k2 and w.k1.kid != w.k2.kid
    wrapped = w.wrapped_k1_for_a
    assert wrapped.startswith(w.k1.kid) and len(wrapped) == len(w.k1.kid) + 344
    assert w.backend.wrapped_kid(wrapped) == w.k1.kid
    assert w.backend.unwrap_room_key(wrapped, w.a.private_key) == w.k1
    # a key wrapped for B opens with B only
    for_b = w.backend.wrap_room_key(w.k1, w.b.public_key, random.Random(5))
    assert w.backend.unwrap_room_key(for_b, w.b.private_key) == w.k1


def test_room_key_for_a_does_not_open_with_b(world: World) -> None:
    w = world
    with pytest.raises(CryptoError):
        w.backend.unwrap_room_key(w.wrapped_k1_for_a, w.b.private_key)


def test_wrapped_kid_is_the_prefix_and_is_not_authenticated(world: World) -> None:
    # RC reads the kid from the prefix; nothing binds it to the wrapped key (prefixed.ts).
    w = world
    suffix = w.wrapped_k1_for_a[-344:]
    for kid in ("", "0123456789ab", "other-kid"):
        assert w.backend.wrapped_kid(kid + suffix) == kid
        assert w.backend.unwrap_room_key(kid + suffix, w.a.private_key).kid == kid


# -- messages ---------------------------------------------------------------------------------------


def test_message_round_trip(world: World) -> None:
    w = world
    content = w.content_k1
    assert list(content) == ["algorithm", "kid", "iv", "ciphertext"]
    assert content["algorithm"] == "rc.v2.aes-sha2" and content["kid"] == w.k1.kid
    assert len(base64.b64decode(content["iv"], validate=True)) == 12
    assert "hello" not in json.dumps(content)
    assert w.backend.message_kid(content) == w.k1.kid
    assert w.backend.decrypt_message(content, w.k1) == {"msg": "hello"}
    body = {"msg": "Grüße ☃ 🚀", "attachments": [{"title": "a", "size": 3}], "n": None}
    sealed = w.backend.encrypt_message(w.k2, body, random.Random(6))
    # contents survive a trip through JSON storage
    assert w.backend.decrypt_message(json.loads(json.dumps(sealed)), w.k2) == body


def test_message_under_k1_does_not_open_under_k2(world: World) -> None:
    w = world
    with pytest.raises(CryptoError):
        w.backend.decrypt_message(w.content_k1, w.k2)
    # nor does relabelling the kid help
    relabelled = {**w.content_k1, "kid": w.k2.kid}
    with pytest.raises(CryptoError):
        w.backend.decrypt_message(relabelled, w.k2)


@pytest.mark.parametrize(
    "plaintext", ["text", ["list"], None, {"x": object()}, {"x": float("nan")}, {"x": "\ud800"}]
)
def test_bad_plaintext_is_a_validation_error(world: World, plaintext: Any) -> None:
    with pytest.raises(ValidationError):
        world.backend.encrypt_message(world.k1, plaintext, random.Random(0))


# -- legacy (v1) messages: the format old clients stored in ``msg`` --------------------------------------


def test_legacy_message_round_trip(world: World) -> None:
    w, entropy = world, random.Random(21)
    legacy = w.backend.generate_room_key_v1(entropy)
    assert len(legacy.kid) == 12 and legacy.kid != w.k1.kid
    body = {"msg": "written by an old client", "attachments": []}
    content = w.backend.encrypt_message_v1(legacy, body, entropy)
    assert list(content) == ["algorithm", "ciphertext"] and content["algorithm"] == "rc.v1.aes-sha2"
    packed = content["ciphertext"]
    assert packed.startswith(legacy.kid) and "old client" not in packed
    assert len(base64.b64decode(packed[12:], validate=True)) > 16  # iv[16] || ciphertext
    # the string alone is what an old client put in ``msg``; read back as the v1 content it is
    assert codec.legacy_content(packed) == content
    assert w.backend.message_kid(codec.legacy_content(packed)) == legacy.kid
    assert w.backend.decrypt_message(codec.legacy_content(packed), legacy) == body
    # a legacy key is wrapped and unwrapped like any other, its 12-char kid as the prefix
    wrapped = w.backend.wrap_room_key(legacy, w.a.public_key, entropy)
    assert w.backend.unwrap_room_key(wrapped, w.a.private_key) == legacy
    with pytest.raises(CryptoError):
        w.backend.decrypt_message(content, w.k1)
    with pytest.raises(ValidationError):  # the v1 layout needs a legacy key's 12-char kid
        w.backend.encrypt_message_v1(w.k1, body, entropy)


def failure(call: Callable[[], object]) -> tuple[type[ProtocolError], str, str] | None:
    """How ``call`` failed (exception type, code, message), or None if it did not."""
    try:
        call()
    except ProtocolError as exc:
        return type(exc), exc.code, exc.message
    return None


@pytest.mark.parametrize(
    "msg",
    [
        "short",  # no room for a 12-char kid
        "0123456789ab",  # a kid and nothing after it
        "0123456789ab!!!!",  # not base64
        "0123456789ab" + "A" * 22 + "==",  # an IV and no ciphertext
        "0123456789ab" + "A" * 44,  # base64 that does not decrypt
    ],
)
def test_malformed_legacy_msg_fails_as_v1_content_does(world: World, msg: str) -> None:
    w = world
    legacy, v1 = codec.legacy_content(msg), {"algorithm": "rc.v1.aes-sha2", "ciphertext": msg}
    opened = failure(lambda: w.backend.decrypt_message(legacy, w.k1))
    assert opened is not None and opened[:2] == (CryptoError, "error-decryption-failed")
    assert opened == failure(lambda: w.backend.decrypt_message(v1, w.k1))
    assert failure(lambda: w.backend.message_kid(legacy)) == failure(lambda: w.backend.message_kid(v1))


@pytest.mark.parametrize("msg", [None, 12, b"0123456789abAAAA", {"ciphertext": "x"}])
def test_legacy_msg_of_wrong_type_is_a_validation_error(msg: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        codec.legacy_content(msg)
    assert exc.value.code == "error-invalid-params"


# -- tampering and malformed input ---------------------------------------------------------------------


def test_tampered_blob(world: World) -> None:
    w = world
    stored = json.loads(w.blob_a)
    variants = [
        {**stored, "ciphertext": flip(stored["ciphertext"], len(stored["ciphertext"]) // 2)},
        {**stored, "iv": flip(stored["iv"], 3)},
        {**stored, "salt": stored["salt"] + "x"},
        {**stored, "iterations": 99_999},
        {**stored, "ciphertext": stored["ciphertext"][:-8]},
    ]
    for variant in variants:
        with pytest.raises(CryptoError):
            w.backend.decrypt_private_key(json.dumps(variant), user_id=UID, password=PASSWORD)
    binary = json.loads(w.blob_a_v1)["$binary"]
    for bad in (flip(binary, len(binary) // 2), binary[:-4], binary[:20]):
        with pytest.raises(CryptoError):
            blob = json.dumps({"$binary": bad})
            w.backend.decrypt_private_key(blob, user_id=UID, password=PASSWORD)


MALFORMED_BLOBS = [
    "",
    "not json",
    "[]",
    "null",
    "{}",
    '{"$binary": 5}',
    '{"$binary": "!!!!"}',
    '{"$binary": ""}',
    '{"iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA", "salt": "s", "iterations": "100000"}',
    '{"iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA", "salt": "s", "iterations": true}',
    '{"iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA", "salt": "s", "iterations": 0}',
    '{"iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA", "salt": "s", "iterations": 1e9}',
    '{"iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA", "salt": "s", "iterations": 1000000000}',
    '{"iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA", "salt": "\u2603", "iterations": 1}',
    '{"iv": "AAA", "ciphertext": "AAAA", "salt": "s", "iterations": 1}',
    '{"iv": "", "ciphertext": "", "salt": "", "iterations": 1}',
    '{"iv": "AAAAAAAAAAAAAAAAAAAAAA==", "ciphertext": "AAAA", "salt": "s", "iterations": 1}',
    "[" * 100_000,
]


@pytest.mark.parametrize("blob", MALFORMED_BLOBS, ids=range(len(MALFORMED_BLOBS)))
def test_malformed_blob_is_a_crypto_error(world: World, blob: str) -> None:
    with pytest.raises(CryptoError):
        world.backend.decrypt_private_key(blob, user_id=UID, password=PASSWORD)


@pytest.mark.parametrize("blob", [None, 5, b"{}", {"iv": "x"}])
def test_blob_of_wrong_type_is_a_validation_error(world: World, blob: Any) -> None:
    with pytest.raises(ValidationError):
        world.backend.decrypt_private_key(blob, user_id=UID, password=PASSWORD)


def test_malformed_wrapped_keys(world: World) -> None:
    w = world
    wrapped = w.wrapped_k1_for_a
    random_suffix = base64.b64encode(random.Random(9).randbytes(256)).decode()
    bad = [
        "",
        "short",
        "x" * 343,
        "x" * 344,  # valid characters, but 258 bytes
        "kid" + "=" * 344,
        "kid" + random_suffix,
        wrapped[:-1],
        wrapped[:-2] + "!=",
        flip(wrapped, len(wrapped) - 100),
        w.k1.kid + "☃" * 344,
    ]
    for text in bad:
        with pytest.raises(CryptoError):
            w.backend.unwrap_room_key(text, w.a.private_key)
    for text in ("", "short", "x" * 344, wrapped[:-1]):
        with pytest.raises(CryptoError):
            w.backend.wrapped_kid(text)
    for thing in (None, 7, wrapped.encode()):
        with pytest.raises(ValidationError):
            w.backend.unwrap_room_key(thing, w.a.private_key)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            w.backend.wrapped_kid(thing)  # type: ignore[arg-type]


def test_malformed_contents(world: World) -> None:
    w = world
    c = w.content_k1
    bad: list[dict[str, Any]] = [
        {},
        {"algorithm": "rc.v3.aes-sha2", "kid": c["kid"], "iv": c["iv"], "ciphertext": c["ciphertext"]},
        {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"},
        {**c, "kid": 5},
        {k: v for k, v in c.items() if k != "iv"},
        {k: v for k, v in c.items() if k != "ciphertext"},
        {**c, "iv": "AAA"},
        {**c, "iv": ""},
        {**c, "iv": flip(c["iv"], 5)},
        {**c, "ciphertext": c["ciphertext"][:-4]},
        {**c, "ciphertext": flip(c["ciphertext"], len(c["ciphertext"]) // 2)},
        {**c, "ciphertext": "not base64!"},
        {**c, "ciphertext": ""},
        {"algorithm": "rc.v1.aes-sha2", "ciphertext": "short"},
        {"algorithm": "rc.v1.aes-sha2", "ciphertext": "0123456789ab!!!!"},
        {"algorithm": "rc.v1.aes-sha2", "ciphertext": "0123456789ab" + "A" * 44},
        {"algorithm": "rc.v1.aes-sha2", "ciphertext": 12},
    ]
    for content in bad:
        with pytest.raises(CryptoError):
            w.backend.decrypt_message(content, w.k1)
    for content in (bad[0], bad[1], bad[2], bad[3], bad[-4], bad[-1]):
        with pytest.raises(CryptoError):
            w.backend.message_kid(content)
    for thing in (None, "content", [c], json.dumps(c)):
        with pytest.raises(ValidationError):
            w.backend.decrypt_message(thing, w.k1)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            w.backend.message_kid(thing)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "public_key",
    ["", "{}", "[]", "not json", '{"kty": "RSA"}', '{"kty": "RSA", "n": "AQAB", "e": "AQAB"}'],
)
def test_malformed_public_keys(world: World, public_key: str) -> None:
    with pytest.raises(CryptoError):
        world.backend.wrap_room_key(world.k1, public_key, random.Random(0))
    with pytest.raises(CryptoError):
        world.backend.fingerprint(public_key)


def test_handles_and_texts_do_not_cross_backends(world: World) -> None:
    w = world
    other = get_backend("symbolic" if w.backend.name == "real" else "real")
    entropy = random.Random(8)
    # the other backend's texts have the same shapes, but do not open here
    o_pair = other.generate_key_pair(random.Random(12))
    o_key = other.generate_room_key(entropy)
    o_blob = other.encrypt_private_key(o_pair.private_key, user_id=UID, password=PASSWORD, entropy=entropy)
    o_blob_v1 = other.encrypt_private_key_v1(
        o_pair.private_key, user_id=UID, password=PASSWORD, entropy=entropy
    )
    o_wrapped = other.wrap_room_key(o_key, o_pair.public_key, entropy)
    o_content = other.encrypt_message(o_key, {"msg": "x"}, entropy)
    for blob in (o_blob, o_blob_v1):
        with pytest.raises(CryptoError):
            w.backend.decrypt_private_key(blob, user_id=UID, password=PASSWORD)
    with pytest.raises(CryptoError):
        w.backend.unwrap_room_key(o_wrapped, w.a.private_key)
    assert w.backend.wrapped_kid(o_wrapped) == o_key.kid  # the layout is shared
    with pytest.raises(CryptoError):
        w.backend.decrypt_message(o_content, w.k1)
    with pytest.raises(CryptoError):
        w.backend.wrap_room_key(w.k1, o_pair.public_key, entropy)
    # and the other backend's handles are argument errors
    with pytest.raises(ValidationError):
        w.backend.unwrap_room_key(w.wrapped_k1_for_a, o_pair.private_key)
    with pytest.raises(ValidationError):
        w.backend.public_key_text(o_pair.private_key)
    with pytest.raises(ValidationError):
        w.backend.encrypt_message(o_key, {"msg": "x"}, entropy)
    with pytest.raises(ValidationError):
        w.backend.decrypt_message(w.content_k1, o_key)
    with pytest.raises(ValidationError):
        w.backend.wrap_room_key(RoomKey(kid="k", key="garbage"), w.a.public_key, entropy)


@pytest.mark.parametrize("entropy", [None, 42, "seed", object()])
def test_entropy_must_be_a_random(world: World, entropy: Any) -> None:
    w = world
    with pytest.raises(ValidationError):
        w.backend.generate_key_pair(entropy)
    with pytest.raises(ValidationError):
        w.backend.generate_room_key(entropy)
    with pytest.raises(ValidationError):
        w.backend.encrypt_message(w.k1, {"msg": "x"}, entropy)
    with pytest.raises(ValidationError):
        w.backend.encrypt_private_key(w.a.private_key, user_id=UID, password="p", entropy=entropy)


# -- properties over arbitrary input ------------------------------------------------------------------

B64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
JUNK = st.one_of(st.text(max_size=40), B64, st.integers(), st.none(), st.booleans())


def test_arbitrary_text_never_escapes(world: World) -> None:
    w = world

    @fuzz_settings(w)
    @given(text=st.text(max_size=400), prefix=st.text(max_size=40))
    def check(text: str, prefix: str) -> None:
        only_expected(lambda: w.backend.decrypt_private_key(text, user_id=UID, password=PASSWORD))
        only_expected(lambda: w.backend.unwrap_room_key(prefix + text, w.a.private_key))
        only_expected(lambda: w.backend.wrapped_kid(prefix + text))
        only_expected(lambda: w.backend.fingerprint(text))
        only_expected(lambda: w.backend.wrap_room_key(w.k1, text, random.Random(0)))

    check()


def test_structured_garbage_never_escapes(world: World) -> None:
    """Inputs that get past the JSON layer and reach the ciphers."""
    w = world
    blobs = st.one_of(
        st.fixed_dictionaries(
            {"iv": B64, "ciphertext": B64, "salt": st.text(max_size=20), "iterations": st.integers(-2, 40)}
        ),
        st.fixed_dictionaries({"$binary": B64}),
        st.dictionaries(st.sampled_from(["iv", "ciphertext", "salt", "iterations", "$binary"]), JUNK),
    )
    contents = st.one_of(
        st.fixed_dictionaries(
            {
                "algorithm": st.sampled_from(["rc.v2.aes-sha2", "rc.v1.aes-sha2", "x"]),
                "kid": JUNK,
                "iv": JUNK,
                "ciphertext": JUNK,
            }
        ),
        st.builds(
            lambda kid, body: {"algorithm": "rc.v1.aes-sha2", "ciphertext": kid + body},
            st.text(min_size=12, max_size=12),
            B64,
        ),
    )
    wrapped = st.builds(
        lambda kid, raw: kid + base64.b64encode(raw).decode(),
        st.text(max_size=20),
        st.binary(min_size=256, max_size=256),
    )

    @fuzz_settings(w, real=25, symbolic=200)
    @given(blob=blobs, content=contents, wrapped_key=wrapped)
    def check(blob: dict[str, Any], content: dict[str, Any], wrapped_key: str) -> None:
        only_expected(lambda: w.backend.decrypt_private_key(json.dumps(blob), user_id=UID, password="pw"))
        only_expected(lambda: w.backend.decrypt_message(content, w.k1))
        only_expected(lambda: w.backend.message_kid(content))
        with pytest.raises(CryptoError):
            w.backend.unwrap_room_key(wrapped_key, w.a.private_key)

    check()


# -- determinism ------------------------------------------------------------------------------------


def test_same_seed_same_outputs(world: World) -> None:
    w = world

    def run(seed: int) -> tuple[Any, ...]:
        entropy = random.Random(seed)
        key = w.backend.generate_room_key(entropy)
        blob = w.backend.encrypt_private_key(w.a.private_key, user_id=UID, password=PASSWORD, entropy=entropy)
        blob_v1 = w.backend.encrypt_private_key_v1(
            w.a.private_key, user_id=UID, password=PASSWORD, entropy=entropy
        )
        content = w.backend.encrypt_message(key, {"msg": "m"}, entropy)
        wrapped = w.backend.wrap_room_key(key, w.b.public_key, entropy)
        return key, blob, blob_v1, content, wrapped, generate_passphrase(entropy)

    first, second, other = run(77), run(77), run(78)
    assert first[:4] == second[:4] and first[5] == second[5]
    if w.backend.name == "symbolic":
        assert first[4] == second[4]
    else:  # RSA-OAEP padding is drawn inside cryptography: same kid, different ciphertext
        assert w.backend.wrapped_kid(first[4]) == w.backend.wrapped_kid(second[4])
    for a, b in zip(first, other, strict=True):
        assert a != b
    # the same seed gives the same key pair
    again = w.backend.generate_key_pair(random.Random(w.seed_a))
    assert again.public_key == w.a.public_key


def test_system_random_works(world: World) -> None:
    w, entropy = world, random.SystemRandom()
    pair = w.backend.generate_key_pair(entropy)
    key = w.backend.generate_room_key(entropy)
    wrapped = w.backend.wrap_room_key(key, pair.public_key, entropy)
    assert w.backend.unwrap_room_key(wrapped, pair.private_key) == key


def test_symbolic_values_are_json(world: World) -> None:
    w = world
    if w.backend.name != "symbolic":
        pytest.skip("real handles are cryptography objects")
    for value in (w.a.private_key, w.k1.key, w.k1.kid):
        assert json.loads(json.dumps(value)) == value
    # a record opens on a fresh instance: no registry behind the backend
    fresh = get_backend("symbolic")
    assert fresh.unwrap_room_key(w.wrapped_k1_for_a, w.a.private_key) == w.k1
    rebuilt = RoomKey(kid=w.k1.kid, key=json.loads(json.dumps(w.k1.key)))
    assert fresh.decrypt_message(w.content_k1, rebuilt) == {"msg": "hello"}


# -- passphrase ---------------------------------------------------------------------------------------


def test_passphrase() -> None:
    words = set(wordlist())
    assert len(words) == 2048
    phrase = generate_passphrase(random.Random(1))
    parts = phrase.split(" ")
    assert len(parts) == 12 and set(parts) <= words and "  " not in phrase
    assert generate_passphrase(random.Random(1)) == phrase
    assert generate_passphrase(random.Random(2)) != phrase
    assert len(generate_passphrase(random.Random(1), words=5).split(" ")) == 5
    assert len(generate_passphrase(random.SystemRandom()).split(" ")) == 12
    # uniform: over 24,000 draws every word of the list is hit (expected misses ~ 2048 * e^-11.7)
    seen = set(generate_passphrase(random.Random(3), words=24_000).split(" "))
    assert seen == words
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValidationError):
            generate_passphrase(random.Random(1), words=bad)  # type: ignore[arg-type]


def test_errors_share_the_root() -> None:
    assert issubclass(CryptoError, ProtocolError) and issubclass(ValidationError, ProtocolError)
