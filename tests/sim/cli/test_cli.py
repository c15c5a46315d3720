"""The ``keysim`` command line: help, the console script, ``keysim vectors``, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "2fa" in capsys.readouterr().out


def test_console_script_bad_profile_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "2fa", "demo", "--profile", "paranoid"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--profile" in proc.stderr and "Traceback" not in proc.stderr


def test_vectors_command_writes_openable_cases(tmp_path: Path) -> None:
    import json

    from protocol.crypto import get_backend
    from protocol.crypto.real import private_jwk

    out = tmp_path / "e2ee.json"
    assert main(["vectors", "--out", str(out), "--seed", "3"]) == 0
    cases = json.loads(out.read_text())["cases"]
    kinds = {c["kind"] for c in cases}
    assert {"private_key_v2", "private_key_v1", "room_key", "message_v2"} <= kinds
    real = get_backend("real")
    for case in cases:
        if case["kind"].startswith("private_key"):
            key = real.decrypt_private_key(
                case["private_key"], user_id=case["user_id"], password=case["password"]
            )
            assert private_jwk(key)["d"] == case["private_jwk"]["d"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_vectors_bad_out_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "--out", str(tmp_path / "no" / "x.json")]) == 2
    assert "--out" in capsys.readouterr().err
