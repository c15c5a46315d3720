"""The report as an interactive page: one self-contained HTML file, charts in Vega-Lite (Altair).

Theory of operation.  :func:`interactive_page` draws the same figures as the static report from
the same statistics (:mod:`sim.results.load`), as Vega-Lite specifications built with Altair,
and writes them into one HTML file with the Vega, Vega-Lite and Vega-Embed libraries inlined
(vl-convert's bundle), so the page opens offline and can be mailed as it is.  Every chart has
tooltips on its points; clicking a legend entry shows that group alone (shift-click adds more,
a double click shows all again); tables are Vega-Lite text marks filtered by the text
typed in the box above them (taken literally), each with the plain HTML table beside it for copying.
Scenario parameters and provenance are plain HTML.  The only script of keysim's own is the loop
that hands each specification to ``vegaEmbed``.

Only statistics go into the page (pooled proportions, each replicate's fraction, Kaplan-Meier
curves thinned to at most :data:`MAX_CURVE_POINTS` steps), never the outcome rows, so a
sweep of millions of rows still gives a page of a few megabytes.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .load import (
    KM_FLOOR_HOURS,
    METRICS,
    POLICY,
    Results,
    _groups,
    _hits,
    _label,
    binned,
    km_curves,
    proportions,
)

__all__ = ["MAX_CURVE_POINTS", "Section", "interactive_page"]

#: most steps drawn of one Kaplan-Meier curve (evenly spread on the log time axis)
MAX_CURVE_POINTS = 300
#: short column names for the metrics in charts and the interactive table
SHORT = {
    "restored": "restored",
    "at_once": "at once",
    "with_history": "with history",
    "rooms_lost": "rooms lost",
}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


class Section:
    """One part of the page: a heading, prose, and charts (Vega-Lite specs) or HTML."""

    def __init__(self, anchor: str, title: str, intro: str = "") -> None:
        self.anchor, self.title, self.intro = anchor, title, intro
        self.parts: list[tuple[str, Any]] = []  # ("chart", (id, spec, caption)) or ("html", text)

    def chart(self, chart: Any, caption: str = "") -> None:
        ident = f"{self.anchor}-{sum(kind == 'chart' for kind, _ in self.parts)}"
        self.parts.append(("chart", (ident, chart.to_dict(), caption)))

    def html(self, text: str) -> None:
        self.parts.append(("html", text))


# ---------------------------------------------------------------------------------------- charts


def _alt() -> Any:
    import altair as alt

    return alt


def _legend_toggle(field: str) -> Any:
    """A selection of groups bound to the legend: click one to show it alone."""
    return _alt().selection_point(fields=[field], bind="legend", name="pick_" + re.sub(r"\W", "_", field))


def _text_table(table: pd.DataFrame, name: str, *, widths: Mapping[str, int] | None = None) -> Any:
    """``table`` (strings) as a Vega-Lite text-mark table under a filter box: a row is shown when
    it contains the text typed there (case-insensitive; taken literally, so ``c++`` or ``[`` is
    text, not a pattern)."""
    alt = _alt()
    columns = [str(c) for c in table.columns]
    table = table.astype(str).set_axis(columns, axis=1)
    width = {
        c: (widths or {}).get(c, max(60, round(7.4 * max(len(c), int(table[c].str.len().max() or 0))) + 18))
        for c in columns
    }
    x0, left = {}, 0
    for c in columns:
        x0[c] = left
        left += width[c]
    row_text = table.apply(lambda r: " | ".join(r), axis=1)
    long = [
        {"row": i, "column": c, "x": x0[c], "value": table.iloc[i][c], "line": row_text.iloc[i]}
        for i in range(len(table))
        for c in columns
    ]
    line_h = 20
    header = pd.DataFrame({"column": columns, "x": [x0[c] for c in columns], "y": line_h / 2 + 2})
    height = line_h * (len(table) + 1) + 6
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[0, left], nice=False, zero=True))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[height, 0], nice=False, zero=False))
    search = alt.param(
        name=f"{name}_filter",
        value="",
        bind=alt.binding(input="search", placeholder="text the rows must contain", name="Filter rows: "),
    )
    head = (
        alt.Chart(header)
        .mark_text(align="left", baseline="middle", fontWeight="bold", font=FONT, fontSize=12)
        .encode(x=x, y=y, text="column:N")
    )
    body = (
        alt.Chart(pd.DataFrame(long))
        .transform_filter(f"!{name}_filter || indexof(lower(datum.line), lower({name}_filter)) >= 0")
        .transform_joinaggregate(first="min(row)", groupby=["row"])
        .transform_window(rank="dense_rank()", sort=[alt.SortField("row")])
        .transform_calculate(y=f"{line_h} * datum.rank + {line_h / 2 + 2}")
        .mark_text(align="left", baseline="middle", font=FONT, fontSize=12)
        .encode(x=x, y=y, text="value:N", tooltip=[alt.Tooltip("line:N", title="row")])
        .add_params(search)
    )
    return (
        alt.layer(head, body)
        .properties(width=left, height=height)
        .configure_view(stroke=None)
        .properties(usermeta={"keysim": {"table": name, "rows": len(table)}})
    )


def _fractions(results: Results, metric: str, by: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled proportions per group of ``by`` (Wilson 95 %) and each replicate's own fraction."""
    rows = _hits(results, metric)
    pooled = proportions(rows, list(by))
    spread = proportions(rows, [*by, "run_key"])
    return pooled, spread


def _group_label(frame: pd.DataFrame, hue: Sequence[str]) -> pd.Series:
    if not hue:
        return pd.Series(["all"] * len(frame), index=frame.index)
    return frame[list(hue)].apply(lambda r: _label(hue, tuple(r)), axis=1)


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _against_axis(results: Results, axis: str, hue: Sequence[str], note: str) -> Any:
    """Every metric against ``axis``: pooled line with its Wilson band, replicate dots."""
    alt = _alt()
    pooled_parts, spread_parts = [], []
    for metric in METRICS:
        pooled, spread = _fractions(results, metric, [axis, *hue])
        pooled_parts.append(pooled.assign(metric=SHORT[metric]))
        spread_parts.append(spread.assign(metric=SHORT[metric]))
    pooled = pd.concat(pooled_parts, ignore_index=True)
    spread = pd.concat(spread_parts, ignore_index=True)
    pooled["group"], spread["group"] = _group_label(pooled, hue), _group_label(spread, hue)
    field = axis.replace(".", "_")
    pooled, spread = pooled.rename(columns={axis: field}), spread.rename(columns={axis: field})
    pooled["interval"] = [
        f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(pooled["ci_low"], pooled["ci_high"], strict=True)
    ]
    kind = "Q" if _numeric(results.runs[axis]) else "O"
    pick = _legend_toggle("group")
    x = alt.X(f"{field}:{kind}", title=axis)
    color = alt.Color("group:N", title=", ".join(h.split(".")[-1] for h in hue) or "group")
    shown = alt.condition(pick, alt.value(1.0), alt.value(0.08))
    tip = [
        alt.Tooltip("group:N"),
        alt.Tooltip(f"{field}:{kind}", title=axis),
        alt.Tooltip("value:Q", format=".3f", title="pooled fraction"),
        alt.Tooltip("interval:N", title="Wilson 95 %"),
        alt.Tooltip("k:Q", title="k"),
        alt.Tooltip("n:Q", title="n"),
    ]
    y = alt.Y("value:Q", title="fraction", scale=alt.Scale(zero=False, nice=False, padding=8))
    # one data set for the facet: the layers pick their rows by ``kind``
    both = pd.concat([pooled.assign(kind="pooled"), spread.assign(kind="replicate")], ignore_index=True)
    base = alt.Chart().transform_filter("datum.kind == 'pooled'")
    if kind == "Q":
        band = base.mark_area(opacity=0.18).encode(
            x=x, y="ci_low:Q", y2="ci_high:Q", color=color, opacity=shown
        )
        line = base.mark_line(point=True).encode(x=x, y=y, color=color, opacity=shown, tooltip=tip)
    else:
        band = base.mark_rule().encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=color, opacity=shown)
        line = base.mark_point(filled=True, size=60).encode(x=x, y=y, color=color, opacity=shown, tooltip=tip)
    dots = (
        alt.Chart()
        .transform_filter("datum.kind == 'replicate'")
        .mark_circle(size=22)
        .encode(
            x=x,
            y="value:Q",
            color=color,
            opacity=alt.condition(pick, alt.value(0.5), alt.value(0.04)),
            tooltip=[
                alt.Tooltip("run_key:N", title="run"),
                alt.Tooltip("value:Q", format=".3f", title="fraction"),
            ],
        )
    )
    return (
        alt.layer(band, line.add_params(pick), dots)
        .properties(width=260, height=220)
        .facet(column=alt.Column("metric:N", title=None, sort=list(SHORT.values())), data=both)
        .resolve_scale(y="independent")
        .properties(title=f"Restoration against {axis}{note}")
    )


