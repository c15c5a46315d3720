"""``keysim report``: figures and one page from a run or a sweep; the helpers the notebooks call.

Theory of operation.  A report reads results and never runs the simulator.  :func:`load_results`
turns either input into one :class:`Results`: the outcome rows and room rows of every finished run,
each row carrying its run's ``run_key``, ``replicate``, ``horizon_s``, ``tick_s`` and ``p_online``,
and one column per swept axis named by its dotted key.  A single run is a sweep of one point, so
everything after loading is one code path.  ``simulation.policy`` always has a column; it counts
as an axis when it is swept or merely differs between runs, and then it colours the lines.

Statistics.  A proportion at a grid point pools the point's replicates (k and n summed) with a
Wilson 95 % interval (:func:`sim.results.tables.proportion`); each replicate's own fraction is drawn as a
dot, so the spread between seeds stays visible beside the interval.  Time to restore is measured
from relogin and estimated by Kaplan-Meier (lifelines): a reset not restored is censored at the
user's next reset, its leaving the room or its run's horizon, whichever comes first, never dropped
and never counted as a restoration.  Every run keeps its own horizon, which may itself be swept.

Output.  Everything is written into a temporary directory beside ``out`` that replaces ``out``
only once complete (as :func:`sim.results.rundir.write_run` does); an existing ``out`` is replaced only if
it is a previous report, and never if it is or contains the input.
"""

from __future__ import annotations

import html
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .figures import (
    _err,
    _positions,
    plot_bars,
    plot_km,
    plot_metric,
    plot_online_vs_size,
    plot_vs_holders,
    save_figure,
    server_tables,
)
from .files import replace_dir, temp_dir
from .load import (
    FORMATS,
    MAX_AXIS_VALUES,
    MAX_LINES,
    METRICS,
    POLICY,
    ReportError,
    Results,
    _hits,
    _label,
    binned,
    collect,
    headline,
    joiners,
    load_results,
    online_vs_size,
    proportions,
    sensitivity,
    trace_fit,
)
from .provenance import provenance

__all__ = [
    "FORMATS",
    "METRICS",
    "POLICY",
    "ReportError",
    "Results",
    "collect",
    "format_headline",
    "headline",
    "load_results",
    "make_report",
    "online_vs_size",
    "plot_bars",
    "plot_km",
    "plot_metric",
    "plot_online_vs_size",
    "plot_vs_holders",
    "proportions",
    "server_tables",
]

# ---------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class _Shown:
    title: str
    caption: str
    file: str


def _subset(results: Results, column: str, value: Any) -> Results:
    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame[column] == value]

    axes = tuple(a for a in results.axes if a != column)
    return Results(
        results.kind,
        results.source,
        keep(results.outcomes),
        keep(results.rooms),
        keep(results.runs),
        axes,
        results.notes,
        keep(results.joins),
    )


def _show(shown: list[_Shown], fig: Figure, folder: Path, name: str, title: str, caption: str) -> None:
    """Save ``fig`` as ``name`` (a PNG), and as SVG and PDF beside it (:func:`save_figure`)."""
    save_figure(fig, folder / name, title)
    shown.append(_Shown(title, caption, name))


