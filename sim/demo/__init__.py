"""Demonstrations for a person at a terminal: ``keysim 2fa demo`` (:mod:`.twofa`).

May import :mod:`protocol` only.
"""

from .twofa import run_demo

__all__ = ["run_demo"]
