"""The ``keysim`` command line.

Every subcommand validates its input before doing any work; bad input exits with status 2 and a
one-line message naming the offending option or key, without a traceback and without leaving
partial output behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import PROFILES, ProtocolError

from . import __version__

#: what ``add_subparsers`` returns; each ``_add_*`` below adds one command to it
if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["main", "run"]


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


def _cmd_2fa_demo(args: argparse.Namespace) -> int:
    from .demo.twofa import run_demo

    png: Path | None = args.png
    if png is not None and not png.parent.exists():
        raise UsageError(f"--png: directory {str(png.parent)!r} does not exist")
    if png is not None and png.suffix.lower() != ".png":
        raise UsageError(f"--png: file name must end in .png, got {str(png)!r}")
    result = run_demo(profile=args.profile, seed=args.seed, png=png, show_qr=not args.no_qr)
    return 0 if result.disabled else 1


def _cmd_vectors(args: argparse.Namespace) -> int:
    from protocol.crypto.vectors import dumps_vectors, make_vectors

    from .results.files import atomic_write_text

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


def _overrides(pairs: list[str] | None) -> dict[str, object]:
    """``--set key=value`` pairs; the value is read as TOML (``5``, ``true``, ``"live"``), else
    taken as a bare string (``--set simulation.policy=live``)."""
    import tomllib

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--set: expected section.key=value, got {pair!r}")
        try:
            value: object = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key.strip()] = value
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from . import api

    try:
        scenario = api.scenario(args.scenario, _overrides(args.set), seed=args.seed)
    except api.ScenarioError as exc:
        raise UsageError(str(exc)) from None
    from .results.rundir import check_out_dir, write_run
    from .results.tables import terminal_table

    shown: Path = args.out if args.out is not None else Path("runs") / f"{scenario.name}-{scenario.seed}"
    try:
        out = check_out_dir(shown)  # before the run, so that no work is lost to a bad --out
    except ValueError as exc:
        raise UsageError(f"--out: {exc}") from None

    bar = None
    progress = None
    if not args.quiet:
        from tqdm import tqdm

        days = scenario.horizon_s / 86400.0
        bar = tqdm(total=round(days, 2), unit="day", desc=scenario.name, delay=2.0, leave=False)

        def progress(fraction: float) -> None:
            assert bar is not None
            bar.update(round(days * fraction, 2) - bar.n)

    try:
        result = api.run(scenario, progress=progress, check_invariants=args.check_invariants)
    except api.ScenarioError as exc:  # found while setting up: trace contents, topology limits
        raise UsageError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    try:
        summary = write_run(result, out, plots=not args.no_plots)
    except OSError as exc:  # the disk filled up, permissions changed during the run, ...
        raise UsageError(f"--out: cannot write {str(out)!r}: {exc.strerror or exc}") from None
    if not args.quiet:
        print(terminal_table(summary))
        print(f"  outputs in {shown}/")
    return 1 if result.violations else 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep.runner import SweepError, sweep_command

    try:
        return sweep_command(
            args.sweep,
            out=args.out,
            workers=args.workers,
            executor=args.executor,
            scheduler=args.scheduler,
            quiet=args.quiet,
        )
    except SweepError as exc:  # raised before anything is written
        raise UsageError(str(exc)) from None


def _cmd_report(args: argparse.Namespace) -> int:
    from .results.report import ReportError, make_report

    try:
        page = make_report(args.dir, args.out, fmt=args.format)
    except ReportError as exc:  # names the path; nothing is left behind
        raise UsageError(str(exc)) from None
    print(f"wrote {page}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .bench.runs import run_bench
    from .inputs.scenario import ScenarioError
    from .results.files import atomic_write_text

    if args.crypto:
        from .bench.crypto import crypto_cycle

        if args.cycles < 1:
            raise UsageError(f"--cycles: must be >= 1, got {args.cycles}")
        figures = crypto_cycle(sys.stdout, cycles=args.cycles)
        if args.json is not None:
            atomic_write_text(args.json, json.dumps(figures, indent=2, sort_keys=True) + "\n")
        return 0
    if args.users is not None and args.users < 2:
        raise UsageError(f"--users: must be >= 2, got {args.users}")
    if args.days is not None and not args.days > 0:
        raise UsageError(f"--days: must be > 0, got {args.days}")
    if not args.scenario.is_file():
        where = " (the default is relative to the working directory: run from the keysim checkout)"
        default = args.scenario == Path("scenarios/bench.toml")
        raise UsageError(f"scenario: file not found: {args.scenario}{where if default else ''}")
    if args.skip_full and args.skip_bare:
        raise UsageError("--skip-full and --skip-bare: nothing left to run")
    if args.json is not None and not args.json.parent.exists():
        raise UsageError(f"--json: directory {str(args.json.parent)!r} does not exist")
    try:
        figures = run_bench(
            args.scenario,
            users=args.users,
            horizon_days=args.days,
            skip_full=args.skip_full,
            skip_bare=args.skip_bare,
        )
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:
        print(f"keysim: bench failed: {exc}", file=sys.stderr)
        return 1
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import explore

    try:
        result = explore(args.users, args.rooms, args.depth, args.policy, max_states=args.max_states)
    except ValueError as exc:  # explore names the parameter: "users: must be ..."
        raise UsageError(f"--{exc}") from None
    print(result.report())
    return 0 if result.ok else 1


def _add_twofa(commands: _Commands) -> None:
    """``keysim 2fa``."""
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


def _add_run(commands: _Commands) -> None:
    """``keysim run``."""
    run = commands.add_parser(
        "run",
        help="simulate a scenario: which encrypted rooms come back after key resets",
        description=(
            "Run one scenario (a TOML file, see scenarios/README.md) through the protocol and "
            "write outcomes.parquet, rooms.parquet, summary.json and plots/*.png under --out."
        ),
    )
    run.add_argument("scenario", type=Path, help="scenario file (TOML)")
    run.add_argument("--seed", type=int, help="override simulation.seed")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a scenario key, e.g. --set simulation.policy=live (repeatable)",
    )
    run.add_argument(
        "--out", type=Path, metavar="DIR", help="output directory (default: runs/<scenario>-<seed>/)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    run.add_argument(
        "--check-invariants",
        action="store_true",
        help="check the protocol invariants at the end (exit 1 on a violation)",
    )
    run.set_defaults(handler=_cmd_run)


def _add_sweep(commands: _Commands) -> None:
    """``keysim sweep``."""
    sweep = commands.add_parser(
        "sweep",
        help="run a grid of scenario variants with replications; resumable",
        description=(
            "Run every point of a sweep file (a base scenario, axes, replications; see "
            "scenarios/README.md, section Sweeps) on a local process pool or a Dask cluster. "
            "Results go to --out: runs.sqlite (the run log), outcomes/, rooms/, summaries/. "
            "Running the same sweep again skips finished runs."
        ),
    )
    sweep.add_argument("sweep", type=Path, help="sweep file (TOML)")
    sweep.add_argument(
        "--out", type=Path, metavar="DIR", help="output directory (default: runs/sweeps/<name>/)"
    )
    sweep.add_argument("--workers", type=int, metavar="N", help="parallel runs (default: the CPUs available)")
    sweep.add_argument(
        "--executor",
        choices=["local", "dask"],
        help="local: a process pool (default); dask: a dask.distributed LocalCluster",
    )
    sweep.add_argument(
        "--scheduler", metavar="ADDRESS", help="submit to an existing Dask scheduler, e.g. tcp://host:8786"
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar and no closing line")
    sweep.set_defaults(handler=_cmd_sweep)


def _add_report(commands: _Commands) -> None:
    """``keysim report``."""
    report = commands.add_parser(
        "report",
        help="figures and one page from a run or a sweep directory",
        description=(
            "Read a run directory (keysim run) or a sweep directory (keysim sweep; finished runs "
            "only) and write PNG figures, headline.csv and report.md or report.html under --out: "
            "restoration against each swept axis with Wilson 95 % bands, policies side by side, "
            "Kaplan-Meier curves of the time to restore, rooms lost, a table of headline figures."
        ),
    )
    report.add_argument("dir", type=Path, metavar="DIR", help="a run directory or a sweep directory")
    report.add_argument("--out", type=Path, metavar="DIR", help="output directory (default: DIR/report/)")
    report.add_argument("--format", choices=["md", "html"], default="md", help="the page (default: md)")
    report.set_defaults(handler=_cmd_report)


def _add_bench(commands: _Commands) -> None:
    """``keysim bench``."""
    bench = commands.add_parser(
        "bench",
        help="benchmark the simulator against a bare SimPy churn model",
        description=(
            "Run the full simulation of a scenario (default scenarios/bench.toml: 100,000 users, "
            "30 days) and a bare SimPy model of the same population and churn (one process per "
            "user toggling it online and offline), each in its own process; print wall time, "
            "events, events per second, peak memory and the ratio, against the targets "
            "(full run under 3 minutes and 4 GB, no slower than the bare model)."
        ),
    )
    bench.add_argument(
        "scenario",
        type=Path,
        nargs="?",
        default=Path("scenarios/bench.toml"),
        help="the scenario to time (default: scenarios/bench.toml, from the working directory)",
    )
    bench.add_argument("--users", type=int, help="scale the population (rooms scale with it)")
    bench.add_argument("--days", type=float, help="override the horizon, days")
    bench.add_argument("--skip-full", action="store_true", help="run only the bare model")
    bench.add_argument("--skip-bare", action="store_true", help="run only the full simulation")
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    bench.add_argument(
        "--crypto",
        action="store_true",
        help="instead: time one reset-and-restore cycle through the protocol with each crypto backend",
    )
    bench.add_argument("--cycles", type=int, default=5, help="cycles per backend with --crypto (default 5)")
    bench.set_defaults(handler=_cmd_bench)


def _add_check(commands: _Commands) -> None:
    """``keysim check``."""
    check = commands.add_parser(
        "check",
        help="explore every interleaving of the E2EE protocol in a small scope",
        description=(
            "Breadth-first, over the real protocol code (symbolic crypto): every interleaving of "
            "log in, log out, wrong password, change password, reset, join, leave, tick, accept, "
            "room-key reset and send among N users and M rooms, up to D steps, states "
            "deduplicated.  Checks the invariants after every step and the policy's 'eventually' "
            "properties from every state; prints the statistics, and on a violation the shortest "
            "trace as numbered steps (exit 1)."
        ),
    )
    check.add_argument(
        "--users", type=int, default=3, help="users, u0 owning the first group: 2 to 6 (default: 3)"
    )
    check.add_argument(
        "--rooms",
        type=int,
        default=2,
        help=(
            "rooms made at the start, in this order: a group of everyone, DMs, then pair groups; "
            "at most 1 + 2 * N(N-1)/2 for N users, 7 for 3 (default: 2)"
        ),
    )
    check.add_argument("--depth", type=int, default=8, help="operations per trace (default: 8)")
    check.add_argument(
        "--policy",
        choices=["queue", "live", "backup"],
        default="queue",
        help="how a member who lost its key gets it back, as in scenarios' simulation.policy (default: queue)",
    )
    check.add_argument("--max-states", type=int, metavar="S", help="stop after S distinct states")
    check.set_defaults(handler=_cmd_check)


def _add_vectors(commands: _Commands) -> None:
    """``keysim vectors``."""
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

    for add in (_add_twofa, _add_run, _add_sweep, _add_report, _add_bench, _add_check, _add_vectors):
        add(commands)
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
    except BrokenPipeError:  # the reader went away (keysim ... | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
