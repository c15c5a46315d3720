"""Named random streams derived from one root seed.

Each concern of a run (churn, resets, topology, crypto, traffic, ...) draws from its own stream,
so adding a stream or drawing more from one never shifts another (style guide section 3).  A
stream's seed is a hash of the root seed and the stream's name, so streams are independent of the
order in which they are created.

:func:`unit` is a counter-based uniform: a pure function of (root seed, name, integers), for
quantities that must be generated lazily and in any order, such as one user's n-th online session.
It is SplitMix64's finaliser over a BLAKE2 key, which is cheap and statistically adequate for
simulation (not for cryptography).  May import the standard library and numpy, nothing else of
:mod:`sim`.
"""

from __future__ import annotations

import hashlib
import random

import numpy

__all__ = ["poisson", "stream", "stream_seed", "unit"]

_MASK = (1 << 64) - 1


def stream_seed(root_seed: int, name: str) -> int:
    """A 64-bit seed for the stream ``name`` under ``root_seed``."""
    digest = hashlib.blake2b(f"{root_seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stream(root_seed: int, name: str) -> random.Random:
    """An independent ``random.Random`` for one named concern."""
    return random.Random(stream_seed(root_seed, name))


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def unit(key: int, *counters: int) -> float:
    """A uniform number in (0, 1) determined by ``key`` and ``counters`` alone."""
    z = key
    for c in counters:
        z = _mix(z ^ (c & _MASK))
    z = _mix(z)
    return ((z >> 11) + 0.5) / float(1 << 53)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count, drawn by numpy from a seed taken from ``rng`` (deterministic)."""
    if mean <= 0:
        return 0
    return int(numpy.random.default_rng(rng.getrandbits(64)).poisson(mean))