def _thin(curve: pd.DataFrame) -> pd.DataFrame:
    """At most :data:`MAX_CURVE_POINTS` steps of one curve, evenly spread on a log time axis,
    its first and last steps kept."""
    if len(curve) <= MAX_CURVE_POINTS:
        return curve
    hours = curve["hours"].clip(lower=KM_FLOOR_HOURS).to_numpy()
    grid = np.geomspace(hours.min(), hours.max(), MAX_CURVE_POINTS)
    keep = np.unique(np.concatenate([[0, len(curve) - 1], np.searchsorted(hours, grid, side="right") - 1]))
    return curve.iloc[keep[keep >= 0]]


def _km_chart(results: Results, by: Sequence[str], note: str) -> Any:
    alt = _alt()
    curves = km_curves(results, by)
    if curves.empty:  # no reset with a relogin: nothing to draw
        return None
    curves = pd.concat([_thin(c) for _, c in curves.groupby("label", sort=False)], ignore_index=True)
    curves["hours_shown"] = curves["hours"].clip(lower=KM_FLOOR_HOURS)
    curves["hours_s"] = [f"{h:.3g} h" for h in curves["hours"]]
    pick = _legend_toggle("label")
    x = alt.X(
        "hours_shown:Q",
        scale=alt.Scale(type="log"),
        title="hours since relogin (log scale)",
    )
    color = alt.Color("label:N", title="group")
    shown = alt.condition(pick, alt.value(1.0), alt.value(0.08))
    base = alt.Chart(curves)
    band = base.mark_area(interpolate="step-after", opacity=0.15).encode(
        x=x, y="ci_low:Q", y2="ci_high:Q", color=color, opacity=shown
    )
    line = (
        base.mark_line(interpolate="step-after")
        .encode(
            x=x,
            y=alt.Y(
                "survival:Q",
                title="fraction not yet restored",
                scale=alt.Scale(zero=False, nice=False, padding=8),
            ),
            color=color,
            opacity=shown,
        )
        .add_params(pick)
    )
    hover = base.mark_point(size=30, opacity=0).encode(
        x=x,
        y="survival:Q",
        tooltip=[
            alt.Tooltip("label:N", title="group"),
            alt.Tooltip("hours_s:N", title="since relogin"),
            alt.Tooltip("survival:Q", format=".3f", title="not yet restored"),
            alt.Tooltip("ci_low:Q", format=".3f", title="95 % low"),
            alt.Tooltip("ci_high:Q", format=".3f", title="95 % high"),
        ],
    )
    return alt.layer(band, line, hover).properties(
        width=640, height=300, title=f"Time to restore (Kaplan-Meier, censored){note}"
    )


