"""The protocol's promises as code: functions that return the violations they find.

Each check takes a server and the clients of one deployment (and, where it needs ground truth, the
:class:`~protocol.ledger.KeyLedger`) and returns a list of :class:`Violation`; an empty list means
the invariant holds.  Tests, the simulator and ``keysim check`` call :func:`check_all` after steps.

* :func:`no_secrets_on_server`: the server's dump contains no password, plaintext private key,
  plaintext room key or message body, in any encoding, under both backends (a symbolic wrapped
  key, which carries its room key by design, is the one record it skips).
* :func:`stored_keys_open`: every ``E2EKey`` opens, for its owner's current key pair, to the key a
  legitimate member created for that kid.
* :func:`queue_is_clean`: nobody on a room's queue holds the room's current key (after settling).
* :func:`keys_are_legitimate`: every key a client holds, and every key it decrypted with, is one a
  legitimate member created for that room, and the client has a record of how it got it.
* :func:`reset_users_recover_properly`: after a reset, a user's first key for a room comes from a
  holder's suggestion, the backup, or a key it created (a room-key reset or a new room), never
  from the server alone; an ``E2EKey`` only if another device of the same user took that very
  key from one of those after the reset (a user with a phone and a web client).
* :func:`nobody_silently_lost` (policies ``queue`` and ``backup``): a member with a key pair who
  lacks a room's current key has a suggestion waiting, waits in the room's queue, or the room is
  lost (nobody holds its key): nobody is left waiting where no holder will ever look.  Under
  ``ratchet`` a member who joined after the current key was made waits for the next sender's
  new session instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .crypto import codec
from .e2e_client import Client, KeyAcquired
from .errors import CryptoError, ProtocolError
from .ledger import KeyLedger
from .server import Server

__all__ = [
    "Violation",
    "check_all",
    "keys_are_legitimate",
    "no_secrets_on_server",
    "nobody_silently_lost",
    "queue_is_clean",
    "reset_users_recover_properly",
    "stored_keys_open",
]


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


#: the symbolic backend's wrapped-key record starts so (protocol/crypto/symbolic.py): such a record
#: carries its room key by design (it stands for an RSA-OAEP ciphertext), so it is not a leak
_SYM_WRAP_MAGIC = b"KSYMWRAP"


def _encodings(secret: bytes) -> list[str]:
    """The ways a server could store 16 or more secret bytes: hex, base64, base64url."""
    return [secret.hex(), codec.b64encode(secret), codec.b64url_encode(secret)]


def _key_texts(backend: str, key: object) -> list[str]:
    """What would betray ``key`` (a private key handle or a :class:`RoomKey`) in the dump."""
    from .crypto import RoomKey

    if backend == "real":
        from .crypto import real

        if isinstance(key, RoomKey):
            return [real.room_key_jwk(key)["k"]]
        jwk = real.private_jwk(key)
        return [jwk[f] for f in ("d", "p", "q")]
    text = str(key.key if isinstance(key, RoomKey) else key)
    raw = text.rsplit("-", 1)[-1]
    try:
        return [text, *_encodings(bytes.fromhex(raw))]
    except ValueError:
        return [text]


def _is_symbolic_wrap(value: str) -> bool:
    if len(value) < codec.WRAPPED_B64_LENGTH:  # shorter than any wrapped key: most strings
        return False
    try:
        _, record = codec.split_prefixed(value)
    except ProtocolError:
        return False
    return record.startswith(_SYM_WRAP_MAGIC)


def _strings(value: object) -> list[str]:
    """Every string of a dump (keys included), a symbolic wrapped key left out; in no
    particular order (they are searched one by one)."""
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if not _is_symbolic_wrap(v):
                out.append(v)
        elif isinstance(v, Mapping):
            out += map(str, v)
            stack += v.values()
        elif isinstance(v, list | tuple):
            stack += v
    return out


def no_secrets_on_server(
    server: Server,
    clients: Mapping[str, Client],
    passwords: Iterable[str] = (),
    *,
    secret_keys: Iterable[tuple[str, object]] = (),
) -> list[Violation]:
    """No password, private key, room key (current or old, held by any client) or message body in
    the server's dump, in any encoding it could be stored in (the key's own text, hex, base64,
    base64url), under either backend.  ``passwords`` are the people's passwords (account and
    E2E); ``secret_keys`` further private keys by what they are (a recovery key, a key pair the
    user had before a reset).  A symbolic wrapped key carries its room key by design and is
    skipped; a private-key blob is sealed and never matches."""
    try:
        dump = server.dump()
        json.dumps(dump, sort_keys=True)
    except (TypeError, ValueError) as exc:
        return [Violation("no_secrets_on_server", f"dump is not JSON-serialisable: {exc}")]
    text = "\n".join(_strings(dump))
    out = []
    secrets: list[tuple[str, str]] = [("password", p) for p in passwords if p]
    keys: list[tuple[str, str, object]] = []
    for uid, client in clients.items():
        for _, _, body in client.sent:
            if len(body) >= 8:  # short bodies collide with base64 by chance
                secrets.append((f"message body of {uid}", body))
        if client.random_password:
            secrets.append((f"E2E password of {uid}", client.random_password))
        if client.private_key is not None:
            keys.append((client.backend.name, f"private key of {uid}", client.private_key))
        for room_id in server.rooms_of(uid) if uid in server.user_ids else ():
            for key in client.held_keys(room_id).values():
                keys.append((client.backend.name, f"room key {key.kid} held by {uid}", key))
    backend = next(iter(clients.values())).backend.name if clients else "symbolic"
    keys += [(backend, what, extra) for what, extra in secret_keys if extra is not None]
    for name, what, secret_key in keys:
        secrets += [(what, t) for t in _key_texts(name, secret_key)]
    found = dict.fromkeys(what for what, secret in secrets if secret in text)  # each secret once
    out += [Violation("no_secrets_on_server", f"the dump contains the {what}") for what in found]
    return out


def stored_keys_open(server: Server, clients: Mapping[str, Client], ledger: KeyLedger) -> list[Violation]:
    """Every ``E2EKey`` opens, under its owner's key pair, to the legitimate key for its kid."""
    out = []
    for room_id in server.room_ids:
        for uid, sub in server.room(room_id).subscriptions.items():
            client = clients.get(uid)
            if sub.e2e_key is None or client is None or client.private_key is None:
                continue
            if client.public_key != server.user(uid).e2e_public_key:
                continue  # this device holds an older key pair; nothing to open with
            try:
                key = client.backend.unwrap_room_key(sub.e2e_key, client.private_key)
            except (CryptoError, ProtocolError):
                out.append(Violation("stored_keys_open", f"{uid}'s E2EKey in {room_id} does not open"))
                continue
            if not ledger.is_legitimate(room_id, key.kid, key):
                out.append(
                    Violation(
                        "stored_keys_open", f"{uid}'s E2EKey in {room_id} is not the key made for {key.kid}"
                    )
                )
    return out


