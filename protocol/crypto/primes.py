"""Reproducible RSA prime generation from an injected entropy source.

Theory of operation: ``cryptography`` (OpenSSL) generates RSA keys only from the operating system's
CSPRNG, and no installed library takes a seed; a simulation, however, must give the same key pair
for the same seed.  So for a seeded :class:`random.Random` the real backend draws its primes here:
uniformly random 1024-bit odd candidates with the two top bits set (so that ``n = p * q`` has exactly
2048 bits), a cheap sieve by one ``gcd`` with the product of the small odd primes, then Miller–Rabin
(HAC 4.24).  The key is then assembled by ``cryptography`` from ``p`` and ``q``.

This is *test-grade* generation: the candidates are as good as the entropy source, and a seeded
Mersenne Twister is predictable by design.  Deployments pass ``random.SystemRandom`` and the real
backend then calls OpenSSL instead of this module.  It only knows integers; it never imports
``cryptography``.
"""

from __future__ import annotations

import math
from typing import Final

from protocol.entropy import Entropy, random_bytes

__all__ = ["generate_rsa_primes", "is_probable_prime"]


def _small_odd_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return [i for i in range(3, limit) if sieve[i]]


_SMALL_PRIMES: Final = _small_odd_primes(10_000)
#: one gcd against this product replaces ~1,230 trial divisions
_SMALL_PRIMORIAL: Final = math.prod(_SMALL_PRIMES)
#: Fixed Miller–Rabin bases.  Adversarial composites could be built to fool fixed bases, but our
#: candidates are random, for which 12 rounds leave an error far below 2^-100 (HAC Table 4.4 / FIPS
#: 186-5 C.1 ask for at most 5 random-base rounds at this size).
_MR_BASES: Final = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def is_probable_prime(n: int) -> bool:
    """Miller–Rabin with the fixed bases above (exact for every n < 3.3 * 10^24)."""
    if n < 2:
        return False
    for p in _MR_BASES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(entropy: Entropy, bits: int, public_exponent: int) -> int:
    while True:
        candidate = int.from_bytes(random_bytes(entropy, bits // 8), "big")
        candidate |= (0b11 << (bits - 2)) | 1
        if math.gcd(candidate, _SMALL_PRIMORIAL) != 1:
            continue
        # e must be invertible modulo p - 1 (e is prime, so it must not divide p - 1)
        if math.gcd(candidate - 1, public_exponent) != 1:
            continue
        if is_probable_prime(candidate):
            return candidate


def generate_rsa_primes(
    entropy: Entropy, *, modulus_bits: int = 2048, public_exponent: int = 65537
) -> tuple[int, int]:
    """Two distinct primes whose product has exactly ``modulus_bits`` bits."""
    half = modulus_bits // 2
    while True:
        p = _random_prime(entropy, half, public_exponent)
        q = _random_prime(entropy, half, public_exponent)
        # FIPS 186-5 A.1.3: |p - q| > 2^(nlen/2 - 100), so n cannot be factored by Fermat's method
        if abs(p - q) > 1 << (half - 100):
            return p, q
