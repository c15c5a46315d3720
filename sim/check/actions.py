"""What each ``keysim check`` operation does, and the checks it makes as it happens.

Theory of operation.  One action per kind of :data:`~.operations.OPERATIONS`, each called as
``action(world, user, room)`` once its guard holds; each returns what the step showed wrong.
Checked here, by the operations that show it: a wrong E2E password unlocks nothing and the right
one does; a person with TOTP is refused a reset without a code or with a wrong one; a reset
forgets the user's keys (spec 3.4); every reader of a sent message reads what was sent; a join
is a ``live`` handshake (:mod:`.step_checks`).  Two actions are paths RC has that the stateful
test lacks: a holder's suggestion that arrives after the member reset (RC #32197's loop
fetches, then posts: a reset can fall between) and the deprecated ``e2e.updateGroupKey``.

May import :mod:`protocol`, :mod:`.world`, :mod:`.membership` and :mod:`.step_checks` only.
"""

from __future__ import annotations

from protocol import Client, E2EEState, TwoFactorError, Violation, totp

from .membership import holder, needs_push
from .step_checks import live_after, live_before
from .world import World, totp_code

__all__ = [
    "accept",
    "change_password",
    "deliver_late",
    "enter_password",
    "join",
    "leave",
    "login",
    "login_wrong",
    "logout",
    "phone_accept",
    "phone_login",
    "phone_logout",
    "phone_tick",
    "push",
    "reset",
    "room_key_reset",
    "send",
    "tick",
]


def login(w: World, i: int, r: int) -> list[Violation]:
    if not w.late_after_login:  # a late suggestion arrives before the next login
        w.previous_pub.pop(w.users[i], None)
    w.login(w.users[i])
    return []


def login_wrong(w: World, i: int, r: int) -> list[Violation]:
    if not w.late_after_login:
        w.previous_pub.pop(w.users[i], None)
    w.login(w.users[i], remember=False)
    client = w.client(i)
    if client.state == E2EEState.ENTER_PASSWORD and client.enter_password("not the password", now=w.now):
        return [Violation("wrong_password", f"u{i}'s wrong E2E password unlocked its key")]
    if client.functional:
        return [Violation("wrong_password", f"u{i} is READY without typing its E2E password")]
    return []


def enter_password(w: World, i: int, r: int) -> list[Violation]:
    password = w.d.people[w.users[i]].e2e_password
    assert password is not None
    if not w.client(i).enter_password(password, now=w.now):
        return [Violation("wrong_password", f"u{i}'s own E2E password does not unlock its key")]
    w.d.pump(w.now)
    return []


def logout(w: World, i: int, r: int) -> list[Violation]:
    w.d.logout(w.users[i], now=w.now)
    return []


def change_password(w: World, i: int, r: int) -> list[Violation]:
    new = f"changed by u{i}"
    w.client(i).change_password(new, now=w.now)
    w.d.people[w.users[i]].e2e_password = new
    w.d.pump(w.now)
    return []


def reset(w: World, i: int, r: int) -> list[Violation]:
    uid, srv = w.users[i], w.d.server
    secret = w.totp_secret.get(uid)
    code = None
    if secret is not None:
        code = totp_code(secret, w.now)
        near = {totp_code(secret, w.now + k * totp.PERIOD) for k in (-1, 0, 1)}
        wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in near)
        for attempt in (None, wrong):
            try:
                w.client(i).reset_own_key(attempt, now=w.now)
            except TwoFactorError:
                continue
            what = "no 2FA code" if attempt is None else "a wrong 2FA code"
            return [Violation("two_factor_gate", f"u{i} reset its E2E key with {what}")]
    previous = srv.user(uid).e2e_public_key
    w.d.reset(uid, now=w.now, code=code)
    if previous is not None:
        w.previous_pub[uid] = previous
    # spec 3.4 (server/lib/resetUserE2EKey.ts): the pair, the sessions and the room keys go
    out = []
    for rid in srv.rooms_of(uid):
        sub = srv.room(rid).subscriptions[uid]
        fields = {"E2EKey": sub.e2e_key, "E2ESuggestedKey": sub.e2e_suggested_key}
        kept = [f for f, v in (*fields.items(), ("oldRoomKeys", sub.old_room_keys)) if v is not None]
        if kept:
            out.append(
                Violation("reset_forgets_keys", f"after its reset u{i} keeps {', '.join(kept)} in {rid}")
            )
    if srv.user(uid).e2e_public_key is not None or w.d.clients[uid].online:
        out.append(Violation("reset_forgets_keys", f"after its reset u{i} keeps its key pair or a session"))
    # resetUserE2EKey.ts also signs the user out everywhere (``Users.unsetLoginTokens``, spec 3.4):
    # a phone that stayed signed in would keep the old private key and the room keys
    phone = w.phone(i)
    if phone is not None and (phone.online or phone.private_key is not None):
        out.append(Violation("reset_forgets_keys", f"after its reset u{i}'s phone is still signed in"))
    return out