def _policy_bars(results: Results, note: str) -> Any:
    alt = _alt()
    parts = []
    for metric in METRICS:
        pooled, _ = _fractions(results, metric, [POLICY])
        parts.append(pooled.assign(metric=SHORT[metric]))
    stats = pd.concat(parts, ignore_index=True).rename(columns={POLICY: "policy"})
    stats["policy"] = stats["policy"].astype(str)
    stats["interval"] = [
        f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(stats["ci_low"], stats["ci_high"], strict=True)
    ]
    pick = _legend_toggle("policy")
    shown = alt.condition(pick, alt.value(1.0), alt.value(0.15))
    x = alt.X("policy:N", title=None, axis=alt.Axis(labelAngle=-30))
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("value:Q", title="fraction (Wilson 95 %)"),
            color=alt.Color("policy:N"),
            opacity=shown,
            tooltip=[
                "policy:N",
                alt.Tooltip("metric:N"),
                alt.Tooltip("value:Q", format=".3f", title="pooled fraction"),
                alt.Tooltip("interval:N", title="Wilson 95 %"),
                "k:Q",
                "n:Q",
            ],
        )
        .add_params(pick)
    )
    rules = alt.Chart().mark_rule(color="black").encode(x=x, y="ci_low:Q", y2="ci_high:Q", opacity=shown)
    return (
        alt.layer(bars, rules)
        .properties(width=max(160, 34 * stats["policy"].nunique()), height=220)
        .facet(column=alt.Column("metric:N", title=None, sort=list(SHORT.values())), data=stats)
        .resolve_scale(y="independent")
        .properties(title=f"Policies side by side{note}")
    )


