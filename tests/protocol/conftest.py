from __future__ import annotations

import dataclasses
import random

import pytest

from protocol import HARDENED, Profile, Server

#: 2026-01-01T00:00:00Z, a time step boundary (divisible by 30).
T0 = 1_767_225_600.0

#: The hardened profile with a cheap scrypt cost, for tests that hash many backup-code sets.
HARDENED_FAST: Profile = dataclasses.replace(HARDENED, backup_scrypt_n=2**4)

PROFILE_NAMES = ["rocketchat", "hardened"]


def make_server(profile: str | Profile = "rocketchat", seed: int = 0, **settings: object) -> Server:
    from protocol import Settings

    return Server(Settings(**settings), profile=profile, entropy=random.Random(seed))  # type: ignore[arg-type]


@pytest.fixture(params=PROFILE_NAMES)
def profile_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)
