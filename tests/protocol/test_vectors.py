"""RFC 4226 Appendix D and RFC 6238 Appendix B through keysim's own TOTP code path."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from protocol import totp

VECTORS = Path(__file__).parents[1] / "vectors"


def records(name: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in (VECTORS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        if not line:
            if current:
                out.append(current)
            current = {}
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    if current:
        out.append(current)
    return out


HOTP = records("rfc4226-hotp.txt")
TOTP = records("rfc6238-totp.txt")


def test_vector_files_are_complete() -> None:
    assert len(HOTP) == 10
    assert len(TOTP) == 18
    assert {r["MODE"] for r in TOTP} == {"SHA1", "SHA256", "SHA512"}


@pytest.mark.parametrize("rec", HOTP, ids=lambda r: f"counter{r['COUNTER']}")
def test_rfc4226_hotp(rec: dict[str, str]) -> None:
    secret = base64.b32encode(rec["SECRET_ASCII"].encode()).decode()
    assert secret == rec["SECRET_BASE32"]
    assert totp.hotp(secret, int(rec["COUNTER"]), digits=int(rec["DIGITS"])) == rec["HOTP"]


@pytest.mark.parametrize("rec", TOTP, ids=lambda r: f"{r['MODE']}-{r['TIME']}")
def test_rfc6238_totp(rec: dict[str, str]) -> None:
    secret = base64.b32encode(rec["SECRET_ASCII"].encode()).decode()
    assert secret == rec["SECRET_BASE32"]
    now = float(rec["TIME"])
    assert totp.time_step(now, int(rec["PERIOD"])) == int(rec["T_HEX"], 16)
    value = totp.totp(
        secret, now, digits=int(rec["DIGITS"]), algorithm=rec["MODE"].lower(), period=int(rec["PERIOD"])
    )
    assert value == rec["TOTP"]