def _holders_chart(results: Results, by: Sequence[str], note: str) -> Any:
    alt = _alt()
    rows = _hits(results, "restored")
    parts = []
    for key, g in _groups(rows[rows["relogin_at"].notna()], list(by)):
        stats = proportions(g, ["holders_online_at_relogin"])
        parts.append(stats.assign(group=_label(by, key)))
    if not parts:
        return None
    stats = pd.concat(parts, ignore_index=True)
    pick = _legend_toggle("group")
    shown = alt.condition(pick, alt.value(1.0), alt.value(0.08))
    x = alt.X(
        "holders_online_at_relogin:Q",
        title="holders online at relogin",
        # a count: a tick at each whole number there is data for, none between
        axis=alt.Axis(values=sorted({int(v) for v in stats["holders_online_at_relogin"]}), format="d"),
    )
    color = alt.Color("group:N")
    line = (
        alt.Chart(stats)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y(
                "value:Q",
                title="fraction restored by the horizon",
                scale=alt.Scale(zero=False, nice=False, padding=8),
            ),
            color=color,
            opacity=shown,
            tooltip=[
                "group:N",
                alt.Tooltip("holders_online_at_relogin:Q", title="holders online"),
                alt.Tooltip("value:Q", format=".3f", title="restored"),
                "k:Q",
                "n:Q",
            ],
        )
        .add_params(pick)
    )
    rules = alt.Chart(stats).mark_rule().encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=color, opacity=shown)
    return alt.layer(rules, line).properties(
        width=560, height=260, title=f"Restoration against holders online at relogin (Wilson 95 %){note}"
    )


