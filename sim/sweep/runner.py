"""Sweeps: a grid of scenario overrides times replications, run on a process pool or Dask.

Theory of operation
-------------------
A sweep file (``scenarios/README.md``, section Sweeps) names a base scenario, fixed overrides, axes
and a number of replications.  :func:`load_sweep` parses it and :func:`plan_sweep` expands the
cartesian product of the axes and builds every grid point's :class:`~sim.inputs.scenario.Scenario`, so
that every error (unknown key, bad value, missing file) is found, and named, before anything
runs or is written.  The plan is a list of :class:`RunSpec`, one per (point, replicate).

Seeds are common random numbers: replicate ``r`` of *every* point runs with
``stream_seed(sweep.seed, f"replicate-{r}") % 2**31``, so points are compared on the same draws
(paired comparisons).  A run is a function of its scenario and seed (style guide section 10), so
its ``run_key`` (the first 16 hex digits of :func:`sim.sweep.store.config_hash`) names it across re-runs of the
sweep, and ``keysim run BASE --seed S --set k=v ...`` (its recorded ``command``) reproduces it.

Execution goes through the ``concurrent.futures`` interface only: a spawn-context
``ProcessPoolExecutor`` (``local``) or a Dask client's ``get_executor()`` (``dask``: a
``LocalCluster``, or an existing scheduler).  One submit/wait loop serves both, which is why they
produce identical rows.  Workers run :func:`execute_run`, which loads, runs and writes one run's
files; the parent alone writes the run log (:mod:`sim.sweep.store`).  With ``--scheduler``, the base
scenario and ``OUT`` must be on a filesystem that every worker sees.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import itertools
import json
import multiprocessing
import os
import re
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..inputs.scenario import ScenarioError, load_scenario
from ..inputs.streams import stream_seed
from .store import RunRecord, RunStore, check_out, config_hash, write_durably
from .sweepfile import Sweep, SweepError, load_sweep

__all__ = [
    "RunSpec",
    "Sweep",
    "SweepError",
    "execute_run",
    "load_sweep",
    "plan_sweep",
    "replicate_seed",
    "run_sweep",
    "sweep_command",
]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run of the plan: what a worker needs, and what the log records."""

    record: RunRecord
    point: Mapping[str, Any]  # axis -> value as the scenario holds it (ints widened to floats)
    overrides: Mapping[str, Any]  # [sweep.set] and the point, as load_scenario takes them

    @property
    def run_key(self) -> str:
        return self.record.run_key


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a worker hands back: the parent logs it."""

    run_key: str
    started_at: float
    wall_s: float


def replicate_seed(root: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` at every grid point (common random numbers)."""
    return stream_seed(root, f"replicate-{replicate}") % 2**31


# --------------------------------------------------------------------------- the sweep file


def _owner(error_key: str, keys: list[str]) -> str | None:
    """The override a ScenarioError is about (``population.classes[0].name`` -> the table)."""
    for key in keys:
        if (
            error_key == key
            or error_key.startswith((f"{key}[", f"{key}."))
            or key.startswith(f"{error_key}.")
        ):
            return key
    return None


def _toml(value: Any) -> str:
    """``value`` as ``keysim run --set`` reads it back (TOML, or a bare word taken as a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        bare = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and value not in (
            "true",
            "false",
            "inf",
            "nan",
        )
        return value if bare else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _column_value(value: Any) -> Any:
    return value if isinstance(value, bool | int | float | str) else json.dumps(value, sort_keys=True)


def plan_sweep(sweep: Sweep) -> list[RunSpec]:
    """Every run of the sweep, replicate by replicate; builds every point's scenario first."""
    try:
        load_scenario(sweep.base, overrides=sweep.fixed)
    except ScenarioError as exc:
        owner = _owner(exc.key, list(sweep.fixed))
        raise SweepError(f"sweep.set.{owner}" if owner else "sweep.base", str(exc)) from None
    names = [axis for axis, _ in sweep.axes]
    points = []
    for combination in itertools.product(*(values for _, values in sweep.axes)):
        given = dict(zip(names, combination, strict=True))
        try:
            scenario = load_scenario(sweep.base, overrides={**sweep.fixed, **given})
        except ScenarioError as exc:
            owner = _owner(exc.key, names)
            if owner is not None:
                raise SweepError(f"sweep.axes.{owner}", f"value {given[owner]!r}: {exc}") from None
            raise SweepError("sweep.axes", f"point {given}: {exc}") from None
        point = {a: scenario.values[a.split(".")[0]].get(a.split(".", 1)[1], given[a]) for a in names}
        points.append((given, point, scenario))
    plan: list[RunSpec] = []
    seen: dict[str, Mapping[str, Any]] = {}
    for replicate in range(sweep.replications):
        seed = replicate_seed(sweep.seed, replicate)
        for given, point, scenario in points:
            digest = config_hash(scenario.with_seed(seed))
            key = digest[:16]
            if key in seen:
                raise SweepError("sweep.axes", f"points {seen[key]} and {given} give the same scenario")
            seen[key] = given
            overrides = {**sweep.fixed, **given}
            words = ["keysim", "run", str(sweep.base), "--seed", str(seed)]
            for k, v in overrides.items():
                words += ["--set", f"{k}={_toml(v)}"]
            record = RunRecord(
                run_key=key,
                point_json=json.dumps({a: _column_value(v) for a, v in point.items()}),
                replicate=replicate,
                seed=seed,
                config_hash=digest,
                keysim_version=__version__,
                command=shlex.join(words),
            )
            plan.append(RunSpec(record, {a: _column_value(v) for a, v in point.items()}, overrides))
    return plan