def _safe(axis: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", axis)


def _plot_lost_per_point(ax: Axes, results: Results) -> None:
    rows = _hits(results, "rooms_lost")
    axes = list(results.axes)
    pooled = proportions(rows, axes)
    y = np.arange(len(pooled))
    err = _err(pooled)
    ax.barh(y, pooled["value"], xerr=err, capsize=3, color="tab:red", alpha=0.6)
    spread = proportions(rows, [*axes, "run_key"]).merge(pooled[axes].assign(_y=y), on=axes)
    ax.plot(spread["value"], spread["_y"], "k.", alpha=0.5, markersize=4)
    ax.set_yticks(y, [_label(axes, tuple(row)) for row in pooled[axes].itertuples(index=False)])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("fraction of encrypted rooms lost (Wilson 95 %; dots: replicates)")


def _figures(results: Results, folder: Path) -> list[_Shown]:
    shown: list[_Shown] = []
    policy = [POLICY] if POLICY in results.axes else []
    policies = sorted(results.runs[POLICY].unique(), key=str)
    for axis in [a for a in results.axes if a != POLICY]:
        rest = [a for a in results.axes if a != axis]
        hue = rest if rest and results.runs.groupby(rest).ngroups <= MAX_LINES else policy
        note = f" (pooled over {', '.join(a for a in rest if a not in hue)})" if set(rest) - set(hue) else ""
        drawn, bins = binned(results, axis)
        bins = f"; {bins}" if bins else ""
        fig = Figure(figsize=(4.7 * len(METRICS), 4.3), layout="constrained")
        for i, (ax, metric) in enumerate(zip(fig.subplots(1, len(METRICS)), METRICS, strict=True)):
            plot_metric(ax, drawn, axis, metric, hue, legend=i == len(METRICS) - 1)
        fig.suptitle(f"Restoration against {axis}{note}")
        caption = (
            f"Lines: replicates pooled per point, Wilson 95 % band; dots: single replicates{note}{bins}."
        )
        _show(shown, fig, folder, f"restoration_vs_{_safe(axis)}.png", f"Restoration against {axis}", caption)
        fig = Figure(figsize=(5.5 * len(policies), 4.2), layout="constrained")
        for ax, value in zip(np.atleast_1d(fig.subplots(1, len(policies))), policies, strict=True):
            plot_km(ax, _subset(drawn, POLICY, value), [axis])
            ax.set_title(f"policy {value}")
        fig.suptitle(f"Time to restore by {axis} (Kaplan-Meier, censored)")
        caption = f"Kaplan-Meier curves with 95 % bands, time on a log scale (under a minute drawn at one minute){note}{bins}."
        _show(shown, fig, folder, f"km_by_{_safe(axis)}.png", f"Time to restore by {axis}", caption)
    if policy:
        others = [a for a in results.axes if a != POLICY]
        at = others if others and results.runs.groupby(others).ngroups <= 2 * MAX_LINES else []
        note = f" (pooled over {', '.join(others)})" if others and not at else ""
        tall = len(at) > 0 and results.runs.groupby(at).ngroups > 3
        count = len(METRICS)
        fig = Figure(figsize=(12, 3.7 * count) if tall else (5 * count, 4.5), layout="constrained")
        panels = fig.subplots(count, 1) if tall else fig.subplots(1, count)
        for ax, metric in zip(panels, METRICS, strict=True):
            plot_bars(ax, results, POLICY, metric, at)
        fig.suptitle(f"Policies side by side{note}")
        caption = f"Bars: replicates pooled, Wilson 95 % interval{note}."
        _show(shown, fig, folder, "policies.png", "Policies side by side", caption)
    pooled = [a for a in results.axes if a not in policy]
    note = f" Pooled over {', '.join(pooled)}." if pooled else ""
    fig = Figure(figsize=(8.5, 4.3), layout="constrained")
    ax = fig.subplots()
    plot_km(ax, results, policy)
    ax.set_title("Time to restore (Kaplan-Meier, censored)")
    caption = (
        "Kaplan-Meier curves with 95 % bands, time on a log scale (a restoration within a minute of the "
        "relogin is drawn at one minute); a reset not restored is censored "
        f"at the horizon, or earlier at the user's next reset or its leaving the room.{note}"
    )
    _show(shown, fig, folder, "time_to_restore_km.png", "Time to restore", caption)
    fig = Figure(figsize=(12, 4.3), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_vs_holders(left, results, policy)
    left.set_title("Restoration against holders online at relogin")
    plot_online_vs_size(right, results)
    right.set_title("A holder online at relogin, by room size")
    caption = f"Right: the analytic curve assumes exponential churn (stationary presence p).{note}"
    _show(shown, fig, folder, "restored_vs_holders_online.png", "Restoration against holders online", caption)
    points = results.runs.groupby(list(results.axes)).ngroups if results.axes else 1
    # one bar per point, labelled by its values: unreadable with many points or long labels (a
    # design's sample)
    if 1 < points <= MAX_BAR_POINTS and len(results.axes) <= 2:
        fig = Figure(figsize=(8, min(30.0, 1.5 + 0.32 * points)), layout="constrained")
        _plot_lost_per_point(fig.subplots(), results)
        fig.suptitle("Rooms lost per grid point")
        caption = "Encrypted rooms whose current key nobody holds at the horizon."
        _show(shown, fig, folder, "rooms_lost_per_point.png", "Rooms lost per grid point", caption)
    return shown


def _time(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "not reached"
    for limit, unit, scale in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / scale:.{0 if unit == 's' else 1}f} {unit}"
    return f"{seconds / 86400:.1f} days"


def _value(value: Any) -> str:
    """An axis value for people: a float sampled by a design to 4 significant digits."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(value)


def format_headline(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`headline` as text for people: percentages with their intervals and counts, times
    with units.  A table of one ungrouped row is turned on its side (one figure per line)."""
    groups = list(table.columns[: list(table.columns).index("runs")])
    out = table[groups].map(_value) if groups else table[groups].astype(str)
    out["runs"], out["resets"] = table["runs"], table["resets"]
    for metric in METRICS:
        k, n, v, lo, hi = (table[f"{metric}_{c}"] for c in ("k", "n", "value", "ci_low", "ci_high"))
        out[METRICS[metric]] = [
            f"{100 * v_:.1f} % [{100 * lo_:.1f}, {100 * hi_:.1f}] ({k_}/{n_})" if n_ else "n/a"
            for k_, n_, v_, lo_, hi_ in zip(k, n, v, lo, hi, strict=True)
        ]
    out["median time to restore [95 %]"] = [
        f"{_time(m)} [{_time(lo)}, {_time(hi)}]" if not math.isnan(m) else "n/a"
        for m, lo, hi in zip(table["km_median_s"], table["km_ci_low_s"], table["km_ci_high_s"], strict=True)
    ]
    if len(out) == 1 and not groups:  # one run: a figure per line reads better
        out = out.T.reset_index().set_axis(["figure", "value"], axis=1)
    return out.astype(str)


def format_joiners(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`joiners` as text for people."""
    groups = list(table.columns[: list(table.columns).index("runs")])
    out = table[groups].map(_value) if groups else table[groups].astype(str)
    for column in ("runs", "joins", "invites", "bundles"):
        out[column] = table[column]
    for name, label in (("keyed", "held the room key"), ("whole_past", "read the whole past")):
        k, n, v, lo, hi = (table[f"{name}_{c}"] for c in ("k", "n", "value", "ci_low", "ci_high"))
        out[label] = [
            f"{100 * v_:.1f} % [{100 * lo_:.1f}, {100 * hi_:.1f}] ({k_}/{n_})" if n_ else "n/a"
            for k_, n_, v_, lo_, hi_ in zip(k, n, v, lo, hi, strict=True)
        ]
    out["median time to the key"] = [_time(m) if not math.isnan(m) else "n/a" for m in table["key_median_s"]]
    return out.astype(str)


def format_sensitivity(table: pd.DataFrame) -> pd.DataFrame:
    """Sensitivity indices as text: each index with its 95 % confidence half-width."""
    out = table[["metric", "parameter"]].astype(str)
    for name in ("S1", "ST", "mu_star"):
        if name in table:
            conf = table[f"{name}_conf"]
            out[name] = [f"{v:.3f} ± {c:.3f}" for v, c in zip(table[name], conf, strict=True)]
    if "sigma" in table:
        out["sigma"] = [f"{v:.3f}" for v in table["sigma"]]
    if "caveat" in table and table["caveat"].astype(bool).any():
        out["caveat (SALib)"] = table["caveat"].astype(str)
    return out


SENSITIVITY_NOTE = {
    "sobol": "Sobol indices (SALib, Saltelli's scheme): S1 is the share of a metric's variance a parameter "
    "explains alone, ST with all its interactions; ± is the 95 % bootstrap half-width. Each point's "
    "metric pools its replicates.",
    "morris": "Morris elementary effects (SALib): mu* is a parameter's mean absolute effect on the metric, "
    "sigma how much that effect depends on the other parameters; ± is the 95 % bootstrap half-width.",
    "latin": "RBD-FAST first-order indices over the Latin hypercube (SALib): S1 is the share of a metric's "
    "variance a parameter explains alone; ± is the 95 % bootstrap half-width.",
}
CONSTANT_NOTE = " A metric that is the same at every point has no indices and is left out."
NOT_YET = "Not every point of the design has finished runs with resets yet."
#: most grid points drawn one bar each ("Rooms lost per grid point")
MAX_BAR_POINTS = 40


TRACE_NOTE = (
    "How well each churn law fits the sessions derived from the trace (run `{run}`): the "
    "Kolmogorov-Smirnov distance between the fitted law and the sample (0 is a perfect fit)."
)
JOINERS_NOTE = (
    "Joiners: members added to a room during the run. 'Held the room key' counts those who held its "
    "current key by the horizon (the median, Kaplan-Meier, runs from the join); 'read the whole past' "
    "counts, of the joins into a room with earlier messages, those who could read every one of them "
    "(scenarios/README.md, 'Joiners')."
)


def _intro(results: Results) -> list[str]:
    runs = results.runs
    lines = [
        f"Source: `{results.source}` ({results.kind}, {len(runs)} finished run{'s' * (len(runs) != 1)})."
    ]
    if results.kind == "run":
        row = runs.iloc[0]
        lines.append(f"Run `{row['run_key']}`, policy `{row[POLICY]}`, keysim {row['keysim_version']}.")
    for axis in results.axes:
        distinct = _positions(runs[axis])[1] or sorted(runs[axis].unique())
        if len(distinct) > MAX_AXIS_VALUES:  # a design's samples
            values = f"{len(distinct)} values from {_value(distinct[0])} to {_value(distinct[-1])}"
        else:
            values = ", ".join(_value(v) for v in distinct)
        lines.append(f"Axis `{axis}`: {values}.")
    if results.axes:
        reps = runs.groupby(list(results.axes)).size()
        count = str(reps.min()) if reps.min() == reps.max() else f"{reps.min()}-{reps.max()}"
        lines.append(f"{len(reps)} grid points, {count} replicate{'s' * (count != '1')} each.")
    lines.append(
        "Proportions carry Wilson 95 % intervals and pool the replicates of a grid point. Time to restore runs from "
        "relogin (Kaplan-Meier median with its 95 % interval); a reset not restored is censored at the "
        "horizon, or earlier at the user's next reset or its leaving the room. 'At once' means within one "
        "key-distribution tick."
    )
    return [*lines, *results.notes]


def _md_table(table: pd.DataFrame) -> list[str]:
    def cell(value: str) -> str:
        return value.replace("|", "\\|")

    return [
        "| " + " | ".join(cell(str(c)) for c in table.columns) + " |",
        "|" + "---|" * len(table.columns),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)),
    ]


def _markdown(
    results: Results,
    table: pd.DataFrame,
    shown: list[_Shown],
    joined: pd.DataFrame,
    sensitive: tuple[str, pd.DataFrame, pd.DataFrame] | None = None,
    fit: tuple[str, pd.DataFrame, list[float]] | None = None,
) -> str:
    parts = ["# keysim report", "", *(f"{line}  " for line in _intro(results))]
    if fit is not None:
        run_key, laws, _ = fit
        parts += ["", "## The trace against keysim's churn laws", "", TRACE_NOTE.format(run=run_key), ""]
        parts += _md_table(laws.astype(str))
    parts += ["", "## Headline figures", "", *_md_table(table)]
    if not joined.empty:
        parts += ["", "## Joiners", "", JOINERS_NOTE, "", *_md_table(joined)]
    if sensitive is not None:
        method, _, indices = sensitive
        parts += ["", "## Sensitivity", "", SENSITIVITY_NOTE[method] + CONSTANT_NOTE, ""]
        parts += _md_table(indices) if not indices.empty else [NOT_YET]
    for s in shown:
        stem = s.file.removesuffix(".png")
        parts += ["", f"## {s.title}", "", f"![{s.title}]({s.file})", ""]
        parts += [f"*{s.caption}* (also as [SVG]({stem}.svg) and [PDF]({stem}.pdf))"]
    return "\n".join(parts) + "\n"


_TICKS = re.compile(r"`+")


def _inline_html(text: str) -> str:
    """``text`` HTML-escaped, with its Markdown code spans rendered as ``<code>...</code>``.

    The page's text is written as Markdown for ``report.md``; the HTML page renders the one inline
    construct it uses, code spans, as CommonMark does: a run of n backticks opens a span that the
    next run of exactly n backticks closes (backticks without such a partner stay literal), and one
    space is stripped from each end of content that begins and ends with a space.
    """
    out: list[str] = []
    done = search = 0
    while (opening := _TICKS.search(text, search)) is not None:
        n = len(opening.group())
        closing = next((c for c in _TICKS.finditer(text, opening.end()) if len(c.group()) == n), None)
        if closing is None:
            search = opening.end()
            continue
        code = text[opening.end() : closing.start()]
        if code.startswith(" ") and code.endswith(" ") and code.strip(" "):
            code = code[1:-1]
        out += [html.escape(text[done : opening.start()]), f"<code>{html.escape(code)}</code>"]
        done = search = closing.end()
    out.append(html.escape(text[done:]))
    return "".join(out)


def _page(
    results: Results,
    table: pd.DataFrame,
    joined: pd.DataFrame,
    sensitive: tuple[str, pd.DataFrame, pd.DataFrame] | None,
    fit: tuple[str, pd.DataFrame, list[float]] | None,
    command: Sequence[str] | str | None,
) -> str:
    """The interactive page (:mod:`sim.results.page`), self-contained."""
    import altair as alt
    import vl_convert

    from .page import report_page

    intro = [_inline_html(line) for line in _intro(results)]
    with_note = None
    if sensitive is not None:
        method, numbers, text = sensitive
        with_note = (method, SENSITIVITY_NOTE[method] + CONSTANT_NOTE, numbers, text)
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    bundle: Any = vl_convert.javascript_bundle  # its stub wants a snippet, which is optional
    return report_page(
        results,
        intro,
        table,
        joined=joined,
        sensitive=with_note,
        fit=fit,
        made_by=provenance(command),
        bundle=str(bundle(vl_version=major_minor)),
    )


#: the tables a report writes
REPORT_TABLES = ("headline.csv", "joiners.csv", "sensitivity.csv", "trace_fit.csv")
_FIGURE = re.compile(
    r"(restoration_vs_.+|km_by_.+|policies|time_to_restore_km|restored_vs_holders_online|rooms_lost_per_point)"
    r"\.(png|svg|pdf)"
)


def _report_owned(fmt: str) -> Any:
    """What a report in ``fmt`` writes, and so may drop from an earlier report: its page, its
    tables, its figures; not the other format's page, nor anything else."""

    def owned(name: str) -> bool:
        return name == f"report.{fmt}" or name in REPORT_TABLES or _FIGURE.fullmatch(name) is not None

    return owned


def _check_out(path: Path, out: Path) -> None:
    src, dst = path.resolve(), out.resolve()
    if dst == src or src.is_relative_to(dst):
        raise ReportError(out, "the output directory must not be the input directory or contain it")
    if out.exists() and not out.is_dir():
        raise ReportError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not any((out / f"report.{f}").is_file() for f in FORMATS):
        raise ReportError(out, "exists and is not a keysim report; refusing to replace it")


def make_report(
    path: Path, out: Path | None = None, fmt: str = "md", *, command: Sequence[str] | str | None = None
) -> Path:
    """Figures (PNG, SVG and PDF), ``headline.csv`` and one page for the run or sweep in ``path``,
    under ``out`` (default ``path/report``); returns the page's path.  ``md`` writes
    ``report.md`` showing the PNG figures; ``html`` writes ``report.html``, an interactive page
    that needs no other file (:mod:`sim.results.page`).  What an earlier report in ``out`` held
    and this one does not write (the other format's page, a user's notes) is kept.  ``command``
    is the command line, kept in the page's provenance."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ReportError(path, f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    results = load_results(path)
    out = Path(out) if out is not None else path / "report"
    _check_out(path, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir(out.parent, f".{out.name}.")
    except OSError as exc:
        raise ReportError(out, f"cannot write here: {exc}") from None
    try:
        shown = _figures(results, tmp)
        table = headline(results)
        table.to_csv(tmp / "headline.csv", index=False)
        text = format_headline(table)
        joined = joiners(results)
        if not joined.empty:
            joined.to_csv(tmp / "joiners.csv", index=False)
            joined = format_joiners(joined)
        found = sensitivity(path, results)
        sensitive = None
        if found is not None:
            method, numbers = found
            if not numbers.empty:
                numbers.to_csv(tmp / "sensitivity.csv", index=False)
            sensitive = (method, numbers, format_sensitivity(numbers))
        fit = trace_fit(results)
        if fit is not None:
            fit[1].to_csv(tmp / "trace_fit.csv", index=False)
        if fmt == "md":
            page = _markdown(results, text, shown, joined, sensitive, fit)
        else:
            page = _page(results, text, joined, sensitive, fit, command)
        (tmp / f"report.{fmt}").write_text(page, encoding="utf-8")
        replace_dir(tmp, out, owned=_report_owned(fmt))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / f"report.{fmt}"
