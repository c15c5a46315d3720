"""``keysim check``: every interleaving of the E2EE key lifecycle within a small scope.

Theory of operation.  A *world* (:mod:`.world`) is a symbolic-crypto deployment with N users and
M rooms, all logged in, by a room plan (``mixed``: u0 has TOTP and owns a group of everyone, then
DMs and pairs; ``alike``: every user a co-owner with TOTP of every room), and with ``phones``
some users' second devices.  :func:`explore` (:mod:`.explorer`) applies every enabled
operation (:mod:`.operations`) to every state, breadth-first, so the first violation found has a
shortest trace.  States are told apart by :func:`canonical` (:mod:`.identity`), which renames
random names by first appearance and leaves out what cannot change what happens next.  Safety is
checked after every step, during it (:mod:`.actions`, :mod:`.step_checks`) and on the state
(:mod:`.properties`); liveness from every new state, after a settle (:mod:`.properties`), and
under fairness on the state graph the search built, with a lasso when a member waits for ever
(:mod:`.liveness`).

The modules, in layers (each imports only those above it):

* :mod:`.world`: the deployment, its names and clock, small entropy sources, snapshots;
* :mod:`.membership`: who is in a room, who holds its key, who a legacy client serves;
* :mod:`.step_checks`: the checks made around every step (queue left, ``live`` handshakes);
* :mod:`.actions`: what each operation does, and the checks it makes as it happens;
* :mod:`.operations`: the operations table, guards, and applying one;
* :mod:`.properties`: safety on a state, liveness after a settle;
* :mod:`.identity`: the canonical walk of a state, the set of states seen;
* :mod:`.liveness`: the state graph, strongly fair cycles, lassos;
* :mod:`.explorer`: the breadth-first search and its :class:`CheckResult`;
* :mod:`.narrate`: a counterexample replayed step by step with the keys each step moved, as a
  listing, a sequence diagram and a pytest test.

May import :mod:`protocol` only: the checker drives the protocol directly, not the simulator.
"""

from __future__ import annotations

from .explorer import CheckResult, Progress, compare, explore
from .identity import Seen, canonical
from .operations import OPERATIONS, Op, apply, describe, enabled_ops
from .world import STEP_S, World

__all__ = [
    "OPERATIONS",
    "STEP_S",
    "CheckResult",
    "Op",
    "Progress",
    "Seen",
    "World",
    "apply",
    "canonical",
    "compare",
    "describe",
    "enabled_ops",
    "explore",
]
