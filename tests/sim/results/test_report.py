"""``keysim report``: a run or a sweep in, figures and one page out.

The sweep fixture is built by hand in the store's layout (``sim/sweep/store.py``: runs.sqlite, one
parquet file per run in outcomes/ and rooms/, summaries/), from small smoke runs, so these tests
pin the layout the report reads; one test reads a sweep that ``keysim sweep`` itself wrote.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main
from sim.engine import OUTCOME_COLUMNS, ROOM_COLUMNS, run_scenario
from sim.inputs.scenario import load_scenario
from sim.results import proportion, summarize, write_run
from sim.results.report import POLICY, ReportError, collect, headline, load_results, make_report

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"
OFFLINE = "churn.mean_offline_minutes"
SCHEMA = (
    "CREATE TABLE runs (run_key TEXT PRIMARY KEY, point_json TEXT NOT NULL, replicate INT NOT NULL, "
    "seed INT NOT NULL, config_hash TEXT NOT NULL, keysim_version TEXT NOT NULL, status TEXT NOT NULL, "
    "started_at REAL, finished_at REAL, wall_s REAL, command TEXT NOT NULL, error TEXT)"
)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def make_sweep(
    folder: Path,
    points: Iterable[dict[str, object]],
    *,
    replications: int = 2,
    extra: dict[str, object] | None = None,
    unfinished: int = 0,
) -> Path:
    """A sweep directory in the store's layout; ``extra`` are overrides that are not axes."""
    for sub in ("outcomes", "rooms", "summaries"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "sweep.toml").write_text(f'[sweep]\nbase = "{SMOKE}"\n')
    con = sqlite3.connect(folder / "runs.sqlite")
    con.execute(SCHEMA)
    i = 0
    for point in points:
        for replicate in range(replications):
            overrides = {"simulation.horizon_days": 1, **(extra or {}), **point}
            scenario = load_scenario(SMOKE, overrides=overrides).with_seed(10 + replicate)
            result = run_scenario(scenario)
            key = f"k{i:03d}"
            cols = {**point, "replicate": replicate}
            pd.DataFrame(result.outcomes, columns=list(OUTCOME_COLUMNS)).assign(**cols).to_parquet(
                folder / "outcomes" / f"{key}.parquet", index=False
            )
            pd.DataFrame(result.rooms, columns=list(ROOM_COLUMNS)).assign(**cols).to_parquet(
                folder / "rooms" / f"{key}.parquet", index=False
            )
            summary = {**summarize(result), "point": point, "replicate": replicate, "run_key": key}
            (folder / "summaries" / f"{key}.json").write_text(json.dumps(_json_safe(summary), default=str))
            row = (
                key,
                json.dumps(point),
                replicate,
                10 + replicate,
                "h",
                "0.1.0",
                "done",
                0,
                1,
                1,
                "c",
                None,
            )
            con.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
            i += 1
    for j in range(unfinished):  # a failed run (no files) and one in flight: both left out
        status = ("failed", "running")[j % 2]
        row = (f"u{j}", json.dumps({}), 9, 0, "h", "0.1.0", status, 0, None, None, "c", "boom")
        con.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
    con.commit()
    con.close()
    return folder


GRID = [{OFFLINE: off, POLICY: pol} for off in (60, 600) for pol in ("queue", "live")]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep"), GRID, unfinished=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "smoke-1"
    write_run(run_scenario(load_scenario(SMOKE)), out, plots=False)
    return out


def linked_images(page: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())


# ---------------------------------------------------------------------------------------- sweeps


