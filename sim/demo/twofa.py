"""``keysim 2fa demo``: Rocket.Chat's 2FA lifecycle, step by step, for a person to follow.

This is an adapter over :mod:`protocol` like the simulator: it owns the output and the clock.
The clock is a fixed start time plus explicit offsets, so the walkthrough prints the same codes
on every run for the same ``--seed`` and ``--start``.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import segno

from protocol import ProtocolError, Server
from protocol import totp as totp_lib

__all__ = ["DemoResult", "run_demo"]

#: 2026-01-01T00:00:00Z: the default start of the demo clock.
DEFAULT_START = 1_767_225_600.0


@dataclass
class DemoResult:
    """What happened, for tests and for the exit status."""

    profile: str
    url: str = ""
    backup_codes: list[str] = field(default_factory=list)
    replay_accepted: bool | None = None
    backup_reuse_accepted: bool | None = None
    disabled: bool = False


def run_demo(
    *,
    profile: str = "rocketchat",
    seed: int = 0,
    start: float = DEFAULT_START,
    png: Path | None = None,
    show_qr: bool = True,
    out: TextIO | None = None,
) -> DemoResult:
    out = out if out is not None else sys.stdout
    server = Server(profile=profile, entropy=random.Random(seed))
    result = DemoResult(profile=server.profile.name)
    step = _Steps(out)

    def clock(offset: float) -> float:
        return start + offset

    alice = server.create_user("alice", password="correct horse", email="alice@example.org")
    step.say(f"Server profile '{server.profile.name}'. Created user alice (id {alice}).")

    enrollment = server.totp_enable(alice, now=clock(0))
    result.url = enrollment.url
    step.say(
        "2fa:enable -> a temporary secret; nothing is active until a code from it is validated.",
        f"secret: {enrollment.secret}",
        f"otpauth URI: {enrollment.url}",
    )
    qr = segno.make(enrollment.url, error="m")
    if show_qr:
        out.write("Scan this with an authenticator app:\n")
        qr.terminal(out=out, compact=True)
    if png is not None:
        qr.save(str(png), scale=8, border=4)
        out.write(f"QR code written to {png}\n")

    first = totp_lib.totp(enrollment.secret, clock(5))
    result.backup_codes = server.totp_validate_temp_token(alice, first, now=clock(5))
    step.say(
        f"2fa:validateTempToken with code {first} at t+5 s -> TOTP enabled.",
        "12 backup codes, shown once: " + " ".join(result.backup_codes),
    )

    try:
        server.login(alice, "correct horse", now=clock(40))
    except ProtocolError as exc:
        step.say(f"Login with the password only at t+40 s -> refused: {exc.code}.")
    code = totp_lib.totp(enrollment.secret, clock(40))
    token = server.login(alice, "correct horse", code=code, now=clock(40))
    step.say(f"Login with the password and code {code} at t+40 s -> session {token[:8]}...")

    # The same code again 10 s later, still inside its window, in front of a sensitive action.
    try:
        server.check_two_factor(alice, code, now=clock(50), require_second_factor=True)
        result.replay_accepted = True
        verdict = "ACCEPTED (speakeasy is stateless: RFC 6238 section 5.2 replay)"
    except ProtocolError as exc:
        result.replay_accepted = False
        verdict = f"refused ({exc.code}: a time step is accepted only once)"
    step.say(f"Replay: code {code} again at t+50 s for a sensitive action -> {verdict}.")

    backup_code = result.backup_codes[0]
    server.check_two_factor(alice, backup_code, now=clock(60), require_second_factor=True)
    step.say(
        f"Backup code {backup_code} at t+60 s -> accepted; {server.totp_codes_remaining(alice)} codes remain."
    )
    try:
        server.check_two_factor(alice, backup_code, now=clock(70), require_second_factor=True)
        result.backup_reuse_accepted = True
        step.say(f"Backup code {backup_code} again -> ACCEPTED (a defect).")
    except ProtocolError as exc:
        result.backup_reuse_accepted = False
        step.say(f"Backup code {backup_code} again at t+70 s -> refused ({exc.code}): single use.")

    wrong = "000000" if totp_lib.totp(enrollment.secret, clock(90)) != "000000" else "111111"
    refused = server.totp_disable(alice, wrong, now=clock(90))
    code = totp_lib.totp(enrollment.secret, clock(120))
    result.disabled = server.totp_disable(alice, code, now=clock(120))
    step.say(
        f"2fa:disable with a wrong code {wrong} -> {refused}; with code {code} at t+120 s -> "
        f"{result.disabled}. TOTP is now {'off' if result.disabled else 'still on'}."
    )
    return result


class _Steps:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._n = 0

    def say(self, headline: str, *details: str) -> None:
        self._n += 1
        self._out.write(f"\n{self._n}. {headline}\n")
        for line in details:
            self._out.write(f"   {line}\n")