def queue_is_clean(server: Server, clients: Mapping[str, Client]) -> list[Violation]:
    """Nobody waiting in a room's queue holds the room's current key."""
    out = []
    for room_id in server.room_ids:
        room = server.room(room_id)
        for waiting in room.users_waiting or ():
            sub = room.subscriptions.get(waiting.user_id)
            if sub is None:
                out.append(
                    Violation(
                        "queue_is_clean", f"{waiting.user_id} waits in {room_id} without being a member"
                    )
                )
            elif sub.e2e_key is not None and room.e2e_key_id is not None:
                client = clients.get(waiting.user_id)
                try:
                    holds = client is not None and client.backend.wrapped_kid(sub.e2e_key) == room.e2e_key_id
                except ProtocolError:
                    holds = False  # a malformed E2EKey opens to nothing
                if holds:
                    out.append(
                        Violation("queue_is_clean", f"{waiting.user_id} waits in {room_id} but holds its key")
                    )
    return out


def keys_are_legitimate(clients: Mapping[str, Client], ledger: KeyLedger) -> list[Violation]:
    """Every key held or used by a client is a legitimately created key it has a record of."""
    out = []
    for uid, client in clients.items():
        obtained = {(a.room_id, a.kid) for a in client.acquired}
        for room_id in client.session_room_ids():
            for kid, key in client.held_keys(room_id).items():
                if not ledger.is_legitimate(room_id, key.kid, key):
                    out.append(
                        Violation("keys_are_legitimate", f"{uid} holds a planted key {kid} for {room_id}")
                    )
                elif (room_id, key.kid) not in obtained:
                    out.append(
                        Violation("keys_are_legitimate", f"{uid} holds {kid} for {room_id} with no record")
                    )
        for room_id, message_id, kid in client.decrypted:
            if (room_id, kid) not in obtained or ledger.current(room_id, kid) is None:
                out.append(
                    Violation(
                        "keys_are_legitimate", f"{uid} decrypted {message_id} with unrecorded key {kid}"
                    )
                )
    return out


