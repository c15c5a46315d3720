"""Legacy messages: an old client stored an encrypted message (``t = "e2e"``) with its v1
ciphertext ``kid(12) + b64(iv[16] || ct)`` in ``msg`` and no ``content``; a current client still
reads it, as RC's does (client/lib/e2ee/rocketchat.e2e.room.ts ``decryptMessage``, content.ts
``decodeEncryptedContent``).  Every test runs on both crypto backends.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import T0

from protocol import (
    CryptoError,
    Deployment,
    E2ERoomState,
    ValidationError,
    check_all,
)
from protocol.crypto import BACKENDS, RoomKey, codec
from protocol.rooms import Message


@dataclass
class LegacyRoom:
    """Alice and Bob, both with keys and logged out, in a room their old clients keyed: a legacy
    room key (12-char kid) as the room's ``e2eKeyId`` and each member's ``E2EKey``, and one
    legacy message from Alice."""

    d: Deployment
    a: str
    b: str
    rid: str
    key: RoomKey
    entropy: random.Random
    mid: str = ""

    def write(self, plaintext: dict[str, Any], *, key: RoomKey | None = None, now: float = T0 + 11) -> str:
        """Store ``plaintext`` as Alice's old client did (the legacy writer)."""
        sealed = self.d.backend.encrypt_message_v1(key or self.key, plaintext, self.entropy)
        return self.d.server.send_legacy_message(self.a, self.rid, sealed["ciphertext"], now=now)

    def message(self, mid: str) -> Message:
        return next(m for m in self.d.server.messages(self.rid) if m.id == mid)

    def check(self) -> None:
        d = self.d
        passwords = [p.account_password for p in d.people.values()]
        assert check_all(d.server, d.clients, d.ledger, passwords=passwords) == []


def legacy_room(crypto: str) -> LegacyRoom:
    d = Deployment(crypto=crypto, seed=7)
    a, b = d.add_user("alice"), d.add_user("bob")
    for i, uid in enumerate((a, b)):
        d.login(uid, now=T0 + i)
    for i, uid in enumerate((a, b)):
        d.logout(uid, now=T0 + 3 + i)
    rid = d.server.create_private_group(a, "before-v2", [b], now=T0 + 10)  # nobody online: no key yet
    entropy = random.Random(3)
    key = d.backend.generate_room_key_v1(entropy)
    d.ledger.created(rid, key, a, T0 + 10)  # Alice's old client made it
    d.server.e2e_set_room_key_id(a, rid, key.kid)
    for uid in (a, b):
        public_key = d.server.user(uid).e2e_public_key
        assert public_key is not None
        d.server.e2e_update_group_key(uid, rid, uid, d.backend.wrap_room_key(key, public_key, entropy))
    w = LegacyRoom(d, a, b, rid, key, entropy)
    w.mid = w.write({"msg": "sent in 2019"})
    return w


