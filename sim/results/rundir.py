"""One run on disk: ``outcomes.parquet``, ``rooms.parquet``, ``joins.parquet``, ``summary.json``
and ``plots/*.png``.

:func:`write_run` writes them into a fresh directory that replaces ``out`` only once complete, so
an interrupted run never leaves a half-written output directory; :func:`check_out_dir` refuses,
before the run starts, an ``out`` that holds anything but an earlier run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine import RunResult
from .files import replace_dir, temp_dir
from .provenance import resolved_scenario_toml
from .tables import joins_frame, outcomes_frame, rooms_frame, summarize

__all__ = ["check_out_dir", "is_run_dir", "write_run"]


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


#: what :func:`write_run` writes in a run directory; anything else there is the user's, and a
#: new run carries it over
RUN_ENTRIES = frozenset(
    {"outcomes.parquet", "rooms.parquet", "joins.parquet", "scenario.toml", "summary.json", "plots"}
)


def user_entries(out: Path) -> list[str]:
    """The entries of an earlier run directory that keysim did not write (a report, notes)."""
    if not out.is_dir():
        return []
    return sorted(e.name for e in out.iterdir() if e.name not in RUN_ENTRIES)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run keysim wrote (which a new run may replace)."""
    summary = path / "summary.json"
    if not (path / "outcomes.parquet").is_file() or not summary.is_file():
        return False
    try:
        return "keysim_version" in json.loads(summary.read_text())
    except (OSError, ValueError):
        return False


def check_out_dir(out: Path) -> Path:
    """The absolute output directory for a run, checked before the run starts.

    ``out`` may be new, empty, or an earlier run (replaced once the new one is complete);
    anything else is refused, so that no user file is ever deleted.  The nearest existing
    ancestor must be a directory keysim can write in (probed with a temporary directory that is
    removed at once, so a refused run leaves nothing behind).  Raises :class:`ValueError` naming
    the problem.
    """
    out = Path(os.path.abspath(out))
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"{str(out)!r} exists and is not a directory")
        if any(out.iterdir()) and not is_run_dir(out):
            raise ValueError(f"{str(out)!r} is not empty and holds no keysim run; refusing to replace it")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{str(ancestor)!r} is not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".keysim-probe.", dir=ancestor)
    except OSError as exc:
        raise ValueError(f"cannot write in {str(ancestor)!r}: {exc.strerror or exc}") from None
    os.rmdir(probe)
    return out


def write_run(
    result: RunResult, out: Path, *, plots: bool = True, command: Sequence[str] | str | None = None
) -> dict[str, Any]:
    """Write every output of ``result`` under ``out`` (replaced atomically); returns the summary.
    ``command`` is the command line that made the run (kept in the summary's provenance).  What
    an earlier run in ``out`` held besides keysim's files (:func:`user_entries`) is kept."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(result, command)
    tmp = temp_dir(out.parent, f".{out.name}.")
    try:
        outcomes_frame(result).to_parquet(tmp / "outcomes.parquet", index=False)
        rooms_frame(result).to_parquet(tmp / "rooms.parquet", index=False)
        joins_frame(result).to_parquet(tmp / "joins.parquet", index=False)
        (tmp / "scenario.toml").write_text(resolved_scenario_toml(result.scenario), encoding="utf-8")
        (tmp / "summary.json").write_text(
            json.dumps(_clean(summary), indent=2, sort_keys=True, default=_json_default) + "\n"
        )
        if plots:
            # imported here: sim.results.plots selects matplotlib's Agg backend, which a notebook
            # that only reads results must not get
            from .plots import plot_run

            (tmp / "plots").mkdir()
            plot_run(result, summary, tmp / "plots")
        replace_dir(tmp, out, owned=RUN_ENTRIES.__contains__)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