def deliver_late(w: World, i: int, r: int) -> list[Violation]:
    """A holder's tick fetched u's public key before u reset and posts only now: a suggestion
    wrapped for u's previous key pair is stored (current key only; RC would add old keys)."""
    giver = holder(w, r)
    assert giver is not None
    rid, client = w.rooms[r], w.client(giver)
    session = client.session(rid)
    assert session is not None and session.key is not None
    wrapped = w.d.backend.wrap_room_key(session.key, w.previous_pub.pop(w.users[i]), client.entropy)
    keys = {rid: [{"_id": w.users[i], "key": wrapped}]}
    w.d.server.e2e_provide_users_suggested_group_keys(w.users[giver], keys, now=w.now)
    w.d.pump(w.now)
    return []


def push(w: World, i: int, r: int) -> list[Violation]:
    """The legacy client's hand-out: ``e2e.updateGroupKey`` for every member without a key
    (spec 3.6, "the deprecated updateGroupKey for another user"); it dequeues nobody."""
    rid, client = w.rooms[r], w.client(i)
    session = client.session(rid)
    assert session is not None and session.key is not None
    for uid, public_key in needs_push(w, rid):
        wrapped = w.d.backend.wrap_room_key(session.key, public_key, client.entropy)
        w.d.server.e2e_update_group_key(w.users[i], rid, uid, wrapped)
    w.d.pump(w.now)
    return []


def join(w: World, i: int, r: int) -> list[Violation]:
    room = w.d.server.room(w.rooms[r])
    before = {r: live_before(w, w.users[i], room.id)}
    owner = next(u for u, s in room.subscriptions.items() if "owner" in s.roles)  # groups keep theirs
    w.d.server.add_user_to_room(owner, room.id, w.users[i], now=w.now)
    w.d.pump(w.now)
    return live_after(w, i, before)


def leave(w: World, i: int, r: int) -> list[Violation]:
    w.d.server.leave_room(w.users[i], w.rooms[r])
    w.d.pump(w.now)
    return []


def tick(w: World, i: int, r: int) -> list[Violation]:
    w.d.tick(w.users[i], now=w.now)
    return []


def accept(w: World, i: int, r: int) -> list[Violation]:
    w.client(i).sync(now=w.now)
    w.d.pump(w.now)
    return []


def room_key_reset(w: World, i: int, r: int) -> list[Violation]:
    w.client(i).reset_room_key(w.rooms[r], now=w.now)
    w.d.pump(w.now)
    return []


def phone_login(w: World, i: int, r: int) -> list[Violation]:
    """The phone signs in: it fetches the key pair and the user's own public key from the server
    (``e2e.fetchMyKeys``) and the person types the E2E password it remembers."""
    w.login(w.users[i], device=w.phone(i))
    return []


def _phone(w: World, i: int) -> Client:
    phone = w.phone(i)
    assert phone is not None
    return phone


def phone_logout(w: World, i: int, r: int) -> list[Violation]:
    _phone(w, i).logout()
    w.d.pump(w.now)
    return []


def phone_tick(w: World, i: int, r: int) -> list[Violation]:
    _phone(w, i).tick(now=w.now)
    w.d.pump(w.now)
    return []


def phone_accept(w: World, i: int, r: int) -> list[Violation]:
    _phone(w, i).sync(now=w.now)
    w.d.pump(w.now)
    return []


def send(w: World, i: int, r: int) -> list[Violation]:
    """Send, then every member who holds the message's key must read exactly what was sent
    (messages are not part of a state's identity, so this is where they are checked)."""
    rid, text = w.rooms[r], f"hello from u{i}"
    mid = w.client(i).send(rid, text, now=w.now)
    message = next(m for m in w.d.server.messages(rid) if m.id == mid)
    out = []
    for uid in w.d.server.room(rid).subscriptions:
        for who, client in w.devices(uid):
            if not client.functional or w.d.server.room(rid).e2e_key_id not in client.held_keys(rid):
                continue
            mark = len(client.decrypted)
            if client.decrypt(message) != {"msg": text}:
                out.append(Violation("readers_read_what_was_sent", f"{who} misreads u{i}'s message in {rid}"))
            del client.decrypted[mark:]  # an observation, not an event of the protocol
    return out