def test_sweep_report_has_every_figure_and_the_table(sweep: Path, tmp_path: Path) -> None:
    page = make_report(sweep, tmp_path / "rep")
    assert page == tmp_path / "rep" / "report.md"
    images = linked_images(page)
    assert set(images) == {
        "restoration_vs_churn-mean_offline_minutes.png",
        "km_by_churn-mean_offline_minutes.png",
        "policies.png",
        "time_to_restore_km.png",
        "restored_vs_holders_online.png",
        "rooms_lost_per_point.png",
    }
    for name in images:
        assert (page.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "2 run(s) not finished" in text and "4 grid points, 2 replicates each" in text
    table = [line for line in text.splitlines() if line.startswith("| 60") or line.startswith("| 600")]
    assert len(table) == 4 and all(" | 2 | " in line for line in table)  # runs per point: 2
    csv = pd.read_csv(page.parent / "headline.csv")
    assert len(csv) == 4 and set(csv["runs"]) == {2}
    assert not list(tmp_path.glob(".rep.*"))  # no temporary directory left


def test_default_out_is_dir_report(sweep: Path) -> None:
    page = make_report(sweep)
    assert page == sweep / "report" / "report.md" and page.is_file()
    assert load_results(sweep).runs.shape[0] == 8  # the report folder is not read as data


def test_headline_pools_replicates_with_a_wilson_interval(sweep: Path) -> None:
    results = load_results(sweep)
    assert results.axes == (OFFLINE, POLICY)
    table = headline(results).set_index([OFFLINE, POLICY])
    con = sqlite3.connect(sweep / "runs.sqlite")
    keys = [
        k
        for k, p in con.execute("SELECT run_key, point_json FROM runs WHERE status = 'done'")
        if json.loads(p) == {OFFLINE: 600, POLICY: "queue"}
    ]
    con.close()
    assert len(keys) == 2
    outcomes = pd.concat(pd.read_parquet(sweep / "outcomes" / f"{k}.parquet") for k in keys)
    rooms = pd.concat(pd.read_parquet(sweep / "rooms" / f"{k}.parquet") for k in keys)
    row = table.loc[(600, "queue")]
    k, n = int(outcomes["restored"].sum()), len(outcomes)
    assert (row["restored_k"], row["restored_n"]) == (k, n)
    assert row["restored_ci_low"] == pytest.approx(proportion(k, n)["ci_low"])
    assert row["restored_ci_high"] == pytest.approx(proportion(k, n)["ci_high"])
    delay = outcomes["restored_at"] - outcomes["relogin_at"]
    assert row["at_once_k"] == int((outcomes["restored"] & (delay <= 10.0)).sum())
    encrypted = rooms[rooms["encrypted"]]
    assert (row["rooms_lost_k"], row["rooms_lost_n"]) == (int(encrypted["lost"].sum()), len(encrypted))
    assert row["resets"] == sum(
        pd.read_parquet(sweep / "outcomes" / f"{k}.parquet")["reset_id"].nunique() for k in keys
    )


def test_policy_that_differs_between_runs_is_an_axis(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "s", [{OFFLINE: 60}], replications=1, extra={POLICY: "live"})
    make_sweep(tmp_path / "t", [{OFFLINE: 60}], replications=1)
    # one run log, two runs whose policies differ though policy is not swept
    con = sqlite3.connect(folder / "runs.sqlite")
    con.execute(
        "INSERT INTO runs VALUES ('k999', ?, 0, 1, 'h', 'v', 'done', 0, 1, 1, 'c', NULL)",
        (json.dumps({OFFLINE: 60}),),
    )
    con.commit()
    con.close()
    for sub, ext in (("outcomes", "parquet"), ("rooms", "parquet"), ("summaries", "json")):
        (folder / sub / f"k999.{ext}").write_bytes((tmp_path / "t" / sub / f"k000.{ext}").read_bytes())
    results = load_results(folder)
    assert results.axes == (OFFLINE, POLICY)
    assert sorted(results.runs[POLICY]) == ["live", "queue"]
    page = make_report(folder, tmp_path / "rep")
    assert "policies.png" in linked_images(page)


def test_html_page_beside_the_static_figures(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "html"
    assert main(["report", str(sweep), "--out", str(out), "--format", "html"]) == 0
    page = out / "report.html"
    assert str(page) in capsys.readouterr().out
    text = page.read_text()
    # the page draws its own charts (tests/sim/results/test_page.py); the figures are files beside it
    assert "<table" in text and "data:image/png" not in text and "vegaEmbed" in text
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert len(pngs) == 6
    assert sorted(p.stem for p in out.glob("*.svg")) == sorted(p.stem for p in out.glob("*.pdf")) == pngs


def test_real_sweep_store(tmp_path: Path) -> None:
    """A sweep written by ``keysim sweep`` itself (sim/sweep/runner.py, sim/sweep/store.py)."""
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'[sweep]\nbase = "{SMOKE}"\nreplications = 2\n[sweep.set]\n"simulation.horizon_days" = 0.5\n'
        '[sweep.axes]\n"simulation.policy" = ["queue", "live"]\n'
    )
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    page = make_report(out)
    results = load_results(out)
    assert results.axes == (POLICY,) and len(results.runs) == 4
    assert "policies.png" in linked_images(page)
    assert len(headline(results)) == 2


# ---------------------------------------------------------------------------------------- one run


def test_single_run_matches_its_summary(run_dir: Path) -> None:
    page = make_report(run_dir)
    assert set(linked_images(page)) == {"time_to_restore_km.png", "restored_vs_holders_online.png"}
    summary = json.loads((run_dir / "summary.json").read_text())
    row = headline(load_results(run_dir)).iloc[0]
    for metric, key in (
        ("restored", "fraction_restored"),
        ("at_once", "fraction_restored_at_once"),
        ("rooms_lost", "rooms_lost"),
    ):
        assert row[f"{metric}_k"] == summary[key]["k"] and row[f"{metric}_n"] == summary[key]["n"]
        assert row[f"{metric}_ci_low"] == pytest.approx(summary[key]["ci_low"])
    assert row["km_median_s"] == pytest.approx(summary["time_to_restore_km"]["median_s"])
    text = page.read_text()
    assert "| figure | value |" in text and f"({summary['fraction_restored']['k']}/" in text


def hand_made_run(folder: Path, rows: list[dict[str, object]], horizon_days: float) -> Path:
    folder.mkdir()
    base = {c: 0 for c in OUTCOME_COLUMNS} | {
        "run_id": "hand-0",
        "policy": "queue",
        "restored_via": "",
        "superseded_at": math.nan,
        "left_at": math.nan,
    }
    outcomes = pd.DataFrame([base | r for r in rows], columns=list(OUTCOME_COLUMNS))
    outcomes.to_parquet(folder / "outcomes.parquet", index=False)
    room = {c: 0 for c in ROOM_COLUMNS} | {
        "run_id": "hand-0",
        "policy": "queue",
        "room": "r",
        "encrypted": True,
        "lost": False,
    }
    pd.DataFrame([room], columns=list(ROOM_COLUMNS)).to_parquet(folder / "rooms.parquet", index=False)
    parameters = {"simulation": {"horizon_days": horizon_days, "tick_seconds": 10.0}}
    (folder / "summary.json").write_text(json.dumps({"run_id": "hand-0", "parameters": parameters}))
    return folder


def test_unrestored_resets_are_censored_not_dropped(tmp_path: Path) -> None:
    """One of four restored after an hour, three never: the median is not reached (dropping the
    censored would say one hour; counting them as restored at the horizon would say ten)."""
    nan = math.nan
    rows = [{"reset_id": 0, "relogin_at": 0.0, "restored_at": 3600.0, "restored": True}]
    rows += [{"reset_id": i, "relogin_at": 0.0, "restored_at": nan, "restored": False} for i in (1, 2, 3)]
    folder = hand_made_run(tmp_path / "run", rows, horizon_days=10 / 24)
    row = headline(load_results(folder)).iloc[0]
    assert row["km_median_s"] == math.inf and row["restored_k"] == 1 and row["restored_n"] == 4
    assert "not reached" in make_report(folder).read_text()
    # three of four restored by an hour: the median is the last event time below one half
    rows = [
        {"reset_id": i, "relogin_at": 0.0, "restored_at": 600.0 * (i + 1), "restored": True} for i in range(3)
    ]
    rows += [{"reset_id": 3, "relogin_at": 0.0, "restored_at": nan, "restored": False}]
    folder = hand_made_run(tmp_path / "run2", rows, horizon_days=10 / 24)
    assert headline(load_results(folder)).iloc[0]["km_median_s"] == pytest.approx(1200.0)


def test_collect_labels_in_memory_runs() -> None:
    runs = {
        policy: run_scenario(load_scenario(SMOKE, overrides={POLICY: policy, "simulation.horizon_days": 0.5}))
        for policy in ("queue", "live")
    }
    results = collect(runs, axis="variant")
    assert results.axes == ("variant", POLICY)
    table = headline(results, ["variant"])
    assert list(table["variant"]) == ["live", "queue"] and set(table["runs"]) == {1}


# ---------------------------------------------------------------------------------------- bad input


def test_missing_directory_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "Traceback" not in err


def test_not_a_run_or_sweep_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["report", str(tmp_path)]) == 2
    assert f"{tmp_path}: neither a run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "notes.txt")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_no_finished_runs(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "s", [], unfinished=2)
    with pytest.raises(ReportError, match="no finished runs") as exc:
        make_report(folder)
    assert exc.value.path == folder and not (folder / "report").exists()


