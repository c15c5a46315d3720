"""The crypto layer of Rocket.Chat's E2EE, behind one narrow interface with two backends.

Theory of operation: protocol code asks :func:`get_backend` for a backend by name — ``"real"``
(Rocket.Chat's exact formats, via ``cryptography``) or ``"symbolic"`` (tokens and records, no
arithmetic, for simulations at scale) — and uses only the :class:`CryptoBackend` methods.  Keys are
opaque handles; stored and transmitted values are texts/dicts in Rocket.Chat's shapes (spec §1).
Failures are :class:`~protocol.errors.CryptoError` (does not open or parse) or
:class:`~protocol.errors.ValidationError` (wrong argument); nothing else escapes.  Randomness is
always the caller's ``entropy``.

Legacy (v1) writers and JWK converters of the real backend live in :mod:`protocol.crypto.real`;
reproducible test vectors in :mod:`protocol.crypto.vectors`.
"""

from __future__ import annotations

from typing import Final

from protocol.crypto.base import CryptoBackend, KeyPair, PrivateKey, RoomKey
from protocol.crypto.passphrase import generate_passphrase
from protocol.crypto.real import RealBackend
from protocol.crypto.symbolic import SymbolicBackend
from protocol.errors import ValidationError

__all__ = [
    "BACKENDS",
    "CryptoBackend",
    "KeyPair",
    "PrivateKey",
    "RealBackend",
    "RoomKey",
    "SymbolicBackend",
    "generate_passphrase",
    "get_backend",
]

_BY_NAME: Final[dict[str, type[CryptoBackend]]] = {
    RealBackend.name: RealBackend,
    SymbolicBackend.name: SymbolicBackend,
}
#: the names :func:`get_backend` accepts
BACKENDS: Final[tuple[str, ...]] = tuple(_BY_NAME)


def get_backend(name: str) -> CryptoBackend:
    """A backend by name (``"real"`` or ``"symbolic"``); ValidationError naming an unknown value."""
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValidationError(
            message=f"unknown crypto backend {name!r}; expected one of {', '.join(BACKENDS)}",
            backend=name,
        )
    return cls()
