"""What each ``keysim`` command accepts: :func:`build_parser`, one ``_add_*`` per command.

Every option's help text lives here; what a command does with its arguments is in
:mod:`sim.cli.commands`, whose handler each command names.  May import :mod:`sim.cli.commands`, the
package's version and :mod:`protocol`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import POLICIES, PROFILES

from .. import __version__
from ..check.world import PLANS
from .commands import cmd_2fa_demo, cmd_bench, cmd_check, cmd_report, cmd_run, cmd_sweep, cmd_vectors

#: what ``add_subparsers`` returns; each ``_add_*`` below adds one command to it
if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["build_parser"]


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
    demo.set_defaults(handler=cmd_2fa_demo)


def _add_run(commands: _Commands) -> None:
    """``keysim run``."""
    run = commands.add_parser(
        "run",
        help="simulate a scenario: which encrypted rooms come back after key resets",
        description=(
            "Run one scenario (a TOML file, see scenarios/README.md) through the protocol and "
            "write outcomes.parquet, rooms.parquet, joins.parquet, summary.json and plots/*.png under --out."
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
    run.add_argument(
        "--replications",
        type=int,
        default=1,
        metavar="N",
        help=(
            "run N replications (seeds derived from the scenario's, as keysim sweep derives them) into "
            "a sweep directory under --out (default: runs/<scenario>-<seed>-x<N>/) and print their "
            "pooled figures; keysim report reads it"
        ),
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    run.add_argument(
        "--check-invariants",
        nargs="?",
        const="horizon",
        choices=["horizon", "every-step"],
        help=(
            "check the protocol invariants at the horizon (exit 1 on a violation); "
            "--check-invariants=every-step also after every step of the run, several times slower"
        ),
    )
    run.set_defaults(handler=cmd_run)


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
    sweep.set_defaults(handler=cmd_sweep)


def _add_report(commands: _Commands) -> None:
    """``keysim report``."""
    report = commands.add_parser(
        "report",
        help="figures and one page from a run or a sweep directory",
        description=(
            "Read a run directory (keysim run) or a sweep directory (keysim sweep; finished runs "
            "only) and write PNG figures, headline.csv (joiners.csv when members joined) and "
            "report.md or report.html under --out: restoration against each swept axis with Wilson "
            "95 % bands, policies side by side, Kaplan-Meier curves of the time to restore, rooms "
            "lost, a table of headline figures, and what joiners read of the past."
        ),
    )
    report.add_argument("dir", type=Path, metavar="DIR", help="a run directory or a sweep directory")
    report.add_argument("--out", type=Path, metavar="DIR", help="output directory (default: DIR/report/)")
    report.add_argument("--format", choices=["md", "html"], default="md", help="the page (default: md)")
    report.set_defaults(handler=cmd_report)


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
    bench.add_argument(
        "--scale",
        action="store_true",
        help=(
            "instead: run the scenario at every size of --scale-users by every horizon of --scale-days, "
            "full and bare, and print how wall time, events and peak memory grow"
        ),
    )
    bench.add_argument(
        "--scale-users",
        type=_int_list,
        metavar="N,N,...",
        help="the populations of --scale (default 10000,100000,1000000; rooms scale with them)",
    )
    bench.add_argument(
        "--scale-days",
        type=_float_list,
        metavar="D,D,...",
        help="the horizons of --scale, days (default 7,30,365)",
    )
    bench.add_argument(
        "--bare-max-events",
        type=float,
        metavar="N",
        help=(
            "with --scale: a cell whose bare model would make more events (default 1e8, about 10 minutes) is "
            "not run bare; its bare time is estimated per event from the largest bare run, marked est."
        ),
    )
    bench.set_defaults(handler=cmd_bench)


def _int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of integers >= 2 (an argparse type)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"every value must be >= 2, got {text!r}")
    return values


def _float_list(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers > 0 (an argparse type)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values or not all(v > 0 and v != float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"every value must be a finite number > 0, got {text!r}")
    return values


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
            "properties from every state, then liveness under fairness on the state graph (a lasso: "
            "a prefix, then a loop repeated for ever); prints the statistics, and on a violation the shortest "
            "trace as numbered steps (exit 1).  Exit 3 when --max-states stopped the search before "
            "its depth; Ctrl-C prints the statistics so far (exit 130)."
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
        choices=list(POLICIES),
        default="queue",
        help="how a member who lost its key gets it back, as in scenarios' simulation.policy (default: queue)",
    )
    check.add_argument(
        "--max-states",
        type=int,
        metavar="S",
        help="stop after S distinct states; the search is then incomplete and exits 3, unless --accept-incomplete",
    )
    check.add_argument(
        "--accept-incomplete",
        action="store_true",
        help="exit 0 when --max-states stops a search that found no violation",
    )
    check.add_argument(
        "--quiet", action="store_true", help="no progress bar (states, depth, states/s) on stderr"
    )
    check.add_argument(
        "--plan",
        choices=PLANS,
        default="mixed",
        help=(
            "the scope's rooms and roles: mixed (u0 owns a group of everyone and has TOTP, then DMs, then "
            "pairs; the default) or alike (every room a group of everyone, every user an owner with TOTP: "
            "users and rooms are interchangeable, so symmetry reduction merges up to users! x rooms! states)"
        ),
    )
    check.add_argument(
        "--phones",
        type=int,
        default=0,
        metavar="K",
        help=(
            "users u0 .. u{K-1} also have a phone (a second device of the same account: it fetches the "
            "key pair and its own public key from the server, ticks, syncs, and is signed out by a reset; "
            "default 0)"
        ),
    )
    check.add_argument(
        "--late-after-login",
        action="store_true",
        help=(
            "widen the scope: a holder's late suggestion for a reset user's old key pair may also arrive "
            "after that user logged in again (by default only before)"
        ),
    )
    check.add_argument(
        "--no-liveness",
        action="store_true",
        help=(
            "skip liveness under fairness (a member waiting for a key while a holder is online again "
            "and again, every client ticking and syncing, is eventually served; a lasso when not)"
        ),
    )
    check.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=(
            "processes that expand and check states (forked; the result is the same for any N; default: 1)"
        ),
    )
    check.add_argument(
        "--no-symmetry",
        action="store_true",
        help=(
            "no symmetry reduction: explore states that differ only by a renaming of interchangeable "
            "users and rooms, or by joining order, separately"
        ),
    )
    check.add_argument(
        "--stats",
        action="store_true",
        help=(
            "search twice, without and with symmetry reduction, and print a table of states, "
            "transitions and time before and after (takes the time of both searches)"
        ),
    )
    check.add_argument(
        "--svg",
        type=Path,
        metavar="FILE",
        help="on a violation, draw the shortest trace as a sequence diagram",
    )
    check.add_argument(
        "--emit-test",
        type=Path,
        metavar="FILE",
        help="on a violation, write a pytest test that replays the shortest trace and expects its violation",
    )
    check.set_defaults(handler=cmd_check)


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
    vectors.set_defaults(handler=cmd_vectors)


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
