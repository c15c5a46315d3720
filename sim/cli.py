"""The ``keysim`` command line.

Every subcommand validates its input before doing any work; bad input exits with status 2 and a
one-line message naming the offending option or key, without a traceback and without leaving
partial output behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from protocol import PROFILES, ProtocolError

from . import __version__

__all__ = ["main", "run"]


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


def _cmd_2fa_demo(args: argparse.Namespace) -> int:
    from .demo2fa import run_demo

    png: Path | None = args.png
    if png is not None and not png.parent.exists():
        raise UsageError(f"--png: directory {str(png.parent)!r} does not exist")
    if png is not None and png.suffix.lower() != ".png":
        raise UsageError(f"--png: file name must end in .png, got {str(png)!r}")
    result = run_demo(profile=args.profile, seed=args.seed, png=png, show_qr=not args.no_qr)
    return 0 if result.disabled else 1


def _cmd_vectors(args: argparse.Namespace) -> int:
    from protocol.crypto.vectors import dumps_vectors, make_vectors

    from .atomic import atomic_write_text

    out: Path | None = args.out
    if out is not None and not out.parent.exists():
        raise UsageError(f"--out: directory {str(out.parent)!r} does not exist")
    text = dumps_vectors(make_vectors(args.seed))
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keysim",
        description=(
            "Reference implementation and simulator of Rocket.Chat's account security: "
            "two-factor authentication and the end-to-end encryption key lifecycle."
        ),
    )
    parser.add_argument("--version", action="version", version=f"keysim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    twofa = commands.add_parser(
        "2fa",
        help="two-factor authentication tools",
        description="Two-factor authentication as Rocket.Chat has it, and a hardened variant.",
    )
    twofa_commands = twofa.add_subparsers(dest="twofa_command", metavar="COMMAND", required=True)
    demo = twofa_commands.add_parser(
        "demo",
        help="walk through TOTP enrolment, backup codes, a replay attempt and disable",
        description=(
            "Enrol a user in TOTP, print the otpauth URI and its QR code, then validate, log in, "
            "replay a code (accepted under 'rocketchat', refused under 'hardened'), use a backup "
            "code twice and disable TOTP, printing each step."
        ),
    )
    demo.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="rocketchat",
        help="server profile (default: rocketchat)",
    )
    demo.add_argument("--png", type=Path, metavar="FILE", help="also write the QR code as a PNG image")
    demo.add_argument("--seed", type=int, default=0, help="seed of the server's entropy (default: 0)")
    demo.add_argument("--no-qr", action="store_true", help="do not draw the QR code in the terminal")
    demo.set_defaults(handler=_cmd_2fa_demo)

    vectors = commands.add_parser(
        "vectors",
        help="write E2EE interop test vectors (real crypto, Rocket.Chat's formats)",
        description=(
            'Write a JSON document {"cases": [...]} of private keys (v2 and v1 blobs), wrapped room '
            "keys and messages made with real crypto and a fixed seed, for checking another "
            "implementation against keysim and Rocket.Chat's formats."
        ),
    )
    vectors.add_argument("--out", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    vectors.add_argument("--seed", type=int, default=0, help="seed of the vectors (default: 0)")
    vectors.set_defaults(handler=_cmd_vectors)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"keysim: error: {exc}", file=sys.stderr)
        return 2
    except ProtocolError as exc:
        print(f"keysim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keysim: interrupted", file=sys.stderr)
        return 130
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
