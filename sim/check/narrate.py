"""A counterexample a person can read: the shortest trace replayed step by step, with what each
step did to the keys, as a numbered listing, a sequence diagram (SVG), and a pytest test.

Theory of operation.  :func:`narrate` rebuilds the initial world of a search (the same scope,
policy and seed give the same world), applies the trace's operations one at a time and, around
each, takes a :func:`key_view`: where every room key is (the room's current kid on the server,
the copy wrapped for each member, suggestions and who signed them, the kids each device holds)
and each user's key pair and login state.  The difference of two views is what the step moved
(:func:`moves`).  Kids are random; they are named ``k1``, ``k2``, ... by first appearance, users
and rooms by the names the search prints.  May import :mod:`protocol` and the checker's
:mod:`.world`, :mod:`.membership` and :mod:`.operations`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .membership import kid_of
from .operations import Op, apply, describe
from .world import World

__all__ = ["Place", "Step", "key_view", "moves", "narrate", "pytest_source", "sequence_svg"]


@dataclass(frozen=True, slots=True)
class Step:
    """One operation of the trace: who did it, what it was, and what moved."""

    number: int
    actor: str  # "u1", or "server" for the settle
    text: str
    moved: tuple[str, ...]
    violations: tuple[str, ...] = ()


@dataclass(slots=True)
class _Kids:
    """Random kids named ``k1``, ``k2``, ... by first appearance."""

    names: dict[str, str] = field(default_factory=dict)

    def __call__(self, kid: str | None) -> str:
        if not kid:
            return "none"
        if kid not in self.names:
            self.names[kid] = f"k{len(self.names) + 1}"
        return self.names[kid]


def _kid_of(wrapped: str | None) -> str | None:
    return kid_of(wrapped, unreadable="?")


#: a place in a :func:`key_view`: what it is, the user index and the room index it concerns
Place = tuple[str, int | None, int | None]


def key_view(w: World) -> dict[Place, Any]:
    """Where every key is in ``w`` (kids raw: :func:`moves` names them)."""
    srv = w.d.server
    view: dict[Place, Any] = {}
    for i, uid in enumerate(w.users):
        client = w.client(i)
        pub = srv.user(uid).e2e_public_key
        view["pair", i, None] = hashlib.sha256(pub.encode()).hexdigest()[:8] if pub else None
        view["state", i, None] = f"{'online' if client.online else 'offline'}, {client.state.value}"
        phone = w.phone(i)
        if phone is not None:
            view["phone state", i, None] = f"{'online' if phone.online else 'offline'}, {phone.state.value}"
    for r, rid in enumerate(w.rooms):
        room = srv.room(rid)
        view["room", None, r] = room.e2e_key_id
        for i, uid in enumerate(w.users):
            sub = room.subscriptions.get(uid)
            view["sub", i, r] = None if sub is None else _kid_of(sub.e2e_key)
            suggested = None if sub is None else _kid_of(sub.e2e_suggested_key)
            view["suggested", i, r] = (
                None if sub is None or suggested is None else (suggested, sub.suggestion_signer)
            )
            view["member", i, r] = sub is not None
            view["holds", i, r] = tuple(sorted(w.client(i).held_keys(rid)))
            if (phone := w.phone(i)) is not None:
                view["phone holds", i, r] = tuple(sorted(phone.held_keys(rid)))
    return view


def moves(w: World, before: dict[Place, Any], after: dict[Place, Any], kid: _Kids) -> list[str]:
    """What changed between two views, as sentences."""
    out = []
    for place, old in before.items():
        new = after[place]
        if new == old:
            continue
        what, i, room = place
        u = f"u{i}" if i is not None else ""
        r = w.names[w.rooms[room]] if room is not None else ""
        if what == "pair":
            out.append(f"{u} has a new key pair" if new else f"{u} has no key pair on the server")
        elif what == "state":
            out.append(f"{u}: {old} -> {new}")
        elif what == "phone state":
            out.append(f"{u}'s phone: {old} -> {new}")
        elif what == "room":
            out.append(f"server: {r}'s current key {kid(old)} -> {kid(new)}")
        elif what == "member":
            out.append(f"{u} {'joins' if new else 'leaves'} {r}")
        elif what == "sub":
            out.append(
                f"server: stores {kid(new)} of {r} wrapped for {u}"
                if new
                else f"server: no key of {r} for {u} any more"
            )
        elif what == "suggested":
            if new:
                signer = f", signed by {w.names.get(new[1], new[1])}" if new[1] else ""
                out.append(f"server: holds a suggested key {kid(new[0])} of {r} for {u}{signer}")
            else:
                out.append(f"server: the suggestion for {u} in {r} is gone")
        elif what in ("holds", "phone holds"):
            device = "device" if what == "holds" else "phone"
            gained, lost = sorted(set(new) - set(old)), sorted(set(old) - set(new))
            if gained:
                out.append(f"{u}'s {device} now holds {', '.join(kid(k) for k in gained)} of {r}")
            if lost:
                out.append(f"{u}'s {device} drops {', '.join(kid(k) for k in lost)} of {r}")
    return out


def narrate(
    users: int,
    rooms: int,
    policy: str,
    seed: int,
    ops: Sequence[Op],
    violations: Sequence[str] = (),
    *,
    late_after_login: bool = False,
    plan: str = "mixed",
    phones: int = 0,
) -> tuple[World, list[Step]]:
    """Replay ``ops`` from the initial world of a search (its scope, policy, seed and options);
    each step with what it moved.  The last step carries ``violations`` (what the search found)."""
    w = World(users, rooms, policy, seed=seed, late_after_login=late_after_login, plan=plan, phones=phones)
    kid = _Kids()
    for rid in w.rooms:  # the initial keys are named first, in room order
        kid(w.d.server.room(rid).e2e_key_id)
    steps = []
    for number, op in enumerate(ops, 1):
        before = key_view(w)
        text = w.name(describe(w, op))
        found = [w.name(str(v)) for v in apply(w, op)]
        steps.append(
            Step(number, f"u{op.user}", text, tuple(moves(w, before, key_view(w), kid)), tuple(found))
        )
    if steps and violations and not steps[-1].violations:
        last = steps[-1]
        steps[-1] = Step(last.number, last.actor, last.text, last.moved, tuple(violations))
    return w, steps


def listing(steps: Sequence[Step]) -> list[str]:
    """The numbered message-sequence listing: each step, then what it moved, indented."""
    lines = []
    for step in steps:
        lines.append(f"  {step.number}. {step.text}")
        lines += [f"       {line}" for line in step.moved]
        lines += [f"       VIOLATION {v}" for v in step.violations]
    return lines


def pytest_source(
    users: int,
    rooms: int,
    policy: str,
    seed: int,
    ops: Sequence[Op],
    violations: Sequence[str],
    *,
    late_after_login: bool = False,
    plan: str = "mixed",
    phones: int = 0,
    loop: int | None = None,
    waiter: tuple[int, int] | None = None,
) -> str:
    """A pytest module that replays the trace and checks that the search's violations occur; it
    fails once they no longer do (then the fault is fixed, and the test can assert the opposite).
    A lasso (``loop``: where the loop starts in ``ops``; ``waiter``: who waits, in which room) is
    replayed to the loop's start and once round it: the test checks that the loop comes back to
    the same state and that the member waits in every state of it."""
    kinds = sorted({v.split(":", 1)[0] for v in violations})
    option = " --late-after-login" if late_after_login else ""
    option += (f" --plan {plan}" if plan != "mixed" else "") + (f" --phones {phones}" if phones else "")
    world = (
        f"World({users}, {rooms}, {policy!r}, seed={seed}, late_after_login={late_after_login},"
        f" plan={plan!r}, phones={phones})"
    )
    header = f'''"""Replays a counterexample found by: keysim check --users {users} --rooms {rooms} --policy {policy}{option}