def _sensitivity_chart(indices: pd.DataFrame, method: str) -> Any:
    alt = _alt()
    names = [n for n in ("S1", "ST", "mu_star") if n in indices]
    parts = [
        indices[["metric", "parameter"]].assign(index=n, value=indices[n], conf=indices[f"{n}_conf"])
        for n in names
    ]
    long = pd.concat(parts, ignore_index=True)
    long["low"], long["high"] = long["value"] - long["conf"], long["value"] + long["conf"]
    pick = _legend_toggle("index")
    shown = alt.condition(pick, alt.value(1.0), alt.value(0.15))
    y = alt.Y("parameter:N", title=None)
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title="index (± 95 % half-width)"),
            y=y,
            yOffset="index:N",
            color=alt.Color("index:N"),
            opacity=shown,
            tooltip=[
                "metric:N",
                "parameter:N",
                "index:N",
                alt.Tooltip("value:Q", format=".3f"),
                alt.Tooltip("conf:Q", format=".3f", title="±"),
            ],
        )
        .add_params(pick)
    )
    rules = (
        alt.Chart()
        .mark_rule(color="black")
        .encode(x="low:Q", x2="high:Q", y=y, yOffset="index:N", opacity=shown)
    )
    return (
        alt.layer(bars, rules)
        .properties(width=300, height=alt.Step(12))
        .facet(column=alt.Column("metric:N", title=None), data=long)
        .properties(title=f"Sensitivity ({method})")
    )


