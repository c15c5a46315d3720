"""The interactive report page (``keysim report --format html``): self-contained, and rendered in
a real browser (Debian's chromium, driven by Playwright) without a console error.

The browser tests need ``/usr/bin/chromium`` (``apt-get install chromium``, which ``.ci/run``
does); without it they are skipped, unless ``KEYSIM_REQUIRE_BROWSER=1`` (set by ``.ci/run``)
makes a missing browser a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim.cli import main
from sim.results.report import format_headline, headline, load_results

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "scenarios" / "smoke.toml"
CHROMIUM = os.environ.get("KEYSIM_CHROMIUM", "/usr/bin/chromium")

SWEEP = """
[sweep]
name = "page"
base = "{base}"
replications = 2
seed = 8

[sweep.set]
"population.users" = 60
"simulation.horizon_days" = 1

[sweep.axes]
"churn.mean_offline_minutes" = [60, 600]
"simulation.policy" = ["rocketchat", "live", "backup"]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("page")
    spec = folder / "page.toml"
    spec.write_text(SWEEP.replace("{base}", str(SMOKE)))
    out = folder / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def page(sweep: Path) -> Path:
    assert main(["report", str(sweep), "--format", "html"]) == 0
    return sweep / "report" / "report.html"


def specs(page: Path) -> dict[str, Any]:
    found = re.search(
        r"<script type='application/json' id='keysim-specs'>(.*?)</script>", page.read_text(), re.S
    )
    assert found
    return dict(json.loads(found[1].replace("<\\/", "</")))


