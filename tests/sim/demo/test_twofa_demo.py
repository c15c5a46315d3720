"""``keysim 2fa demo``: the 2FA walkthrough (sim/demo/twofa.py) under both profiles, its
reproducibility, and a bad ``--png``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.cli import main


@pytest.mark.parametrize("profile", ["rocketchat", "hardened"])
def test_demo_walkthrough(profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "qr.png"
    assert main(["2fa", "demo", "--profile", profile, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "otpauth://totp/Rocket.Chat:alice?secret=" in out
    assert ("&issuer=Rocket.Chat" in out) == (profile == "hardened")
    assert "█" in out or "▀" in out  # the QR code drawn in the terminal
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    replay = next(line for line in out.splitlines() if "Replay" in line)
    assert ("ACCEPTED" in replay) == (profile == "rocketchat")
    assert "refused" in next(line for line in out.splitlines() if "again at t+70" in line)
    assert "TOTP is now off" in out


def test_demo_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    main(["2fa", "demo", "--no-qr", "--seed", "7"])
    first = capsys.readouterr().out
    main(["2fa", "demo", "--no-qr", "--seed", "7"])
    assert capsys.readouterr().out == first


def test_bad_png_path_exits_2_without_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "qr.png"
    assert main(["2fa", "demo", "--png", str(target)]) == 2
    captured = capsys.readouterr()
    assert "--png" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
    assert not target.parent.exists()
    assert main(["2fa", "demo", "--png", str(tmp_path / "qr.jpg")]) == 2