def _hourly_chart(shares: Sequence[float]) -> Any:
    alt = _alt()
    frame = pd.DataFrame({"hour": range(len(shares)), "share": list(shares)})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("hour:O", title="hour of the trace's day", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("share:Q", title="share of online time", axis=alt.Axis(format="%")),
            tooltip=["hour:O", alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(
            width=560, height=200, title="When the trace's users are online (share of online time per hour)"
        )
    )


# ---------------------------------------------------------------------------------------- the page


def _html_table(table: pd.DataFrame) -> str:
    return str(table.to_html(index=False, escape=True, border=0, classes="plain"))


def _details(summary: str, body: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>{body}</details>"


def _key_values(mapping: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(v if isinstance(v, str) else json.dumps(v, default=str))}</code></td></tr>"
        for k, v in mapping.items()
    )
    return f"<table class='kv'>{rows}</table>"


STYLE = f"""
body {{ font-family: {FONT}; margin: 0; color: #1d1d1f; background: #fff; line-height: 1.45; }}
main {{ max-width: 1500px; margin: 0 auto; padding: 1rem 2rem 4rem 17rem; }}
nav {{ position: fixed; top: 0; left: 0; width: 14rem; height: 100vh; overflow-y: auto; padding: 1rem;
      background: #f5f5f7; border-right: 1px solid #ddd; box-sizing: border-box; font-size: 0.92rem; }}
nav ol {{ padding-left: 1.2rem; }} nav a {{ color: #0b57d0; text-decoration: none; }}
h1 {{ margin-top: 0.5rem; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }}
figure {{ margin: 1rem 0; }} figcaption {{ color: #555; font-size: 0.92rem; max-width: 60rem; }}
table.plain, table.kv {{ border-collapse: collapse; font-size: 0.88rem; margin: 0.5rem 0; }}
table.plain td, table.plain th, table.kv td, table.kv th {{ padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }}
table.kv th {{ font-weight: 600; white-space: nowrap; }}
code {{ font-size: 0.86em; background: #f3f3f3; padding: 0 3px; border-radius: 3px; word-break: break-all; }}
details {{ margin: 0.6rem 0; }} summary {{ cursor: pointer; color: #0b57d0; }}
.vega-bindings {{ margin: 0.4rem 0; }} .vega-bindings input {{ width: 22rem; padding: 3px 6px; }}
.chart {{ overflow-x: auto; }}
@media (max-width: 900px) {{ nav {{ position: static; width: auto; height: auto; }} main {{ padding: 1rem; }} }}
"""

#: keysim's only script: hand each specification to Vega-Embed, keep the views for inspection
EMBED = """
window.keysimViews = {};
window.keysimErrors = [];
const keysimSpecs = JSON.parse(document.getElementById('keysim-specs').textContent);
window.keysimReady = Promise.all(Object.entries(keysimSpecs).map(([id, spec]) =>
  vegaEmbed('#' + id, spec, {renderer: 'svg', actions: {export: true, source: false, compiled: false, editor: false}})
    .then(result => { window.keysimViews[id] = result.view; })
    .catch(error => { window.keysimErrors.push(String(error)); console.error(error); })));
"""


def interactive_page(
    title: str,
    intro: Sequence[str],
    sections: Sequence[Section],
    bundle: str,
) -> str:
    """The whole page: a contents list, ``intro`` (HTML paragraphs), then each section."""
    specs: dict[str, Any] = {}
    body = []
    for section in sections:
        body.append(f"<section id='{section.anchor}'><h2>{html.escape(section.title)}</h2>")
        if section.intro:
            body.append(f"<p>{section.intro}</p>")
        for kind, part in section.parts:
            if kind == "html":
                body.append(part)
                continue
            ident, spec, caption = part
            specs[ident] = spec
            body.append(f"<figure><div class='chart' id='{ident}'></div>")
            if caption:
                body.append(f"<figcaption>{caption}</figcaption>")
            body.append("</figure>")
        body.append("</section>")
    contents = "".join(f"<li><a href='#{s.anchor}'>{html.escape(s.title)}</a></li>" for s in sections)
    # a specification is data: "</" inside one must not end the script element
    payload = json.dumps(specs, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>\n"
        f"<script>{bundle}</script></head>\n<body>\n"
        f"<nav><strong>Contents</strong><ol>{contents}</ol></nav>\n<main>\n<h1>{html.escape(title)}</h1>\n"
        + "".join(f"<p>{line}</p>" for line in intro)
        + "<noscript><p><strong>The charts need JavaScript; the tables below do not.</strong></p></noscript>\n"
        + "\n".join(body)
        + f"\n</main>\n<script type='application/json' id='keysim-specs'>{payload}</script>\n"
        + f"<script>{EMBED}</script>\n</body></html>\n"
    )


def _pooled_note(pooled: Sequence[str]) -> str:
    return f" (pooled over {', '.join(pooled)})" if pooled else ""


def report_page(
    results: Results,
    intro: Sequence[str],
    table: pd.DataFrame,
    *,
    joined: pd.DataFrame,
    sensitive: tuple[str, str, pd.DataFrame, pd.DataFrame] | None,
    fit: tuple[str, pd.DataFrame, list[float]] | None,
    made_by: Mapping[str, Any],
    bundle: str,
) -> str:
    """The interactive report of ``results``: ``intro`` (HTML paragraphs), the headline
    ``table`` (text), the joiners' table, the sensitivity (method, note, indices as numbers and
    as text), the trace fit, and the provenance of the report itself (``made_by``)."""
    from .load import MAX_LINES

    sections: list[Section] = []
    if fit is not None:
        run_key, laws, hourly = fit
        s = Section(
            "trace-fit",
            "The trace against keysim's churn laws",
            f"How well each churn law fits the sessions derived from the trace (run <code>{html.escape(run_key)}</code>):"
            " the Kolmogorov-Smirnov distance between the fitted law and the sample (0 is a perfect fit),"
            " before any policy result.",
        )
        s.chart(_text_table(laws, "fit"))
        if hourly:
            s.chart(
                _hourly_chart(hourly), "Share of all online time that falls in each hour of the trace's day."
            )
        sections.append(s)
    s = Section(
        "headline", "Headline figures", "Replicates pooled per grid point, Wilson 95 % intervals (k/n)."
    )
    s.chart(
        _text_table(table, "headline"),
        "Type in the box to keep only the rows that match; hover for the whole row.",
    )
    s.html(_details("as a plain table (to copy)", _html_table(table)))
    sections.append(s)
    if not joined.empty:
        s = Section("joiners", "Joiners")
        s.chart(_text_table(joined, "joiners"))
        s.html(_details("as a plain table (to copy)", _html_table(joined)))
        sections.append(s)
    if sensitive is not None:
        method, note, numbers, text = sensitive
        s = Section("sensitivity", "Sensitivity", html.escape(note))
        if not numbers.empty:
            s.chart(
                _sensitivity_chart(numbers, method),
                "Bars: indices; black lines: 95 % confidence half-widths.",
            )
            s.html(_details("the indices as a table", _html_table(text)))
        sections.append(s)
    policy = [POLICY] if POLICY in results.axes else []
    for axis in [a for a in results.axes if a != POLICY]:
        rest = [a for a in results.axes if a != axis]
        hue = rest if rest and results.runs.groupby(rest).ngroups <= MAX_LINES else policy
        note = _pooled_note([a for a in rest if a not in hue])
        drawn, bins = binned(results, axis)
        s = Section(f"axis-{re.sub(r'[^A-Za-z0-9]+', '-', axis)}", f"Restoration against {axis}")
        s.chart(
            _against_axis(drawn, axis, hue, note),
            "Lines: replicates pooled per point, with the Wilson 95 % band (or bar); dots: single replicates"
            f"{'; ' + html.escape(bins) if bins else ''}."
            " Click a legend entry to show that group alone (shift-click for more, double-click for all).",
        )
        sections.append(s)
    pooled = [a for a in results.axes if a not in policy]
    km = _km_chart(results, policy, _pooled_note(pooled))
    s = Section("time-to-restore", "Time to restore")
    if km is None:
        s.html("<p>No reset was followed by a relogin: there is no time to restore to draw.</p>")
    else:
        s.chart(
            km,
            "Kaplan-Meier curves with 95 % bands, time on a log scale (a restoration within a minute of the relogin"
            " is drawn at one minute); a reset not restored is censored at the horizon, or earlier at the"
            " user's next reset or its leaving the room. Hover a step for its numbers.",
        )
    sections.append(s)
    if policy:
        s = Section("policies", "Policies side by side")
        s.chart(
            _policy_bars(results, _pooled_note(pooled)),
            "Bars: replicates pooled, black lines: Wilson 95 % intervals.",
        )
        sections.append(s)
    chart = _holders_chart(results, policy, _pooled_note(pooled))
    if chart is not None:
        s = Section("holders", "Restoration against holders online")
        s.chart(chart, "Resets whose user never logged in again are left out.")
        sections.append(s)
    sections.append(_parameters(results, made_by))
    return interactive_page("keysim report", intro, sections, bundle)


def _parameters(results: Results, made_by: Mapping[str, Any]) -> Section:
    s = Section("parameters", "Scenario parameters and provenance")
    summaries = list(results.summaries)
    if summaries:
        first = summaries[0]
        parameters = first.get("parameters") or {}
        axes = ", ".join(f"<code>{html.escape(a)}</code>" for a in results.axes) or "none"
        s.html(
            f"<p>Parameters of run <code>{html.escape(str(results.runs['run_key'].iloc[0]))}</code>; keys that vary between runs: {axes}.</p>"
        )
        for section, values in parameters.items():
            if isinstance(values, Mapping):
                s.html(_details(f"[{section}]", _key_values(values), open_=section == "simulation"))
        versions = sorted({str(x.get("keysim_version", "?")) for x in summaries})
        commits = sorted({str((x.get("provenance") or {}).get("git_commit")) for x in summaries})
        prov = dict(first.get("provenance") or {})
        dependencies = prov.pop("dependencies", None)
        s.html(
            f"<p>Runs made by keysim {', '.join(map(html.escape, versions))} at commit"
            f"{'s' * (len(commits) > 1)} {', '.join(f'<code>{html.escape(c)}</code>' for c in commits)}.</p>"
        )
        s.html(_details("provenance of the first run", _key_values(prov)))
        if isinstance(dependencies, Mapping):
            s.html(_details("its dependencies", _key_values(dependencies)))
    report = dict(made_by)
    dependencies = report.pop("dependencies", None)
    s.html(_details("provenance of this report", _key_values(report), open_=True))
    if isinstance(dependencies, Mapping):
        s.html(_details("the report's dependencies", _key_values(dependencies)))
    return s
