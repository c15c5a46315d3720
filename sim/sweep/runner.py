"""Running a sweep: the parent's submit/wait loop, resumable at any point, and ``keysim sweep``.

Theory of operation
-------------------
:func:`sweep_command` loads the sweep file (:mod:`.sweepfile`), plans every run (:mod:`.plan`) and
checks the output directory and the scheduler, so that every error is found before anything is
written; :func:`run_sweep` then runs whatever the store (:mod:`.store`) has not finished.

One submit/wait loop serves both executors (:mod:`.workers`: a local process pool or Dask), which
is why they produce identical rows.  Workers run :func:`~sim.sweep.workers.execute_run`, which
loads, runs and writes one run's files; the parent alone writes the run log
(:mod:`sim.sweep.store`).  With ``--scheduler``, the base scenario and ``OUT`` must be on a
filesystem that every worker sees.  May import the rest of :mod:`sim.sweep`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .plan import RunSpec, plan_sweep, replicate_seed
from .store import RunStore, check_out, write_durably
from .sweepfile import Sweep, SweepError, load_sweep
from .workers import RunReport, execute_run, open_executor

__all__ = [
    "RunSpec",
    "Sweep",
    "SweepError",
    "SweepInterrupted",
    "execute_run",
    "load_sweep",
    "plan_sweep",
    "replicate_seed",
    "run_sweep",
    "sweep_command",
]


@dataclass(slots=True)
class _Tally:
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_key, traceback)
    lost: int = 0  # not started because the executor broke


def _drive(
    pool: cf.Executor,
    slots: int,
    todo: list[RunSpec],
    store: RunStore,
    base: str,
    out: str,
    bar: Any,
    tally: _Tally,
) -> int:
    """The one submit/wait loop, whatever the executor: counts into ``tally`` as runs end (so
    that an interrupted loop's counts are still there) and returns how many did not start.
    At most ``2 * slots`` runs are submitted at a time, so the log's 'running' rows are the runs
    in flight and a short queue keeps every worker busy."""
    pending: dict[cf.Future[RunReport], RunSpec] = {}
    queue = iter(todo)
    failed = tally.failed

    def submit() -> None:
        spec = next(queue, None)
        if spec is None:
            return
        store.start(spec.record, time.time())
        try:
            pending[pool.submit(execute_run, base, spec, out)] = spec
        except cf.BrokenExecutor:  # a worker died (out of memory?): start nothing more
            tally.lost += 1 + sum(1 for _ in queue)

    try:
        for _ in range(2 * slots):
            submit()
        while pending:
            ready, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in ready:
                spec = pending.pop(future)
                error = future.exception()
                if error is None:
                    report = future.result()
                    store.finish(
                        spec.run_key, started_at=report.started_at, wall_s=report.wall_s, now=time.time()
                    )
                    tally.done += 1
                else:
                    text = "".join(traceback.format_exception(error)).strip()
                    store.fail(spec.run_key, text, time.time())
                    failed.append((spec.run_key, text))
                    bar.set_postfix(failed=len(failed))
                bar.update(1)
                submit()
    finally:
        for future in pending:  # interrupted: these stay 'running' in the log and run next time
            future.cancel()
    return tally.lost + sum(1 for _ in queue)


@dataclass(frozen=True, slots=True)
class SweepResult:
    total: int
    skipped: int  # finished by an earlier invocation
    done: int
    failed: list[tuple[str, str]]  # (run_key, traceback)
    not_started: int
    wall_s: float


def run_sweep(
    sweep: Sweep,
    plan: list[RunSpec],
    out: Path,
    *,
    executor: str = "local",
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run every planned run not already finished in ``out``; resumable at any point."""
    from tqdm import tqdm

    clock = time.perf_counter()
    out = Path(out)
    tally, not_started, skipped = _Tally(), 0, 0

    def result() -> SweepResult:
        return SweepResult(
            len(plan), skipped, tally.done, tally.failed, not_started, time.perf_counter() - clock
        )

    try:
        with RunStore(out) as store:
            store.clean_temporaries()
            write_durably(out / "sweep.toml", sweep.text)
            finished = store.finished()
            todo = [spec for spec in plan if spec.run_key not in finished]
            skipped = len(plan) - len(todo)
            bar = tqdm(total=len(plan), initial=skipped, unit="run", desc=sweep.name, disable=not progress)
            try:
                if todo:
                    with open_executor(executor, min(workers, len(todo)), scheduler) as (pool, slots):
                        base, target = str(sweep.base.resolve()), str(out.resolve())
                        not_started = _drive(pool, slots, todo, store, base, target, bar, tally)
            finally:
                bar.close()
    except KeyboardInterrupt:
        raise SweepInterrupted(result()) from None
    return result()


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``result`` counts what was done before it (the finished runs are in
    the store, and running the same command again resumes)."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__(f"{result.skipped + result.done} of {result.total} runs done")
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result,))