def test_incomplete_run_directory_names_the_missing_file(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("outcomes.parquet", "summary.json"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    with pytest.raises(ReportError, match=r"rooms\.parquet is missing"):
        make_report(broken)
    (broken / "rooms.parquet").write_bytes(b"not parquet")
    with pytest.raises(ReportError, match="cannot read"):
        make_report(broken)


def test_unknown_format(run_dir: Path) -> None:
    with pytest.raises(ReportError, match="unknown format"):
        make_report(run_dir, fmt="pdf")


# ---------------------------------------------------------------------------------------- output safety


def test_out_must_not_be_or_contain_the_input(run_dir: Path) -> None:
    before = sorted(p.name for p in run_dir.iterdir())
    for out in (run_dir, run_dir.parent):
        with pytest.raises(ReportError, match="must not be the input directory"):
            make_report(run_dir, out)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_out_that_is_not_a_report_is_not_replaced(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not a keysim report"):
        make_report(run_dir, other)
    assert (other / "precious.txt").read_text() == "keep me"


def test_a_previous_report_is_replaced_and_the_other_page_kept(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    make_report(run_dir, out, fmt="html")
    html_page = (out / "report.html").read_bytes()
    (out / "time_to_restore_km.png").write_bytes(b"")  # a figure of the earlier report: redrawn
    (out / "notes.md").write_text("mine")  # not the report's: kept
    page = make_report(run_dir, out)
    assert page.name == "report.md" and (out / "time_to_restore_km.png").stat().st_size > 0
    assert (out / "report.html").read_bytes() == html_page and (out / "notes.md").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_failure_leaves_the_previous_report_and_no_temporary_files(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rep"
    make_report(run_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("sim.results.report._figures", broken)
    with pytest.raises(RuntimeError):
        make_report(run_dir, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_html_renders_code_spans_and_markdown_keeps_them(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "runs" / "smoke-<7>&"  # a name that needs escaping inside the code span
    shutil.copytree(run_dir, source)
    page = make_report(source, tmp_path / "html", fmt="html").read_text()
    key = load_results(source).runs.iloc[0]["run_key"]
    prose = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page, flags=re.S)  # the charts' code has backticks
    assert "`" not in prose  # no Markdown code span is left unrendered
    assert f"Source: <code>{tmp_path}/runs/smoke-&lt;7&gt;&amp;</code> (run, 1 finished run)." in page
    assert f"Run <code>{key}</code>, policy <code>queue</code>, keysim " in page
    md = make_report(source, tmp_path / "md").read_text()
    assert f"Source: `{source}` (run" in md and f"Run `{key}`, policy `queue`" in md and "<code>" not in md


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Run `runs/smoke-7`.", "Run <code>runs/smoke-7</code>."),
        ("`a<b>` & `c`", "<code>a&lt;b&gt;</code> &amp; <code>c</code>"),
        ("``x ` y`` and `z`", "<code>x ` y</code> and <code>z</code>"),
        ("`` `tick` ``", "<code>`tick`</code>"),  # one space each side is stripped
        ("no span: ` alone, <b>", "no span: ` alone, &lt;b&gt;"),
        ("`unbalanced`` stays", "`unbalanced`` stays"),
        ("plain 'quoted' text", "plain &#x27;quoted&#x27; text"),
    ],
)
def test_inline_html_code_spans(text: str, expected: str) -> None:
    from sim.results.report import _inline_html

    assert _inline_html(text) == expected