@pytest.fixture(params=BACKENDS)
def crypto(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_legacy_msg_is_stored_as_old_clients_wrote_it(crypto: str) -> None:
    w = legacy_room(crypto)
    doc = w.message(w.mid).to_document()
    assert doc["t"] == "e2e" and "content" not in doc
    assert doc["msg"].startswith(w.key.kid) and "2019" not in doc["msg"]
    assert w.message(w.mid).e2e_content() == codec.legacy_content(doc["msg"])


def test_a_current_client_reads_a_legacy_msg(crypto: str) -> None:
    w = legacy_room(crypto)
    cb = w.d.login(w.b, now=T0 + 20)
    assert cb.room_state(w.rid) == E2ERoomState.READY and cb.holds_current_key(w.rid)
    assert cb.decrypt(w.message(w.mid)) == {"msg": "sent in 2019"}
    assert cb.decrypted == [(w.rid, w.mid, w.key.kid)]
    w.check()


def test_a_legacy_msg_is_read_with_the_old_key_after_a_room_key_reset(crypto: str) -> None:
    # the legacy key becomes an old room key; the message's kid prefix picks it (retrieveDecryptionKey)
    w = legacy_room(crypto)
    ca = w.d.login(w.a, now=T0 + 20)
    new_kid = ca.reset_room_key(w.rid, now=T0 + 21)
    w.d.pump(T0 + 21)
    new_mid = ca.send(w.rid, "after the reset", now=T0 + 22)
    cb = w.d.login(w.b, now=T0 + 30)
    assert cb.room_state(w.rid) == E2ERoomState.WAITING_KEYS
    w.d.tick(w.a, now=T0 + 40)  # Alice serves the queue; Bob accepts
    assert cb.room_state(w.rid) == E2ERoomState.READY
    assert set(cb.held_keys(w.rid)) == {w.key.kid, new_kid}
    assert cb.decrypt(w.message(w.mid)) == {"msg": "sent in 2019"}
    assert cb.decrypt(w.message(new_mid)) == {"msg": "after the reset"}
    assert cb.decrypted == [(w.rid, w.mid, w.key.kid), (w.rid, new_mid, new_kid)]
    w.check()


def test_an_old_clients_text_body_reads_as_msg(crypto: str) -> None:
    # old clients encrypted {_id, text, userId, ts}; RC's decrypt returns {msg: text, ...rest}
    w = legacy_room(crypto)
    body = {"_id": "m1", "text": "old body", "userId": w.a, "ts": {"$date": 1_546_300_800_000}}
    mid = w.write(body)
    cb = w.d.login(w.b, now=T0 + 20)
    assert cb.decrypt(w.message(mid)) == {"msg": "old body", "_id": "m1", "userId": w.a, "ts": body["ts"]}


def test_content_wins_over_msg_and_plain_messages_have_none() -> None:
    content = {"algorithm": "rc.v2.aes-sha2", "kid": "k", "iv": "", "ciphertext": ""}
    both = Message("m", "r", "u", T0, t="e2e", msg="0123456789abAAAA", content=content)
    assert both.e2e_content() is content
    assert Message("m", "r", "u", T0, msg="hello").e2e_content() is None
    assert Message("m", "r", "u", T0, t="e2e", msg="").e2e_content() is None
    assert Message("m", "r", "u", T0, t="e2e").e2e_content() is None


def test_a_malformed_legacy_msg_never_decrypts_and_never_raises(crypto: str) -> None:
    w = legacy_room(crypto)
    other = w.d.backend.generate_room_key_v1(random.Random(4))
    bad = ["short", w.key.kid, w.key.kid + "!!!!", w.key.kid + "A" * 44]
    mids = [w.d.server.send_legacy_message(w.a, w.rid, msg, now=T0 + 12) for msg in bad]
    mids.append(w.write({"msg": "under a key nobody holds"}, key=other, now=T0 + 12))
    cb = w.d.login(w.b, now=T0 + 20)
    assert [cb.decrypt(w.message(mid)) for mid in mids] == [None] * len(mids)
    assert cb.decrypt(w.message(w.mid)) == {"msg": "sent in 2019"}
    # at the backend the same strings fail with the v1 path's code
    for mid in mids:
        content = w.message(mid).e2e_content()
        assert content is not None
        with pytest.raises(CryptoError) as exc:
            w.d.backend.decrypt_message(content, w.key)
        assert exc.value.code == "error-decryption-failed"


@pytest.mark.parametrize("msg", ["", None, 12, {"algorithm": "rc.v1.aes-sha2", "ciphertext": "x"}])
def test_the_legacy_writer_refuses_what_is_not_a_string(msg: Any) -> None:
    w = legacy_room("symbolic")
    before = json.dumps(w.d.server.dump(), sort_keys=True)
    with pytest.raises(ValidationError) as exc:
        w.d.server.send_legacy_message(w.a, w.rid, msg, now=T0 + 12)
    assert exc.value.code == "error-invalid-params"
    assert json.dumps(w.d.server.dump(), sort_keys=True) == before
