"""The figures of ``keysim bench`` as the parent reports them: the targets of the full run, the
verdicts against them and the full/bare ratio (:func:`judge`), and the table printed at the
end (:func:`table`).

Units: seconds of wall time, MiB (2**20 bytes) of peak RSS.  May import nothing of :mod:`sim`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TARGET_RSS_MIB", "TARGET_WALL_S", "judge", "table"]

#: The full run must finish within 3 minutes of wall time ...
TARGET_WALL_S = 180.0
#: ... and within 4 GiB of peak RSS.
TARGET_RSS_MIB = 4096.0


def judge(full: Mapping[str, Any] | None, bare: Mapping[str, Any] | None) -> dict[str, Any]:
    ratio = None
    if full is not None and bare is not None and bare["wall_s"] > 0:
        ratio = full["wall_s"] / bare["wall_s"]
    return {
        "ratio_full_to_bare_wall": ratio,
        "targets": {"full_wall_s_max": TARGET_WALL_S, "full_peak_rss_mib_max": TARGET_RSS_MIB},
        "verdicts": {
            "full_under_3_min": None if full is None else full["wall_s"] < TARGET_WALL_S,
            "full_under_4_gib": None if full is None else full["peak_rss_mib"] < TARGET_RSS_MIB,
            "full_not_slower_than_bare": None if ratio is None else ratio <= 1.0,
        },
    }


def table(report: Mapping[str, Any]) -> str:
    full, bare = report["full"], report["bare"]
    runs = [("full simulation", full), ("bare SimPy model", bare)]

    def cell(run: Mapping[str, Any] | None, key: str, fmt: str) -> str:
        if run is None:
            return "skipped"
        value = run.get(key)
        return "-" if value is None else format(value, fmt)

    rows: list[tuple[str, ...]] = [("", *(name for name, _ in runs))]
    rows += [
        ("wall time (s)", *(cell(r, "wall_s", ",.2f") for _, r in runs)),
        ("  set-up (s)", *(cell(r, "setup_s", ",.2f") for _, r in runs)),
        ("  simulation (s)", *(cell(r, "simulate_s", ",.2f") for _, r in runs)),
        ("SimPy events", *(cell(r, "events", ",d") for _, r in runs)),
        ("events/s (simulation)", *(cell(r, "events_per_s", ",.0f") for _, r in runs)),
        ("peak RSS (MiB)", *(cell(r, "peak_rss_mib", ",.0f") for _, r in runs)),
    ]
    if bare is not None:
        rows.append(("expected events", "", f"{bare['expected_events']:,.0f}"))
    if full is not None:
        restored = full["fraction_restored"]
        rows += [
            ("resets", f"{full['resets']:,d}", ""),
            ("rooms restored", "-" if restored is None else f"{restored:.1%}", ""),
            ("rooms lost", f"{full['lost_rooms']:,d}", ""),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])
        for row in rows
    ]
    ratio = report["ratio_full_to_bare_wall"]
    verdicts = report["verdicts"]

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    lines.append(f"full/bare wall ratio: {'n/a' if ratio is None else f'{ratio:.2f}'}")
    lines.append(
        f"targets: full run < {TARGET_WALL_S / 60:g} min: {mark(verdicts['full_under_3_min'])}; "
        f"< {TARGET_RSS_MIB / 1024:g} GiB: {mark(verdicts['full_under_4_gib'])}; "
        f"no slower than bare: {mark(verdicts['full_not_slower_than_bare'])}"
    )
    return "\n".join(lines) + "\n"