def interrupted_message(name: str, result: SweepResult, resume: str) -> str:
    """What Ctrl-C on a sweep prints: how far it got, and the command that resumes it."""
    return (
        f"{name}: interrupted: {result.skipped + result.done} of {result.total} runs done "
        f"({result.done} in this invocation, {len(result.failed)} failed); "
        f"resume with: {resume}"
    )


#: how long ``--scheduler`` may take to answer before the sweep is refused
SCHEDULER_TIMEOUT_S = 10.0


def _probe_scheduler(address: str) -> str | None:
    """None if a Dask scheduler answers at ``address``, else why not (checked before anything
    is written, so that a wrong address leaves no sweep directory behind)."""
    from dask import distributed

    dask: Any = distributed
    try:
        client = dask.Client(address, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        return f"no Dask scheduler answers at {address!r} within {SCHEDULER_TIMEOUT_S:g} s ({exc})"
    client.close()
    return None


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def sweep_command(
    path: Path,
    *,
    out: Path | None = None,
    workers: int | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    quiet: bool = False,
) -> int:
    """``keysim sweep``: exit status 0 if every run is done, 1 if some failed or did not start.
    Every :class:`SweepError` is raised before anything is written."""
    if workers is not None and workers < 1:
        raise SweepError("--workers", f"must be >= 1, got {workers}")
    if scheduler is not None and executor == "local":
        raise SweepError("--scheduler", "submits to a Dask cluster: use it with --executor dask (or alone)")
    kind = executor or ("dask" if scheduler is not None else "local")
    sweep = load_sweep(path)
    plan = plan_sweep(sweep)
    target = out if out is not None else Path("runs") / "sweeps" / sweep.name
    problem = check_out(target, {spec.run_key: spec.record.point_json for spec in plan})
    if problem:
        raise SweepError("--out", problem)
    if scheduler is not None and (problem := _probe_scheduler(scheduler)):
        raise SweepError("--scheduler", problem)
    try:
        result = run_sweep(
            sweep,
            plan,
            target,
            executor=kind,
            workers=workers or _default_workers(),
            scheduler=scheduler,
            progress=not quiet,
        )
    except SweepInterrupted as stop:
        again = ["keysim", "sweep", str(path), "--out", str(target)]
        for flag, value in (("--workers", workers), ("--executor", executor), ("--scheduler", scheduler)):
            if value is not None:
                again += [flag, str(value)]
        resume = shlex.join(again)
        print(interrupted_message(sweep.name, stop.result, resume), file=sys.stderr)
        return 130
    if not quiet or result.failed or result.not_started:
        stream = sys.stderr if result.failed or result.not_started else sys.stdout
        print(
            f"{sweep.name}: {result.total} runs: {result.skipped} already done, {result.done} run now, "
            f"{len(result.failed)} failed, {result.not_started} not started ({result.wall_s:.1f} s); "
            f"results in {target}/",
            file=stream,
        )
        for run_key, error in result.failed[:5]:
            print(f"  {run_key}: {error.splitlines()[-1]}", file=stream)
    return 0 if not result.failed and not result.not_started else 1
