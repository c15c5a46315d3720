"""Injected randomness.

Nothing in :mod:`protocol` reads global randomness. Every object that needs random bits takes an
*entropy source*: any :class:`random.Random`.  Simulations and tests pass a seeded ``random.Random``
so that runs are reproducible; the default is :class:`random.SystemRandom`, i.e. the operating
system's CSPRNG, which is what a deployment would use.

The helpers below are the only ways the package turns an entropy source into bytes, identifiers
and strings, so that a seeded source yields the same values on every platform.
"""

from __future__ import annotations

import random
import uuid

__all__ = ["Entropy", "choice_string", "default_entropy", "random_bytes", "uuid4"]

#: An entropy source. ``random.SystemRandom`` (the OS CSPRNG) or a seeded ``random.Random``.
Entropy = random.Random


def default_entropy() -> Entropy:
    """The operating system's CSPRNG, used when the caller injects nothing."""
    return random.SystemRandom()


def random_bytes(entropy: Entropy, n: int) -> bytes:
    """``n`` random bytes from ``entropy`` (``os.urandom`` under ``SystemRandom``)."""
    return entropy.randbytes(n)


def uuid4(entropy: Entropy) -> str:
    """A random (version 4) UUID in its canonical text form."""
    return str(uuid.UUID(int=entropy.getrandbits(128), version=4))


def choice_string(entropy: Entropy, alphabet: str, length: int) -> str:
    """``length`` characters drawn uniformly and independently from ``alphabet``: the characters
    ``entropy.choice(alphabet)`` would draw one by one."""
    if type(entropy) is not random.Random or not alphabet:
        return "".join(entropy.choice(alphabet) for _ in range(length))
    # random.Random.choice draws an index by rejection, getrandbits(n.bit_length()) until it is
    # below n (CPython's _randbelow_with_getrandbits): the same draws without two calls a
    # character, as ids and tokens are most of a large simulation's draws
    getrandbits, n = entropy.getrandbits, len(alphabet)
    k = n.bit_length()
    out = []
    for _ in range(length):
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        out.append(alphabet[r])
    return "".join(out)