def visible(page: Path) -> str:
    """The page without its scripts and styles."""
    return re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page.read_text(), flags=re.S)


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    # nothing is fetched: no external script, style sheet, image or font
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=['\"]?(https?:)?//", text)
    assert "<link" not in text and "@import" not in text
    assert "vegaEmbed" in text and len(text) < 4_000_000
    # and only statistics went in, not the outcome rows
    assert not any(
        len(spec.get("datasets", {}).get(name, [])) > 5000
        for spec in specs(page).values()
        for name in spec.get("datasets", {})
    )


def test_the_page_has_contents_sections_and_provenance(page: Path, sweep: Path) -> None:
    body = visible(page)
    anchors = re.findall(r"<li><a href='#([^']+)'>", body)
    assert anchors == [
        "headline",
        "axis-churn-mean-offline-minutes",
        "time-to-restore",
        "policies",
        "holders",
        "parameters",
    ]
    for anchor in anchors:
        assert f"<section id='{anchor}'>" in body
    # every chart div has its specification, and the other way round
    assert sorted(re.findall(r"<div class='chart' id='([^']+)'>", body)) == sorted(specs(page))
    # scenario parameters, and provenance of the runs and of the report itself
    assert "<summary>[simulation]</summary>" in body and "<th>horizon_days</th>" in body
    assert "provenance of this report" in body
    assert html.escape(f"keysim report {sweep} --format html") in body
    # the headline table, as a Vega-Lite table and as a plain one, with the figures of headline()
    table = format_headline(headline(load_results(sweep)))
    assert '<table class="dataframe plain">' in body
    for value in table.iloc[:, 2:].to_numpy().ravel():
        assert html.escape(str(value)) in body
    legends = [s for s in specs(page).values() if "pick_" in json.dumps(s)]
    assert len(legends) >= 4  # every chart with groups toggles them from its legend


def test_the_headline_table_filter_is_a_vega_lite_parameter(page: Path) -> None:
    spec = specs(page)["headline-0"]
    text = json.dumps(spec)
    assert '"input": "search"' in text and "headline_filter" in text
    assert spec["usermeta"]["keysim"] == {"table": "headline", "rows": 6}


# ---------------------------------------------------------------------------------------- the browser


def _need_browser() -> None:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("KEYSIM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"KEYSIM_REQUIRE_BROWSER=1 but there is no browser at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            # as root in a sandbox, and with no network: nothing must be fetched
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def opened(browser: Any, page: Path) -> Iterator[tuple[Any, list[str]]]:
    tab = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    tab.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    tab.on(
        "request",
        lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:")) else None,
    )
    tab.goto(page.as_uri())
    tab.wait_for_function("window.keysimReady !== undefined")
    tab.evaluate("window.keysimReady")
    yield tab, problems
    tab.close()


def test_every_chart_renders_without_a_console_error(opened: tuple[Any, list[str]], page: Path) -> None:
    tab, problems = opened
    assert tab.evaluate("window.keysimErrors") == []
    assert sorted(tab.evaluate("Object.keys(window.keysimViews)")) == sorted(specs(page))
    for ident in specs(page):
        marks = tab.locator(
            f"#{ident} svg .mark-symbol, #{ident} svg .mark-line, #{ident} svg .mark-rect, "
            f"#{ident} svg .mark-area, #{ident} svg .mark-text, #{ident} svg .mark-rule"
        )
        assert marks.count() > 0, f"{ident} drew nothing"
    assert problems == []


def test_typing_in_the_filter_keeps_the_matching_rows(opened: tuple[Any, list[str]], sweep: Path) -> None:
    tab, problems = opened
    table = format_headline(headline(load_results(sweep)))
    cells = "#headline-0 svg .mark-text text"
    assert tab.locator(cells).count() == table.shape[1] * (len(table) + 1)
    tab.locator("#headline-0 .vega-bindings input").fill("backup")
    tab.wait_for_function(
        f"document.querySelectorAll('{cells}').length < {table.shape[1] * (len(table) + 1)}"
    )
    matching = sum(
        table.iloc[i].astype(str).str.contains("backup", case=False).any() for i in range(len(table))
    )
    assert 0 < matching < len(table)
    assert tab.locator(cells).count() == table.shape[1] * (matching + 1)
    assert problems == []


def test_a_legend_click_shows_one_policy_and_hover_shows_numbers(opened: tuple[Any, list[str]]) -> None:
    tab, problems = opened
    view = "window.keysimViews['policies-0']"
    assert tab.evaluate(f"{view}.data('pick_policy_store').length") == 0
    tab.locator("#policies-0 svg .role-legend-symbol path").first.click()
    tab.wait_for_function(f"{view}.data('pick_policy_store').length > 0")
    # one entry per facet cell, each the first policy of the sorted legend
    picked = tab.evaluate(f"{view}.data('pick_policy_store').map(entry => entry.values)")
    assert picked == [["backup"]] * 4
    tab.locator("#policies-0 svg .role-legend-label text").nth(1).click()
    tab.wait_for_function(f"{view}.data('pick_policy_store')[0].values[0] === 'live'")
    # hovering a bar shows its numbers in Vega's tooltip
    tab.locator("#policies-0 svg .mark-rect path").first.hover()
    tip = tab.locator("#vg-tooltip-element")
    tip.wait_for(state="visible")
    assert "Wilson 95 %" in tip.inner_text() and "pooled fraction" in tip.inner_text()
    assert problems == []


def test_a_screenshot_of_the_page(opened: tuple[Any, list[str]], tmp_path: Path) -> None:
    tab, _ = opened
    shot = tmp_path / "page.png"
    tab.screenshot(path=str(shot), full_page=True)
    from PIL import Image

    with Image.open(shot) as image:
        width, height = image.size
        colours = len(image.convert("RGB").resize((200, 400)).getcolors(maxcolors=80_000) or ())
    assert width >= 1500 and height > 2000 and colours > 50  # a long page of charts, not a blank one
    if os.environ.get("KEYSIM_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["KEYSIM_KEEP_SCREENSHOT"])


def test_a_run_page_renders_too(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(SMOKE),
                "--quiet",
                "--no-plots",
                "--out",
                str(out),
                "--set",
                "simulation.horizon_days=1",
            ]
        )
        == 0
    )
    assert main(["report", str(out), "--format", "html"]) == 0
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto((out / "report" / "report.html").as_uri())
    tab.wait_for_function("window.keysimReady !== undefined")
    tab.evaluate("window.keysimReady")
    assert errors == [] and tab.evaluate("window.keysimErrors") == []
    assert (
        tab.locator(".chart svg.marks").count() == len(tab.evaluate("Object.keys(window.keysimViews)")) >= 3
    )
    tab.close()
    assert pd.read_csv(out / "report" / "headline.csv").shape[0] == 1


def test_a_broken_chart_is_caught(browser: Any, tmp_path: Path) -> None:
    """The checks above can fail: a specification Vega-Lite cannot compile is reported."""
    import altair as alt
    import vl_convert

    from sim.results.page import Section, interactive_page

    section = Section("broken", "Broken")
    section.chart(alt.Chart(pd.DataFrame({"a": [1, 2]})).mark_point().encode(x="a:Q"))
    bad = {**section.parts[0][1][1], "mark": "nonsense"}  # no such mark: Vega-Lite cannot compile it
    section.parts.append(("chart", ("broken-1", bad, "")))
    bundle: Any = vl_convert.javascript_bundle
    page = tmp_path / "broken.html"
    page.write_text(interactive_page("broken", [], [section], str(bundle(vl_version="6.4"))))
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(page.as_uri())
    tab.wait_for_function("window.keysimReady !== undefined")
    tab.evaluate("window.keysimReady")
    assert list(tab.evaluate("Object.keys(window.keysimViews)")) == ["broken-0"]
    assert len(tab.evaluate("window.keysimErrors")) == 1 and len(errors) == 1
    tab.close()


def test_the_trace_fit_comes_first_in_both_pages(tmp_path: Path) -> None:
    """A CollegeMsg-driven run: the churn laws' fit to the trace opens the report, before any
    policy result, with the numbers of the run's summary."""
    out = tmp_path / "college"
    argv = ["run", str(REPO / "scenarios" / "collegemsg.toml"), "--quiet", "--no-plots", "--out", str(out)]
    argv += ["--set", "simulation.horizon_days=10", "--set", "rooms.dms=300"]
    assert main(argv) == 0
    fit = json.loads((out / "summary.json").read_text())["trace_fit"]
    md = tmp_path / "md" / "report.md"
    assert main(["report", str(out), "--out", str(md.parent)]) == 0
    assert main(["report", str(out), "--out", str(md.parent), "--format", "html"]) == 0
    table = pd.read_csv(md.parent / "trace_fit.csv")
    assert list(table["law"]) == ["exponential", "weibull", "lognormal"] * 2
    for sample, label in (("online", "session lengths"), ("offline", "gaps between sessions")):
        rows = table[table["sample"] == label].set_index("law")
        for law in ("exponential", "weibull", "lognormal"):
            assert rows.loc[law, "KS"] == round(fit[sample][law]["ks"], 3)
        assert (rows["n"] == fit[sample]["n"]).all()
    text = md.read_text()
    assert text.index("## The trace against keysim's churn laws") < text.index("## Headline figures")
    page = (md.parent / "report.html").read_text()
    assert page.index("<section id='trace-fit'>") < page.index("<section id='headline'>")
    hourly = specs(md.parent / "report.html")["trace-fit-1"]
    shares = next(iter(hourly["datasets"].values()))
    assert [round(r["share"], 9) for r in shares] == [round(x, 9) for x in fit["hourly_online_share"]]


def test_a_designs_samples_are_drawn_binned() -> None:
    from sim.results.load import AXIS_BINS, Results, binned

    axis = "churn.mean_offline_minutes"
    runs = pd.DataFrame({"run_key": [f"r{i}" for i in range(40)], axis: [60.0 + 7.3 * i for i in range(40)]})
    outcomes = runs.loc[runs.index.repeat(3)].reset_index(drop=True)
    results = Results("sweep", "x", outcomes, outcomes.iloc[:0], runs, (axis,))
    drawn, note = binned(results, axis)
    assert drawn.runs[axis].nunique() == AXIS_BINS and "binned into 8 bins" in note
    # each run keeps its bin's median, in its outcome rows too; runs are not mixed up
    centre = dict(zip(drawn.runs["run_key"], drawn.runs[axis], strict=True))
    assert (drawn.outcomes[axis] == drawn.outcomes["run_key"].map(centre)).all()
    assert sorted(drawn.runs.groupby(axis).size()) == [5] * 8
    assert all(abs(centre[f"r{i}"] - (60.0 + 7.3 * i)) < 7.3 * 5 for i in range(40))
    # a grid's few values are left alone
    few = Results(
        "sweep", "x", outcomes, outcomes.iloc[:0], runs.assign(**{axis: [60, 180, 600, 900] * 10}), (axis,)
    )
    assert binned(few, axis)[0] is few and binned(few, axis)[1] == ""


def test_a_run_without_a_reset_gets_a_page_too(tmp_path: Path) -> None:
    out = tmp_path / "quiet"
    argv = [
        "run",
        str(SMOKE),
        "--quiet",
        "--no-plots",
        "--out",
        str(out),
        "--set",
        "simulation.horizon_days=0.5",
    ]
    argv += ["--set", "resets.rate_per_user_day=0", "--set", "resets.forgot_password_rate_per_user_day=0"]
    assert main(argv) == 0
    assert main(["report", str(out), "--format", "html"]) == 0
    body = visible(out / "report" / "report.html")
    assert "No reset was followed by a relogin" in body and "time-to-restore-0" not in specs(
        out / "report" / "report.html"
    )


def test_the_filter_takes_its_text_literally(opened: tuple[Any, list[str]]) -> None:
    tab, problems = opened
    cells = "#headline-0 svg .mark-text text"
    for text in ("(", "c++", "[0"):  # not patterns: no error, and here no row contains them but "[0"
        tab.locator("#headline-0 .vega-bindings input").fill(text)
        tab.wait_for_timeout(150)
    assert problems == []
    assert tab.locator(cells).count() > 0  # "[0" is in the Wilson intervals: rows are shown
