"""The checks ``keysim check`` makes around a step, whatever the operation.

Theory of operation.  :func:`~.operations.apply` notes the state before an operation and
compares after it: a suggestion stored by ``provideUsersSuggestedGroupKeys`` takes its user off
the queue (spec 3.6; :func:`suggestions` before, :func:`served_left_queue` after); under
``live``, a handshake (login, unlock, join) yields the key iff another member online then held
it (:func:`live_before`, :func:`live_after`).  The checks one operation makes on its own are
with its action (:mod:`.actions`).  May import :mod:`protocol`, :mod:`.world` and
:mod:`.membership` only.
"""

from __future__ import annotations

from protocol import Client, Violation

from .membership import member
from .world import World

__all__ = ["live_after", "live_before", "served_left_queue", "suggestions"]


def suggestions(w: World) -> set[tuple[str, str]]:
    """(room, member) of every suggestion stored."""
    return {
        (rid, uid)
        for rid in w.rooms
        for uid, sub in w.d.server.room(rid).subscriptions.items()
        if sub.e2e_suggested_key is not None
    }


def served_left_queue(w: World, before: set[tuple[str, str]]) -> list[Violation]:
    """Spec 3.6: ``provideUsersSuggestedGroupKeys`` takes the users it serves off the queue (the
    deprecated ``updateGroupKey`` does not: there only the acceptance does)."""
    return [
        Violation("served_users_leave_queue", f"{uid} waits in {rid} but was served")
        for rid, uid in suggestions(w) - before
        if w.d.server.room(rid).is_waiting(uid)
    ]


def live_before(w: World, uid: str, rid: str) -> tuple[bool, bool]:
    """Before ``uid`` handshakes in ``rid``: is another member online holding the current key
    whose app answers a live request (``_provide_key_to_user``: a mobile app, or a web client
    under a policy with ``live_web``), and has ``uid`` another way to the key (an ``E2EKey`` or a
    pending suggestion, or there is no key to get yet)?"""
    room = w.d.server.room(rid)
    kid = room.e2e_key_id
    web = w.d.server.mechanisms.live_web
    online = False
    for other in room.subscriptions:
        for _, client in w.devices(other) if other != uid else ():  # a phone answers too
            session = client.session(rid)
            answers = web or client.app == "mobile"
            if answers and client.functional and session is not None:
                online = online or (session.key_id == kid and session.key is not None)
    sub = room.subscriptions.get(uid)
    return online, kid is None or (sub is not None and bool(sub.e2e_key or sub.e2e_suggested_key))


def live_after(
    w: World, i: int, before: dict[int, tuple[bool, bool]], client: Client | None = None
) -> list[Violation]:
    """``live``: a handshake (of ``client``, by default u{i}'s web client) yields the room key iff
    another member online then held it (and answers live requests)."""
    client = client or w.client(i)
    if not w.d.server.mechanisms.live or not client.functional:
        return []
    out = []
    for r, (holder_online, other_way) in before.items():
        rid = w.rooms[r]
        if not member(w, i, r) or w.d.server.room(rid).e2e_key_id is None:
            continue
        holds = client.holds_current_key(rid)
        if holder_online and not holds:
            out.append(Violation("live_restoration", f"u{i} got no key in {rid} though a holder was online"))
        elif not holder_online and not other_way and holds:
            out.append(Violation("live_restoration", f"u{i} got the key of {rid} with no holder online"))
    return out
