"""What each ``keysim`` command does with its parsed arguments: one ``cmd_*`` handler per command.

A handler checks what argparse cannot (a directory that must exist, a number's range, a scenario
key) before any work, raising :class:`UsageError` with a one-line message that names the option;
:func:`sim.cli.main` turns it into exit status 2.  The parts doing the work are imported inside each
handler, so that ``keysim --help`` stays quick.  May import every part of :mod:`sim` and
:mod:`protocol`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "UsageError",
    "cmd_2fa_demo",
    "cmd_bench",
    "cmd_check",
    "cmd_report",
    "cmd_run",
    "cmd_sweep",
    "cmd_vectors",
]


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


def cmd_2fa_demo(args: argparse.Namespace) -> int:
    from ..demo.twofa import run_demo

    png: Path | None = args.png
    if png is not None and not png.parent.exists():
        raise UsageError(f"--png: directory {str(png.parent)!r} does not exist")
    if png is not None and png.suffix.lower() != ".png":
        raise UsageError(f"--png: file name must end in .png, got {str(png)!r}")
    result = run_demo(profile=args.profile, seed=args.seed, png=png, show_qr=not args.no_qr)
    return 0 if result.disabled else 1


def cmd_vectors(args: argparse.Namespace) -> int:
    from protocol.crypto.vectors import dumps_vectors, make_vectors

    from ..results.files import atomic_write_text

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


def cmd_run(args: argparse.Namespace) -> int:
    from .. import api

    try:
        scenario = api.scenario(args.scenario, _overrides(args.set), seed=args.seed)
    except api.ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if args.replications != 1:
        return _run_replications(args, scenario)
    from ..results.rundir import check_out_dir, user_entries, write_run
    from ..results.tables import terminal_table

    shown: Path = args.out if args.out is not None else Path("runs") / scenario.run_id
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
    kept = user_entries(out)
    try:
        summary = write_run(result, out, plots=not args.no_plots, command=args.command_line)
    except OSError as exc:  # the disk filled up, permissions changed during the run, ...
        raise UsageError(f"--out: cannot write {str(out)!r}: {exc.strerror or exc}") from None
    if not args.quiet:
        print(terminal_table(summary))
        print(f"  outputs in {shown}/")
        if kept:
            names = ", ".join(name + "/" if (out / name).is_dir() else name for name in kept)
            print(f"  kept from the earlier run: {names} (describing that run, not this one)")
    return 1 if result.violations else 0


def _run_replications(args: argparse.Namespace, scenario: Any) -> int:
    """``keysim run --replications N``: a sweep with no axes, N replicates, into a sweep store."""
    import json

    from ..results.load import headline
    from ..results.report import format_headline, load_results
    from ..sweep.plan import plan_sweep
    from ..sweep.runner import SweepError, SweepInterrupted, _default_workers, interrupted_message, run_sweep
    from ..sweep.store import check_out
    from ..sweep.sweepfile import Sweep

    n = args.replications
    if n < 1:
        raise UsageError(f"--replications: must be >= 1, got {n}")
    if args.check_invariants:
        raise UsageError("--check-invariants: checks one run; use it without --replications")
    fixed = _overrides(args.set)
    base = args.scenario.resolve()
    lines = ["[sweep]", f"base = {json.dumps(str(base))}", f"replications = {n}", f"seed = {scenario.seed}"]
    lines += ["", "[sweep.set]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in fixed.items())]
    sweep = Sweep(
        path=base,
        text=("\n".join(lines) + "\n").encode("utf-8"),
        base=base,
        name=scenario.name,
        replications=n,
        seed=scenario.seed,
        fixed=fixed,
        axes=(),
    )
    try:
        plan = plan_sweep(sweep)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    target: Path = args.out if args.out is not None else Path("runs") / f"{scenario.run_id}-x{n}"
    problem = check_out(target, {spec.run_key: spec.record.point_json for spec in plan})
    if problem:
        raise UsageError(f"--out: {problem}")
    try:
        result = run_sweep(sweep, plan, target, workers=min(n, _default_workers()), progress=not args.quiet)
    except SweepInterrupted as stop:
        # the same command resumes: the default --out is derived from the scenario alone
        print(interrupted_message(scenario.name, stop.result, shlex.join(args.command_line)), file=sys.stderr)
        return 130
    if result.failed or result.not_started:
        print(
            f"{scenario.name}: {len(result.failed)} of {n} replications failed, {result.not_started} did not "
            f"start; run the same command again to finish them (results in {target}/)",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        table = format_headline(headline(load_results(target)))
        print(f"{scenario.name}: {n} replications pooled (Wilson 95 % intervals)")
        for figure, value in zip(table.iloc[:, 0], table.iloc[:, 1], strict=True):
            print(f"  {figure:<45} {value}")
        print(f"  results in {target}/ (keysim report {target})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweep.runner import SweepError, sweep_command

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


def cmd_report(args: argparse.Namespace) -> int:
    from ..results.report import ReportError, make_report

    try:
        page = make_report(args.dir, args.out, fmt=args.format, command=args.command_line)
    except ReportError as exc:  # names the path; nothing is left behind
        raise UsageError(str(exc)) from None
    print(f"wrote {page}")
    others = sorted(p.name for p in page.parent.glob("report.*") if p.name != page.name)
    if others:
        print(
            f"  beside {', '.join(others)}, kept from an earlier report: its text is that report's, its "
            "figures and tables now this one's (keysim report again in its format renews it)"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from ..bench.runs import run_bench
    from ..inputs.scenario import ScenarioError
    from ..results.files import atomic_write_text

    if args.crypto:
        from ..bench.crypto import crypto_cycle

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
    if args.scale:
        from ..bench.scale import run_scale

        if args.users is not None or args.days is not None or args.skip_full or args.skip_bare:
            raise UsageError("--scale: sizes and horizons come from --scale-users and --scale-days")
        if args.bare_max_events is not None and not args.bare_max_events >= 0:
            raise UsageError(f"--bare-max-events: must be >= 0, got {args.bare_max_events}")
        # the grid's defaults are sim.bench.scale's (the parser does not import the benchmarks)
        grid = {"users": args.scale_users, "days": args.scale_days, "bare_max_events": args.bare_max_events}
    try:
        if args.scale:
            figures = run_scale(args.scenario, **{k: v for k, v in grid.items() if v is not None})
        else:
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


def _counterexample(args: argparse.Namespace, result: Any) -> None:
    """The shortest failing trace step by step with what each step moved, and, if asked, as a
    sequence diagram and as a pytest test."""
    from ..check.narrate import Step, listing, narrate, pytest_source, sequence_svg
    from ..results.files import atomic_write_text

    scope = (args.users, args.rooms, args.policy, result.seed)
    late = result.late_after_login
    world, steps = narrate(
        *scope, result.ops, result.violations, late_after_login=late, plan=result.plan, phones=result.phones
    )
    print(result.report(listing(steps)))
    if result.loop is not None:  # a lasso: the diagram says where the loop goes back to
        steps.append(Step(len(steps) + 1, "server", f"back to step {result.loop + 1}, for ever", ()))
    if args.svg is not None:
        try:
            sequence_svg(world, steps, args.svg)
        except OSError as exc:  # the verdict stands (exit 1); the picture could not be written
            print(
                f"keysim check: --svg: cannot write {str(args.svg)!r}: {exc.strerror or exc}", file=sys.stderr
            )
        else:
            print(f"sequence diagram: {args.svg}")
    if args.emit_test is not None:
        source = pytest_source(
            *scope,
            result.ops,
            result.violations,
            late_after_login=late,
            plan=result.plan,
            phones=result.phones,
            loop=result.loop,
            waiter=result.waiter,
        )
        atomic_write_text(args.emit_test, source)
        print(f"replay it: pytest {args.emit_test}")


#: ``keysim check``'s exit status when the search stopped before its depth (--max-states)
INCOMPLETE = 3


def _search(args: argparse.Namespace, *, symmetry: bool, label: str) -> Any:
    """One search of ``keysim check``'s scope, with a progress bar unless --quiet."""
    from ..check import Progress, explore

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit=" states", desc=label, delay=1.0, leave=False, file=sys.stderr)

    def show(p: Progress) -> None:
        assert bar is not None
        bar.update(p.states - bar.n)
        if p.states % 64 == 0:
            bar.set_postfix(
                depth=f"{p.level + 1}/{args.depth}", transitions=f"{p.transitions:,}", refresh=False
            )

    try:
        return explore(
            args.users,
            args.rooms,
            args.depth,
            args.policy,
            max_states=args.max_states,
            progress=show if bar is not None else None,
            late_after_login=args.late_after_login,
            fair=not args.no_liveness,
            symmetry=symmetry,
            workers=args.workers,
            plan=args.plan,
            phones=args.phones,
        )
    except ValueError as exc:  # explore names the parameter: "users: must be ..."
        raise UsageError(f"--{exc}") from None
    finally:
        if bar is not None:
            bar.close()


def cmd_check(args: argparse.Namespace) -> int:
    from ..check import compare

    if args.stats and args.no_symmetry:
        raise UsageError("--stats compares the search without and with symmetry: drop --no-symmetry")
    before = None
    if args.stats:
        before = _search(args, symmetry=False, label="without symmetry")
        if before.interrupted:
            print(before.report())
            return 130
    result = _search(args, symmetry=not args.no_symmetry, label="keysim check")
    if result.ok:
        print(result.report())
    else:
        _counterexample(args, result)
    if before is not None:
        print("\nsymmetry reduction (--stats):")
        print(compare(before, result))
    if not result.ok:
        return 1
    if result.interrupted:
        return 130
    if result.capped and not args.accept_incomplete:
        print(
            f"keysim check: incomplete: --max-states stopped the search in depth {result.depth_done + 1} of "
            f"{args.depth}; exit {INCOMPLETE} (--accept-incomplete makes it 0)",
            file=sys.stderr,
        )
        return INCOMPLETE
    return 0