# --------------------------------------------------------------------------- the worker


def execute_run(base: str, spec: RunSpec, out: str) -> RunReport:
    """Load, run and write one run (in a worker process; top level so that it pickles)."""
    from ..engine import run_scenario
    from .store import write_run_files

    # sim.results.tables needs pandas, scipy and lifelines, which ship no type information; importing it
    # by name keeps `mypy --strict sim/sweep.py` from descending into it (its results are frames).
    outputs: Any = importlib.import_module("sim.results.tables")

    started_at, clock = time.time(), time.perf_counter()
    scenario = load_scenario(base, overrides=dict(spec.overrides)).with_seed(spec.record.seed)
    if config_hash(scenario) != spec.record.config_hash:
        # The base scenario (or a file it reads) changed since the plan, or this worker sees
        # another copy of it: refuse rather than file results under the wrong key.
        raise RuntimeError(f"{base}: the scenario differs from the one planned for run {spec.run_key}")
    result = run_scenario(scenario)
    frames = []
    for frame in (outputs.outcomes_frame(result), outputs.rooms_frame(result)):
        for axis, value in spec.point.items():
            frame[axis] = value
        frame["replicate"] = spec.record.replicate
        frames.append(frame)
    summary = {**outputs.summarize(result), "run_key": spec.run_key, "point": dict(spec.point)}
    summary["replicate"] = spec.record.replicate
    write_run_files(Path(out), spec.run_key, frames[0], frames[1], summary)
    return RunReport(spec.run_key, started_at, time.perf_counter() - clock)


def _watch_parent() -> None:
    """Pool initializer: exit when the sweep process dies (kill -9 included) instead of
    finishing a run nobody will log; a multiprocessing worker is not told otherwise."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="keysim-watch-parent", daemon=True).start()


# --------------------------------------------------------------------------- the parent


@contextlib.contextmanager
def open_executor(kind: str, workers: int, scheduler: str | None) -> Iterator[tuple[cf.Executor, int]]:
    """A concurrent.futures executor and how many runs it executes at once."""
    if kind == "local":
        pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent
        )
        with pool:
            yield pool, workers
        return
    import logging

    from dask import distributed

    dask: Any = distributed  # its constructors are not annotated
    cluster: Any = None
    if scheduler is None:
        cluster = dask.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    client: Any = dask.Client(cluster if cluster is not None else scheduler)
    try:
        threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info()["workers"].values())
        executor = client.get_executor(pure=False)
        with executor:
            yield executor, max(threads, 1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _drive(
    pool: cf.Executor, slots: int, todo: list[RunSpec], store: RunStore, base: str, out: str, bar: Any
) -> tuple[int, list[tuple[str, str]], int]:
    """The one submit/wait loop, whatever the executor: returns (done, failed, not started).
    At most ``2 * slots`` runs are submitted at a time, so the log's 'running' rows are the runs
    in flight and a short queue keeps every worker busy."""
    pending: dict[cf.Future[RunReport], RunSpec] = {}
    queue = iter(todo)
    done, failed, lost = 0, [], 0

    def submit() -> None:
        nonlocal lost
        spec = next(queue, None)
        if spec is None:
            return
        store.start(spec.record, time.time())
        try:
            pending[pool.submit(execute_run, base, spec, out)] = spec
        except cf.BrokenExecutor:  # a worker died (out of memory?): start nothing more
            lost += 1 + sum(1 for _ in queue)

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
                    done += 1
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
    return done, failed, lost + sum(1 for _ in queue)


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
    done, not_started = 0, 0
    failed: list[tuple[str, str]] = []
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
                    done, failed, not_started = _drive(pool, slots, todo, store, base, target, bar)
        finally:
            bar.close()
    return SweepResult(len(plan), skipped, done, failed, not_started, time.perf_counter() - clock)


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
    result = run_sweep(
        sweep,
        plan,
        target,
        executor=kind,
        workers=workers or _default_workers(),
        scheduler=scheduler,
        progress=not quiet,
    )
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
