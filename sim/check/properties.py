"""The properties ``keysim check`` verifies on every new state.

Theory of operation.

* Safety (:func:`check_state`): :func:`protocol.check_all`, and every reader of every stored
  message reads what was sent.  Reading is an observation: what it records is undone, so it
  cannot split states.
* Liveness (:func:`check_eventually`, run on the state itself, which it changes; every new state
  is the end of some trace): ``queue`` and ``backup``: after a :func:`settle` (every functional
  client ticks and syncs, twice) each room's current key is held by all of its functional
  members or by none (spec section 4); ``backup``: with everybody else logged out, a person who
  lacks a current key it once held logs in alone and restores it.  ``live`` has none here: it is
  checked at each handshake (:mod:`.step_checks`).

May import :mod:`protocol`, :mod:`.world` and :mod:`.membership` only.
"""

from __future__ import annotations

from protocol import Violation, check_all

from .membership import holds_key
from .world import STEP_S, World

__all__ = ["SETTLE", "SETTLE_RATCHET", "check_eventually", "check_state", "settle"]


def check_state(w: World) -> list[Violation]:
    """The protocol's invariants; a logged-out device holds no key; and every reader of every
    stored message reads what was sent."""
    d = w.d
    people = d.people.values()
    passwords = [x for p in people for x in (p.account_password, p.e2e_password) if x]
    keys = [(f"recovery key of {p.username}", p.recovery_key) for p in people]
    devices = [(name, uid, c) for uid in w.users for name, c in w.devices(uid)]
    keys += [(f"recovery key on {name}'s device", c.recovery_key) for name, _, c in devices]
    out = check_all(
        d.server, d.clients, d.ledger, passwords=passwords, secret_keys=keys, other_devices=d.other_devices
    )
    sent = {mid: text for c in d.clients.values() for (_, mid, text) in c.sent}
    for name, uid, client in devices:
        # a device that is logged out is in scope too: it must have forgotten its private key
        # and room keys (RC ``e2e.stopClient``, spec 3.4), or anyone at the keyboard reads on
        if not client.online:
            kept = sum(len(client.held_keys(rid)) for rid in client.session_room_ids())
            if client.private_key is not None or kept:
                what = f"{kept} room key(s)" + (
                    " and its private key" if client.private_key is not None else ""
                )
                out.append(Violation("logged_out_forgets", f"{name} is logged out and still holds {what}"))
        if not client.functional:
            continue
        mark = len(client.decrypted)
        for rid in d.server.rooms_of(uid):
            held = client.held_keys(rid)
            for message in d.server.messages(rid):
                kid = message.content.get("kid") if message.content else None
                if kid in held and client.decrypt(message) != {"msg": sent.get(message.id)}:
                    out.append(Violation("readers_read_what_was_sent", f"{name} misreads {message.id}"))
        del client.decrypted[mark:]  # reading is an observation: it must not split states
    return out


SETTLE = "settle: every logged-in READY client ticks, then syncs and accepts, twice over"
#: under ``ratchet`` a joiner is handed the next sender's new session, so the settle sends too
SETTLE_RATCHET = (
    "settle: every logged-in READY client ticks, syncs and accepts, then sends in each room where"
    " a member joined since the key was made; twice over"
)


def settle(w: World) -> str:
    """Bring every functional client up to date; how the trace states it."""
    ratchet = w.d.server.mechanisms.ratchet
    for _ in range(2):
        for uid in w.users:
            client = w.d.clients[uid]
            for phone in w.d.other_devices.get(uid, ()):  # a phone first: then the web client sends
                if phone.functional:
                    w.now += STEP_S
                    phone.tick(now=w.now)
                    phone.sync(now=w.now)
                    w.d.pump(w.now)
            if client.functional:
                w.now += STEP_S
                w.d.tick(uid, now=w.now)
                client.sync(now=w.now)
                w.d.pump(w.now)
                if ratchet:  # Matrix: a sender shares a new session with joiners (history_server.py)
                    for rid in w.d.server.rooms_of(uid):
                        if holds_key(w, uid, rid) and w.d.server.e2e_session_due(uid, rid):
                            client.send(rid, f"settle: hello from {uid}", now=w.now)
                            w.d.pump(w.now)
    return SETTLE_RATCHET if ratchet else SETTLE


def check_eventually(w: World) -> tuple[list[Violation], list[str]]:
    """The liveness properties of the policy, run on ``w`` itself (which they change); the
    violations, and the steps of the suffix that showed them."""
    mechanisms = w.d.server.mechanisms
    if not mechanisms.queue:
        return [], []  # checked at each handshake
    acquired = {uid: {(a.room_id, a.kid) for a in c.acquired} for uid, c in w.d.clients.items()}
    steps = [settle(w)]
    out = check_state(w)
    for rid in w.rooms:
        room = w.d.server.room(rid)
        # every functional device of every member: a phone must get the key too
        members = [(name, c) for uid in room.subscriptions for name, c in w.devices(uid) if c.functional]
        holders = [name for name, c in members if c.holds_current_key(rid)]
        for name, _ in members:
            if room.e2e_key_id is not None and holders and name not in holders:
                out.append(
                    Violation(
                        "queue_restores",
                        f"{name} is READY in {rid} but never got the key {holders[0]} serves",
                    )
                )
    if mechanisms.backup and not out:
        out += _backup_restores(w, acquired, steps)
    return out, steps


def _backup_restores(
    w: World, acquired: dict[str, set[tuple[str, str]]], steps: list[str]
) -> list[Violation]:
    """``backup``: a person lacking a room's current key it once held restores it alone."""
    srv = w.d.server

    def once_held(uid: str, rid: str) -> bool:
        return (rid, srv.room(rid).e2e_key_id) in acquired[uid]

    needy = [
        uid
        for uid in w.users
        if any(
            once_held(uid, rid) and srv.room(rid).subscriptions[uid].e2e_key is None
            for rid in srv.rooms_of(uid)
        )
    ]
    if not needy:
        return []
    names = ", ".join(w.names[u] for u in needy)
    steps.append(f"everybody logs out; then each of {names} logs in alone and restores from its backup")
    for uid in w.users:
        if w.d.clients[uid].online:
            w.d.logout(uid, now=w.now)
    out = []
    for uid in needy:
        w.now += STEP_S
        w.login(uid)
        client, person = w.d.clients[uid], w.d.people[uid]
        if client.functional and person.recovery_key is not None:
            client.restore_from_backup(person.recovery_key, now=w.now)
            w.d.pump(w.now)
        for rid in srv.rooms_of(uid):
            if once_held(uid, rid) and not holds_key(w, uid, rid):
                out.append(
                    Violation("backup_restores", f"{uid} once held the key of {rid} but did not restore it")
                )
        out += check_state(w)
        w.d.logout(uid, now=w.now)
    return out
