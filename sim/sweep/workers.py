"""What runs where in a sweep: :func:`execute_run`, one run in a worker process, and
:func:`open_executor`, the ``concurrent.futures`` executor that hosts the workers.

Execution goes through the ``concurrent.futures`` interface only: a spawn-context
``ProcessPoolExecutor`` (``local``) or a Dask client's ``get_executor()`` (``dask``: a
``LocalCluster``, or an existing scheduler).  A worker loads, runs and writes one run's files and
hands back a :class:`RunReport`; it never touches the run log (:mod:`sim.sweep.store`), which the
parent alone writes.  May import :mod:`sim.inputs`, :mod:`sim.engine`, :mod:`sim.results`,
:mod:`.plan` and :mod:`.store`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..inputs.scenario import load_scenario
from .plan import RunSpec
from .store import config_hash

__all__ = ["RunReport", "execute_run", "open_executor"]


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a worker hands back: the parent logs it."""

    run_key: str
    started_at: float
    wall_s: float


def execute_run(base: str, spec: RunSpec, out: str) -> RunReport:
    """Load, run and write one run (in a worker process; top level so that it pickles)."""
    from ..engine import run_scenario
    from .store import write_run_files

    # sim.results.tables needs pandas, scipy and lifelines, which ship no type information; importing it
    # by name keeps `mypy --strict sim/sweep/` from descending into it (its results are frames).
    outputs: Any = importlib.import_module("sim.results.tables")

    started_at, clock = time.time(), time.perf_counter()
    scenario = load_scenario(base, overrides=dict(spec.overrides)).with_seed(spec.record.seed)
    if config_hash(scenario) != spec.record.config_hash:
        # The base scenario (or a file it reads) changed since the plan, or this worker sees
        # another copy of it: refuse rather than file results under the wrong key.
        raise RuntimeError(f"{base}: the scenario differs from the one planned for run {spec.run_key}")
    result = run_scenario(scenario)
    frames = []
    for frame in (outputs.outcomes_frame(result), outputs.rooms_frame(result), outputs.joins_frame(result)):
        for axis, value in spec.point.items():
            frame[axis] = value
        frame["replicate"] = spec.record.replicate
        frames.append(frame)
    summary = {
        **outputs.summarize(result, spec.record.command),
        "run_key": spec.run_key,
        "point": dict(spec.point),
    }
    summary["replicate"] = spec.record.replicate
    write_run_files(Path(out), spec.run_key, frames[0], frames[1], summary, frames[2])
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


@contextlib.contextmanager
def open_executor(kind: str, workers: int, scheduler: str | None) -> Iterator[tuple[cf.Executor, int]]:
    """A concurrent.futures executor and how many runs it executes at once."""
    if kind == "local":
        pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent
        )
        try:
            yield pool, workers
        except KeyboardInterrupt:  # stop at once: the runs in flight run again on resuming
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True)
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
