"""History accounting counts legacy messages: an old client's encrypted message keeps its v1
ciphertext in ``msg`` (no ``content``), and :meth:`Records.snapshot` reads its kid from there."""

from __future__ import annotations

import random

import pytest

from protocol import Deployment
from protocol.crypto import BACKENDS
from sim.engine.keys import KeyView
from sim.engine.records import Outcome, Records

T0 = 1_767_225_600.0


@pytest.mark.parametrize("crypto", BACKENDS)
def test_history_counts_legacy_messages(crypto: str) -> None:
    d = Deployment(crypto=crypto, seed=5)
    a, b = d.add_user("alice"), d.add_user("bob")
    for i, uid in enumerate((a, b)):
        d.login(uid, now=T0 + i)
        d.logout(uid, now=T0 + 2 + i)
    rid = d.server.create_private_group(a, "before-v2", [b], now=T0 + 10)
    entropy = random.Random(1)
    held, lost = d.backend.generate_room_key_v1(entropy), d.backend.generate_room_key_v1(entropy)
    d.server.e2e_set_room_key_id(a, rid, held.kid)
    bob_key = d.server.user(b).e2e_public_key
    assert bob_key is not None
    d.server.e2e_update_group_key(b, rid, b, d.backend.wrap_room_key(held, bob_key, entropy))
    for i, key in enumerate((held, lost, held)):
        sealed = d.backend.encrypt_message_v1(key, {"msg": f"old {i}"}, entropy)
        d.server.send_legacy_message(a, rid, sealed["ciphertext"], now=T0 + 11 + i)
    assert all(m.content is None for m in d.server.messages(rid))

    users = [a, b]
    records = Records(d.server, d.backend, KeyView(d.server, d.backend, {a: 0, b: 1}), users)
    row = Outcome(1, "test", 1, rid, "p", 2, reset_at=T0 + 13)  # Bob; the third message is later
    records.snapshot(row)
    assert (row.history_messages, row.history_unreadable) == (2, 1)


def test_a_malformed_legacy_message_counts_as_unreadable() -> None:
    """A stored string too short to carry a kid names no key: nobody can read it, and the
    accounting says so instead of failing."""
    d = Deployment(seed=5)
    a, b = d.add_user("alice"), d.add_user("bob")
    for i, uid in enumerate((a, b)):
        d.login(uid, now=T0 + i)
    rid = d.server.create_private_group(a, "g", [b], now=T0 + 10)
    d.pump(T0 + 10)
    d.server.send_legacy_message(a, rid, "short", now=T0 + 11)
    records = Records(d.server, d.backend, KeyView(d.server, d.backend, {a: 0, b: 1}), [a, b])
    row = Outcome(1, "test", 1, rid, "p", 2, reset_at=T0 + 12)
    records.snapshot(row)
    assert (row.history_messages, row.history_unreadable) == (1, 1)
