from __future__ import annotations

import dataclasses
import random

import pytest

from protocol import HARDENED, Client, Deployment, Profile, Server, Settings

#: 2026-01-01T00:00:00Z, a time step boundary (divisible by 30).
T0 = 1_767_225_600.0

#: The hardened profile with a cheap scrypt cost, for tests that hash many backup-code sets.
HARDENED_FAST: Profile = dataclasses.replace(HARDENED, backup_scrypt_n=2**4)

PROFILE_NAMES = ["rocketchat", "hardened"]


def make_server(profile: str | Profile = "rocketchat", seed: int = 0, **settings: object) -> Server:
    return Server(Settings(**settings), profile=profile, entropy=random.Random(seed))  # type: ignore[arg-type]


@pytest.fixture(params=PROFILE_NAMES)
def profile_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def e2e_deployment(policy: str, *, crypto: str = "symbolic", seed: int = 0) -> Deployment:
    """A deployment with its default settings: E2EE on and every new room encrypted; no e-mail
    2FA, so a user without TOTP passes the 2FA gate with its password."""
    return Deployment(policy=policy, crypto=crypto, seed=seed)


def read(d: Deployment, client: Client, rid: str) -> list[str | None]:
    """What ``client`` shows for each message of ``rid``: the text, or None."""
    out = []
    for m in d.server.messages(rid):
        plain = client.decrypt(m)
        out.append(None if plain is None else plain["msg"])
    return out