The trace ends in: {"; ".join(violations)}
"""
'''
    if loop is not None and waiter is not None:
        prefix = "".join(f"    {op!r},\n" for op in ops[:loop])
        cycle = "".join(f"    {op!r},\n" for op in ops[loop:])
        return f"""{header}
from sim.check import Op, World, apply
from sim.check.identity import exact_key
from sim.check.liveness import waiting

PREFIX = [
{prefix}]
LOOP = [
{cycle}]
WAITER = {waiter!r}  # (user, room)


def test_the_member_still_waits_for_ever() -> None:
    w = {world}
    for op in PREFIX:
        assert apply(w, op) == []
    start = exact_key(w)
    for op in LOOP:
        assert WAITER in waiting(w)
        assert apply(w, op) == []
    assert WAITER in waiting(w)
    assert exact_key(w) == start, "the loop no longer comes back to where it started"
"""
    op_lines = "".join(f"    {op!r},\n" for op in ops)
    return f"""{header}
from sim.check import Op, World, apply
from sim.check.properties import check_eventually, check_state

TRACE = [
{op_lines}]


def test_the_counterexample_still_happens() -> None:
    w = {world}
    found = []
    for op in TRACE:
        found += [str(v) for v in apply(w, op)]
    if not found:
        found = [str(v) for v in check_state(w)]
    if not found:
        found = [str(v) for v in check_eventually(w)[0]]
    kinds = sorted({{v.split(":", 1)[0] for v in found}})
    assert kinds == {kinds!r}, found
"""


def sequence_svg(w: World, steps: Sequence[Step], path: Path) -> None:
    """The trace as a sequence diagram (matplotlib, SVG): a lane per user and one for the
    server; each step an arrow from its user to the server, labelled with the step and what
    it moved; a violation in red."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no backend is chosen for the caller

    lanes = [f"u{i}" for i in range(len(w.users))] + ["server"]
    x = {name: i for i, name in enumerate(lanes)}
    rows = sum(1 + len(s.moved) + len(s.violations) for s in steps)
    fig = Figure(figsize=(3.0 + 2.2 * len(lanes), 1.2 + 0.32 * rows))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.92))
    ax.set_xlim(-0.6, len(lanes) + 2.6)
    ax.set_ylim(rows + 0.8, -1.2)
    ax.axis("off")
    for name, i in x.items():
        ax.plot([i, i], [-0.6, rows + 0.5], color="#bbbbbb", lw=1, zorder=0)
        ax.text(i, -0.9, name, ha="center", va="bottom", fontsize=10, fontweight="bold")
    y = 0.0
    for step in steps:
        start, end = x.get(step.actor, 0), x["server"]
        colour = "#c62828" if step.violations else "#1f4e79"
        ax.annotate(
            "", xy=(end, y), xytext=(start, y), arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.3}
        )
        ax.text(len(lanes) - 0.7, y, f"{step.number}. {step.text}", va="center", fontsize=8.5, color=colour)
        y += 1
        for line in (*step.moved, *(f"VIOLATION {v}" for v in step.violations)):
            red = line.startswith("VIOLATION")
            ax.text(
                len(lanes) - 0.5, y, line, va="center", fontsize=7.5, color="#c62828" if red else "#444444"
            )
            y += 1
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text: searchable, selectable
        fig.savefig(path, metadata={"Title": "keysim check counterexample"}, bbox_inches="tight")
