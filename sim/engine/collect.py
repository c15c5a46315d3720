"""Reading a finished run: outcome rows, join rows, room rows, waiting times without an online
holder."""

from __future__ import annotations

import math
from typing import Any, Protocol

from protocol import Server
from protocol.adversary import ATTACKS
from protocol.ledger import KeyLedger

from ..inputs.churn import PresenceModel
from ..inputs.collegemsg import fit_report
from ..inputs.scenario import Scenario
from .devices import Devices
from .keys import KeyView
from .records import Records, RunResult
from .setup import collegemsg_sessions

__all__ = ["collect"]


class FinishedRun(Protocol):
    """What :func:`collect` reads off a run (a :class:`~sim.engine.simulation.Simulation`)."""

    sc: Scenario
    seed: int
    run_id: str
    policy: str
    horizon: float
    check_invariants: bool
    stationary_online: float | None
    server: Server
    ledger: KeyLedger
    presence: PresenceModel
    user_ids: list[str]
    room_ids: list[str]
    devices: Devices
    keys: KeyView
    records: Records
    #: what checking after every step found during the run, first occurrence first
    step_violations: list[str]


def collect(sim: FinishedRun) -> RunResult:
    """The run's tidy rows, read off the server and the bookkeeping at the horizon."""
    base = {"run_id": sim.run_id, "seed": sim.seed, "policy": sim.policy}
    outcomes = _outcome_rows(sim, base)
    joins = _join_rows(sim, base)
    rooms = _room_rows(sim, base)
    _waiting_times(sim, rooms, sim.horizon)
    return RunResult(
        scenario=sim.sc,
        run_id=sim.run_id,
        outcomes=outcomes,
        rooms=rooms,
        lost_timeline=sim.records.lost_timeline,
        violations=[*sim.step_violations, *_violations(sim)] if sim.check_invariants else [],
        invariants_checked=sim.check_invariants,
        stationary_online=sim.stationary_online,
        adversary=_adversary(sim),
        faults=_faults(sim),
        joins=joins,
        trace_fit=_trace_fit(sim.sc),
    )


