"""``keysim bench --crypto``: one reset-and-restore cycle through the protocol, per backend.

The cycle is the protocol path the simulator runs thousands of times: a member resets its key,
logs in again (a new key pair, a new 12-word password, the private key wrapped under it), a
holder's distribution loop wraps the room key for the new public key, and the member opens and
accepts it.  The same code runs with the ``real`` backend (Rocket.Chat's formats, RSA-2048,
PBKDF2 100,000 iterations) and the ``symbolic`` one; the ratio of their medians is what makes
100,000-user simulations possible.  May import :mod:`protocol`; it drives no simulation.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, TextIO

from protocol import Deployment

__all__ = ["crypto_cycle"]


def _cycle_times(crypto: str, cycles: int) -> list[float]:
    d = Deployment(crypto=crypto, seed=1)
    alice, carol = d.add_user("alice"), d.add_user("carol")
    for uid in (alice, carol):
        d.login(uid, now=0)
    room = d.server.create_private_group(alice, "team", [carol], now=1)
    d.pump(1)
    times = []
    now = 10.0
    for _ in range(cycles):
        started = time.perf_counter()
        d.reset(carol, now=now)
        d.login(carol, now=now + 1)
        d.tick(alice, now=now + 2)
        times.append(time.perf_counter() - started)
        if not d.client(carol).holds_current_key(room):
            raise RuntimeError(f"{crypto}: the room did not come back")
        now += 100.0
    return times


def crypto_cycle(out: TextIO, *, cycles: int = 5) -> dict[str, Any]:
    """Median seconds per cycle for each backend, and their ratio; printed to ``out``."""
    figures: dict[str, Any] = {"cycles": cycles}
    for crypto in ("symbolic", "real"):
        out.write(f"  {crypto}: {cycles} reset-and-restore cycles ...\n")
        out.flush()
        times = _cycle_times(crypto, cycles)
        figures[crypto] = {"median_s": statistics.median(times), "max_s": max(times)}
    ratio = figures["real"]["median_s"] / figures["symbolic"]["median_s"]
    figures["ratio_real_to_symbolic"] = ratio
    out.write(
        f"reset-and-restore cycle: real {1000 * figures['real']['median_s']:.1f} ms, "
        f"symbolic {1e6 * figures['symbolic']['median_s']:.0f} µs (median of {cycles}); "
        f"symbolic is {ratio:,.0f}x faster (target: at least 100x)\n"
    )
    return figures
