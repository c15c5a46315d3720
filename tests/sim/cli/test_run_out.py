"""``keysim run``: the output directory, the seed and the run name are checked before the run.

A run never deletes what it did not write: ``--out`` may be new, empty or an earlier run, and is
refused otherwise, before any simulated time is spent.  Errors exit with status 2 and one line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sim.cli import main

SMOKE = Path(__file__).parents[3] / "scenarios" / "smoke.toml"


def run(*args: str | Path) -> int:
    return main(["run", str(SMOKE), "--quiet", "--no-plots", *map(str, args)])


def refused(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    assert run(*args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("keysim: error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_a_directory_that_is_not_a_run_is_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "notes.txt").write_text("keep")
    (precious / "sub" / "data.csv").write_text("keep")
    err = refused(capsys, "--out", precious)
    assert "holds no keysim run; refusing to replace it" in err
    assert (precious / "notes.txt").read_text() == "keep"
    assert (precious / "sub" / "data.csv").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_an_empty_directory_and_an_earlier_run_are_replaced(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("--out", empty) == 0
    assert (empty / "summary.json").is_file()
    assert run("--out", empty) == 0  # now an earlier run


def test_the_working_directory_is_refused_when_it_holds_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    assert "holds no keysim run" in refused(capsys, "--out", ".")
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_an_ancestor_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "v.json").write_text("{}")
    assert "is not a directory" in refused(capsys, "--out", tmp_path / "v.json" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json"]


def test_an_output_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_text("mine")
    assert "exists and is not a directory" in refused(capsys, "--out", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "mine"


def test_missing_parents_are_created(tmp_path: Path) -> None:
    assert run("--out", tmp_path / "a" / "b" / "run") == 0
    assert (tmp_path / "a" / "b" / "run" / "outcomes.parquet").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--seed", "99999999999999999999"), "--seed: must be in [0, 2**63), got 99999999999999999999"),
        (("--seed", "-1"), "--seed: must be in [0, 2**63), got -1"),
        (("--set", "simulation.seed=-3"), "simulation.seed: must be in [0, 2**63), got -3"),
        (("--set", "simulation.name=../../escape"), "simulation.name: must be letters, digits"),
        (("--set", "simulation.name=a/b"), "simulation.name: must be letters, digits"),
        (
            (
                "--set",
                "churn.rhythm=daily",
                "--set",
                "churn.rhythm_amplitude=0.5",
                "--set",
                "churn.rhythm_peak_hour=30",
            ),
            "churn.rhythm_peak_hour: must be in [0, 24)",
        ),
        (("--set", "churn.rhythm_peak_hour=168"), "churn.rhythm_peak_hour: must be in [0, 168)"),
        (("--set", "churn.model=weibull", "--set", "churn.shape=50"), "churn.shape: the Weibull shape"),
        (("--set", "churn.model=lognormal", "--set", "churn.sigma=9"), "churn.sigma: the lognormal sigma"),
    ],
)
def test_bad_values_exit_2_before_anything_is_written(
    args: tuple[str, ...],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert message in refused(capsys, *args)
    assert list(tmp_path.iterdir()) == []


def test_a_weekly_rhythm_peaks_at_an_hour_of_the_week(tmp_path: Path) -> None:
    weekly = ("--set", "churn.rhythm=weekly", "--set", "churn.rhythm_amplitude=0.5")
    assert run(*weekly, "--set", "churn.rhythm_peak_hour=100", "--out", tmp_path / "w") == 0


def test_summary_says_null_when_invariants_were_not_checked(tmp_path: Path) -> None:
    import json

    assert run("--out", tmp_path / "plain") == 0
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["invariant_violations"] is None
    assert run("--out", tmp_path / "checked", "--check-invariants") == 0
    assert json.loads((tmp_path / "checked" / "summary.json").read_text())["invariant_violations"] == []


def test_a_bad_class_parameter_names_the_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SMOKE.read_text().replace(
        "[rooms]\n",
        '[[population.classes]]\nname = "a"\nfraction = 0.5\nmodel = "weibull"\nshape = 50\n\n'
        '[[population.classes]]\nname = "b"\nfraction = 0.5\n\n[rooms]\n',
        1,
    )
    (tmp_path / "classes.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "classes.toml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keysim: error: population.classes[0].shape: the Weibull shape"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.toml"]


def test_a_run_without_rooms_writes_its_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "empty"
    assert (
        main(["run", str(SMOKE), "--set", "rooms.dms=0", "--set", "rooms.groups=0", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "encrypted rooms=0" in printed and "median time to restore (Kaplan-Meier): n/a" in printed
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        f"{stem}.{ext}"
        for stem in ("restored_vs_holders_online", "rooms_without_holder", "time_to_restore_km")
        for ext in ("pdf", "png", "svg")
    ]


def test_a_report_written_into_a_run_survives_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke-1"
    assert run("--out", out) == 0
    assert main(["report", str(out)]) == 0
    assert main(["report", str(out), "--format", "html"]) == 0
    assert "beside report.md, kept from an earlier report" in capsys.readouterr().out
    (out / "notes.txt").write_text("mine")
    pages = {p.name: p.read_bytes() for p in (out / "report").iterdir() if p.is_file()}
    assert {"report.md", "report.html", "headline.csv"} <= set(pages)
    # the run again (the shape `make test` runs `make run` in): keysim's files are new, the rest kept
    assert main(["run", str(SMOKE), "--no-plots", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "kept from the earlier run: notes.txt, report/ (describing that run, not this one)" in said
    assert (out / "notes.txt").read_text() == "mine"
    assert {p.name: p.read_bytes() for p in (out / "report").iterdir() if p.is_file()} == pages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke-1"]  # no temporary left beside it


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_files_are_made_with_the_users_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        out = tmp_path / "run"
        assert main(["run", str(SMOKE), "--quiet", "--out", str(out)]) == 0
        assert main(["report", str(out)]) == 0
    finally:
        os.umask(old)
    for path in [out, *out.rglob("*")]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_a_swap_interrupted_between_its_renames_loses_nothing(tmp_path: Path) -> None:
    """Killed after the old run was moved aside and before the new one moved in: the next run
    puts the old one back first, and carries the user's files over from it."""
    from sim.results.files import replace_dir
    from sim.results.rundir import RUN_ENTRIES

    out = tmp_path / "run"
    assert run("--out", out) == 0
    (out / "notes.txt").write_text("mine")
    os.replace(out, tmp_path / ".run.old")  # the state the interruption left
    assert run("--out", out) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # and the function alone, with nothing new in the way
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    os.replace(out, tmp_path / ".run.old")
    assert (
        replace_dir(fresh, out, owned=RUN_ENTRIES.__contains__) == ["notes.txt"]
        and (out / "notes.txt").read_text() == "mine"
    )