def reset_users_recover_properly(
    clients: Mapping[str, Client], other_devices: Mapping[str, Sequence[Client]] | None = None
) -> list[Violation]:
    """After a user's latest reset, its first key per room came from a holder, the backup or
    its own creation (room-key reset, new room, rejoin); under policy ``rejoin`` (``ratchet``)
    also from the ``E2EKey`` another member's rejoin (new session) handed it, and under
    ``bundle`` from an inviter's key bundle.  An ``E2EKey`` is also fine when one of the
    user's ``other_devices`` took that key (room and kid) from a legitimate source after the
    reset: that device accepted it, and the server stored it for the user."""
    out = []
    for uid, client in clients.items():
        if not client.resets:
            continue
        allowed = {"suggestion", "backup", "created", "rejoined"}
        if client.server.mechanisms.dehydrated:
            allowed.add("dehydrated")
        if client.server.mechanisms.rejoin or client.server.mechanisms.ratchet:
            allowed.add("E2EKey")  # another member's rejoin, or its new session, stored it
        if client.server.mechanisms.bundle:
            allowed.add("bundle")
        since = client.resets[-1]
        vouched: dict[tuple[str, str], float] = {}  # (room, kid) -> when another device took it
        for other in (other_devices or {}).get(uid, ()):
            for a in other.acquired:
                if a.source in allowed and a.at >= since:
                    vouched.setdefault((a.room_id, a.kid), a.at)
        first: dict[str, KeyAcquired] = {}
        for acq in client.acquired[client.reset_marks[-1] :]:
            if acq.room_id not in first:
                first[acq.room_id] = acq
        for room_id, acq in first.items():
            source = acq.source
            if source == "E2EKey" and vouched.get((room_id, acq.kid), float("inf")) <= acq.at:
                continue
            if source not in allowed:
                out.append(
                    Violation(
                        "reset_users_recover_properly",
                        f"{uid} regained {room_id} after its reset from {source!r}, not from a holder",
                    )
                )
    return out


def nobody_silently_lost(server: Server) -> list[Violation]:
    """Every member who could be served is on a path to its key, or the room is lost."""
    if not server.mechanisms.queue:
        return []  # no queue: a waiting member asks again at its next login
    out = []
    for room_id in server.room_ids:
        room = server.room(room_id)
        if not room.encrypted or room.e2e_key_id is None:
            continue
        holding = {uid for uid, sub in room.subscriptions.items() if _kid(sub.e2e_key) == room.e2e_key_id}
        if not holding:
            continue  # lost: only a room-key reset helps, and that is counted, not silent
        for uid, sub in room.subscriptions.items():
            if uid in holding or (sub.e2e_suggested_key or "").strip() or room.is_waiting(uid):
                continue
            if server.user(uid).e2e_public_key is None:
                continue  # no key pair yet: it is queued when it uploads one
            if server.waits_for_session(room_id, uid):
                continue  # policy ratchet: a joiner is handed the next sender's new session
            out.append(
                Violation("nobody_silently_lost", f"{uid} lacks the key of {room_id} and waits nowhere")
            )
    return out


def _kid(wrapped: str | None) -> str | None:
    if not wrapped:
        return None
    try:
        kid, _ = codec.split_prefixed(wrapped)
    except ProtocolError:
        return None
    return kid


def check_all(
    server: Server,
    clients: Mapping[str, Client],
    ledger: KeyLedger,
    *,
    passwords: Iterable[str] = (),
    secret_keys: Iterable[tuple[str, object]] = (),
    settled: bool = True,
    other_devices: Mapping[str, Sequence[Client]] | None = None,
) -> list[Violation]:
    """Every invariant; ``settled=False`` skips the ones that hold only between steps.

    ``clients`` has one device per user; ``other_devices`` the further devices of users who
    have several (their keys are checked too, and they vouch for each other's ``E2EKey``);
    ``passwords`` and ``secret_keys`` are what people keep outside the devices, which the server
    must never see (:func:`no_secrets_on_server`)."""
    out = no_secrets_on_server(server, clients, passwords, secret_keys=secret_keys)
    out += stored_keys_open(server, clients, ledger)
    if settled:
        out += queue_is_clean(server, clients)
        out += nobody_silently_lost(server)
    out += keys_are_legitimate(clients, ledger)
    for uid, more in (other_devices or {}).items():
        for device in more:
            out += keys_are_legitimate({uid: device}, ledger)
    out += reset_users_recover_properly(clients, other_devices)
    return out
