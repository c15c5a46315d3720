"""The ``keysim`` command line, the only part of :mod:`sim` that parses arguments.

Every subcommand validates its input before doing any work; bad input exits with status 2 and a
one-line message naming the offending option or key, without a traceback and without leaving
partial output behind.

:func:`main` parses (:mod:`.parser`: what each command accepts), calls the command's handler
(:mod:`.commands`: what it does) and maps errors to exit statuses; :func:`run` is the console
script, and ``python -m sim.cli`` runs it too.  May import every part of :mod:`sim` and
:mod:`protocol`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from protocol import ProtocolError

from .commands import UsageError
from .parser import build_parser

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    #: the command line, for the results' provenance
    args.command_line = ["keysim", *(sys.argv[1:] if argv is None else argv)]
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
    except BrokenPipeError:  # the reader went away (keysim ... | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