def _outcome_rows(sim: FinishedRun, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per reset and encrypted room of the user (``OUTCOME_COLUMNS``)."""
    records = sim.records
    rows = []
    for o in records.outcomes:
        if not o.snapshot:
            records.snapshot(o)  # still waiting at the horizon
        rows.append(
            {
                **base,
                "reset_id": o.reset_id,
                "reason": o.reason,
                "user": f"u{o.user}",
                "room": o.room,
                "room_type": o.room_type,
                "room_size": o.room_size,
                "reset_at": o.reset_at,
                "locked_out_at": o.locked_out_at,
                "relogin_at": o.relogin_at,
                "holders_online_at_relogin": o.holders_online_at_relogin,
                "holders_at_relogin": o.holders_at_relogin,
                "served_at": o.served_at,
                "restored_at": o.restored_at,
                "restored": not math.isnan(o.restored_at),
                "restored_via": o.restored_via,
                "superseded_at": o.superseded_at,
                "left_at": o.left_at,
                "lost": not sim.keys.holders(o.room),
                "old_keys_recovered": o.old_keys_recovered,
                "history_messages": o.history_messages,
                "history_unreadable": o.history_unreadable,
            }
        )
    return rows


def _trace_fit(sc: Scenario) -> dict[str, Any] | None:
    if sc.get("churn.model") != "collegemsg":
        return None
    return fit_report(collegemsg_sessions(sc))


def _join_rows(sim: FinishedRun, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per join (``JOIN_COLUMNS``)."""
    rows = []
    for j in sim.records.joins:
        if not j.snapshot:
            sim.records.snapshot_join(j)  # still a member at the horizon
        rows.append(
            {
                **base,
                "join_id": j.join_id,
                "user": f"u{j.user}",
                "room": j.room,
                "room_size": j.room_size,
                "kind": j.kind,
                "history_visibility": j.history_visibility,
                "joined_at": j.joined_at,
                "bundle_keys": j.bundle_keys,
                "served_at": j.served_at,
                "keyed_at": j.keyed_at,
                "keyed": not math.isnan(j.keyed_at),
                "left_at": j.left_at,
                "closed_at": j.closed_at,
                "history_messages": j.history_messages,
                "history_unreadable": j.history_unreadable,
                "later_messages": j.later_messages,
                "later_unreadable": j.later_unreadable,
            }
        )
    return rows


def _room_rows(sim: FinishedRun, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per room (``ROOM_COLUMNS``); the waiting times are filled in afterwards."""
    rows = []
    for rid in sim.room_ids:
        room = sim.server.room(rid)
        stats = sim.records.room_stats[rid]
        rows.append(
            {
                **base,
                "room": rid,
                "room_type": room.t,
                "room_size": len(room.subscriptions),
                "encrypted": room.encrypted,
                "waiting_s": stats.waiting_s,
                "no_online_holder_s": stats.no_online_holder_s,
                "lost": room.encrypted and not sim.keys.holders(rid),
                "lost_at": stats.lost_at,
                "room_key_resets": stats.room_key_resets,
                "room_key_rotations": stats.room_key_rotations,
                "messages": stats.messages,
            }
        )
    return rows


def _violations(sim: FinishedRun, *, settled: bool = True) -> list[str]:
    """The protocol's invariants, checked on the server and the devices as they are (at the
    horizon; or between two steps of the run, ``settled=False``: without the invariants that
    hold only once the key distribution has caught up)."""
    from protocol import check_all

    clients = {sim.user_ids[u]: d.client for u, d in enumerate(sim.devices) if d.client is not None}
    phones = {sim.user_ids[u]: [d.client] for u, d in sim.devices.phones.items() if d.client is not None}
    devices = sim.devices
    passwords = [p for p in devices.e2e_password if p]
    keys = [(f"recovery key of {sim.user_ids[u]}", k) for u, k in devices.recovery_keys.items()]
    found = check_all(
        sim.server,
        clients,
        sim.ledger,
        passwords=passwords,
        secret_keys=keys,
        settled=settled,
        other_devices=phones,
    )
    return [str(v) for v in found]


def _faults(sim: FinishedRun) -> dict[str, Any] | None:
    """What the faulty network did, and who it left waiting nowhere (None on a perfect one)."""
    from protocol.invariants import nobody_silently_lost

    transport, restarts = sim.devices.transport, sim.devices.server_restarts
    if transport is None and not restarts:
        return None
    counters = dict(transport.counters) if transport is not None else {}
    return {
        **counters,
        "server_restarts": restarts,
        "members_silently_lost": len(nobody_silently_lost(sim.server)),
    }


def _adversary(sim: FinishedRun) -> dict[str, Any] | None:
    """What a malicious server obtained (None when the server is honest)."""
    from protocol.adversary import AdversarialServer

    server = sim.server
    if not isinstance(server, AdversarialServer):
        return None
    planted = server.planted_accepted()
    return {
        "attacks": [name for name in ATTACKS if getattr(server.attacks, name)],
        "mitigation": sim.sc.get("adversary.mitigation"),
        "rooms_with_stolen_keys": len(server.attacker.rooms_obtained()),
        "room_keys_stolen": len(server.attacker.stolen),
        "e2e_passwords_stolen": len(server.attacker.passwords),
        "planted_keys_accepted": len(planted),
        "rooms_with_planted_keys": len({room for room, _ in planted}),
        "messages_readable_by_server": server.readable_messages(),
    }


def _waiting_times(sim: FinishedRun, rooms: list[dict[str, Any]], horizon: float) -> None:
    """Per room: time somebody waited for its key after a reset, and how much of that time
    no holder was online.

    A waiting period runs from a resetting member's relogin until its row closes (restored,
    superseded by the member's next reset, the member left) or the horizon; its holders are the
    members who held the current key at that relogin.
    """
    waiting: dict[str, list[tuple[float, float]]] = {}
    uncovered: dict[str, list[tuple[float, float]]] = {}
    for o in sim.records.outcomes:
        if math.isnan(o.relogin_at):
            continue
        end = min(o.closed_at, horizon) if not math.isnan(o.closed_at) else horizon
        if end <= o.relogin_at:
            continue
        waiting.setdefault(o.room, []).append((o.relogin_at, end))
        online: list[tuple[float, float]] = []
        for m in o.holders:
            online += sim.presence.intervals(m, o.relogin_at, end)
        uncovered.setdefault(o.room, []).extend(_complement(_merge(online), o.relogin_at, end))
    by_room = {r["room"]: r for r in rooms}
    for rid, spans in waiting.items():
        by_room[rid]["waiting_s"] = sum(b - a for a, b in _merge(spans))
        by_room[rid]["no_online_holder_s"] = sum(b - a for a, b in _merge(uncovered.get(rid, [])))


def _complement(merged: list[tuple[float, float]], a: float, b: float) -> list[tuple[float, float]]:
    out, cursor = [], a
    for x, y in merged:
        if x > cursor:
            out.append((cursor, min(x, b)))
        cursor = max(cursor, y)
    if cursor < b:
        out.append((cursor, b))
    return out


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
