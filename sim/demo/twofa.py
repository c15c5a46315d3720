"""``keysim 2fa demo``: Rocket.Chat's 2FA lifecycle, step by step, for a person to follow.

This is an adapter over :mod:`protocol` like the simulator: it owns the output and the clock.
The clock is a fixed start time plus explicit offsets, so the walkthrough prints the same codes
on every run for the same ``--seed`` and ``--start``.  :func:`run_demo` runs the walkthrough as
one function per step.  May import :mod:`protocol` only.
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
    """Walk alice through enrolment, log-in, a replay, backup codes and disabling TOTP, printing
    each step to ``out`` (default: stdout); the QR code goes to the terminal and, with ``png``, to
    that file."""
    out = out if out is not None else sys.stdout
    server = Server(profile=profile, entropy=random.Random(seed))
    demo = _Demo(server, start, _Steps(out), DemoResult(profile=server.profile.name))
    _create_user(demo)
    _enable(demo)
    _show_qr(demo.result.url, out, show_qr=show_qr, png=png)
    _validate(demo)
    code = _log_in(demo)
    _replay(demo, code)
    _use_a_backup_code_twice(demo)
    _disable(demo)
    return demo.result


@dataclass
class _Demo:
    """The walkthrough so far: the server, its one user and TOTP secret, the clock and the output."""

    server: Server
    start: float
    step: _Steps
    result: DemoResult
    user: str = ""
    secret: str = ""

    def clock(self, offset: float) -> float:
        return self.start + offset

    def code(self, offset: float) -> str:
        """The TOTP code of the secret at ``offset`` seconds."""
        return totp_lib.totp(self.secret, self.clock(offset))


def _create_user(demo: _Demo) -> None:
    demo.user = demo.server.create_user("alice", password="correct horse", email="alice@example.org")
    demo.step.say(f"Server profile '{demo.server.profile.name}'. Created user alice (id {demo.user}).")


def _enable(demo: _Demo) -> None:
    enrollment = demo.server.totp_enable(demo.user, now=demo.clock(0))
    demo.secret = enrollment.secret
    demo.result.url = enrollment.url
    demo.step.say(
        "2fa:enable -> a temporary secret; nothing is active until a code from it is validated.",
        f"secret: {enrollment.secret}",
        f"otpauth URI: {enrollment.url}",
    )


def _show_qr(url: str, out: TextIO, *, show_qr: bool, png: Path | None) -> None:
    qr = segno.make(url, error="m")
    if show_qr:
        out.write("Scan this with an authenticator app:\n")
        qr.terminal(out=out, compact=True)
    if png is not None:
        qr.save(str(png), scale=8, border=4)
        out.write(f"QR code written to {png}\n")


def _validate(demo: _Demo) -> None:
    first = demo.code(5)
    demo.result.backup_codes = demo.server.totp_validate_temp_token(demo.user, first, now=demo.clock(5))
    demo.step.say(
        f"2fa:validateTempToken with code {first} at t+5 s -> TOTP enabled.",
        "12 backup codes, shown once: " + " ".join(demo.result.backup_codes),
    )


def _log_in(demo: _Demo) -> str:
    """Log in without, then with, a code at t+40 s; returns the code."""
    try:
        demo.server.login(demo.user, "correct horse", now=demo.clock(40))
    except ProtocolError as exc:
        demo.step.say(f"Login with the password only at t+40 s -> refused: {exc.code}.")
    code = demo.code(40)
    token = demo.server.login(demo.user, "correct horse", code=code, now=demo.clock(40))
    demo.step.say(f"Login with the password and code {code} at t+40 s -> session {token[:8]}...")
    return code


def _replay(demo: _Demo, code: str) -> None:
    # The same code again 10 s later, still inside its window, in front of a sensitive action.
    try:
        demo.server.check_two_factor(demo.user, code, now=demo.clock(50), require_second_factor=True)
        demo.result.replay_accepted = True
        verdict = "ACCEPTED (speakeasy is stateless: RFC 6238 section 5.2 replay)"
    except ProtocolError as exc:
        demo.result.replay_accepted = False
        verdict = f"refused ({exc.code}: a time step is accepted only once)"
    demo.step.say(f"Replay: code {code} again at t+50 s for a sensitive action -> {verdict}.")


def _use_a_backup_code_twice(demo: _Demo) -> None:
    server, step = demo.server, demo.step
    backup_code = demo.result.backup_codes[0]
    server.check_two_factor(demo.user, backup_code, now=demo.clock(60), require_second_factor=True)
    step.say(
        f"Backup code {backup_code} at t+60 s -> accepted; {server.totp_codes_remaining(demo.user)} codes remain."
    )
    try:
        server.check_two_factor(demo.user, backup_code, now=demo.clock(70), require_second_factor=True)
        demo.result.backup_reuse_accepted = True
        step.say(f"Backup code {backup_code} again -> ACCEPTED (a defect).")
    except ProtocolError as exc:
        demo.result.backup_reuse_accepted = False
        step.say(f"Backup code {backup_code} again at t+70 s -> refused ({exc.code}): single use.")


def _disable(demo: _Demo) -> None:
    wrong = "000000" if demo.code(90) != "000000" else "111111"
    refused = demo.server.totp_disable(demo.user, wrong, now=demo.clock(90))
    code = demo.code(120)
    demo.result.disabled = demo.server.totp_disable(demo.user, code, now=demo.clock(120))
    demo.step.say(
        f"2fa:disable with a wrong code {wrong} -> {refused}; with code {code} at t+120 s -> "
        f"{demo.result.disabled}. TOTP is now {'off' if demo.result.disabled else 'still on'}."
    )


class _Steps:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._n = 0

    def say(self, headline: str, *details: str) -> None:
        self._n += 1
        self._out.write(f"\n{self._n}. {headline}\n")
        for line in details:
            self._out.write(f"   {line}\n")
