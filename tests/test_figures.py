"""Figures have one source: results files carry their provenance, pages and the README read
them (`benchmarks.figures`, `benchmarks.headline`), and a figure from another served model or
older code says so."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import figures
from benchmarks import headline
from benchmarks import provenance

REPO = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def shallow() -> bool:
    return git("rev-parse", "--is-shallow-repository") == "true"


@pytest.fixture
def results_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Results read from and written to a temporary folder, not the committed one."""
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    monkeypatch.setattr(provenance, "RESULTS", tmp_path)
    figures.Results.load.__func__.cache_clear()  # type: ignore[attr-defined]
    yield tmp_path
    figures.Results.load.__func__.cache_clear()  # type: ignore[attr-defined]


def write(folder: Path, stem: str, data: dict) -> None:
    (folder / f"{stem}.json").write_text(json.dumps(data))


def block(commit: str, architecture: str | None) -> dict:
    model = {"tag": "fraud-mlp:abc"} | ({"architecture": architecture} if architecture else {})
    return {
        "commit": commit,
        "date": "2026-12-06T00:00:00+00:00",
        "machine": "2 logical CPUs",
        "command": "python -m benchmarks.x",
        "served_model": model,
    }


@pytest.mark.skipif(shallow(), reason="staleness needs the commits results were measured at")
def test_readme_headline_table_is_what_the_results_files_say() -> None:
    assert headline.main(["--check"]) == 0, "run `make readme` and commit README.md"


def test_headline_rows_name_only_results_files_that_exist() -> None:
    for row in (*headline.HEADLINE, *headline.LONGER):
        for stem in row.stems():
            assert (REPO / "benchmarks" / "results" / f"{stem}.json").exists(), stem
        assert row.render_figure()


@pytest.mark.skipif(shallow(), reason="needs the repository's history")
def test_a_figure_from_todays_model_and_code_carries_no_note(results_dir: Path) -> None:
    today = figures.current_architecture("mlp")
    write(results_dir, "fresh", {"provenance": block(git("rev-parse", "--short", "HEAD"), today),
                                 "rps": 3812.4})  # fmt: skip
    assert figures.figure("fresh", "rps", ",.0f") == "3,812"
    assert "Not current" not in figures.source("fresh")


def test_a_figure_from_another_served_model_says_so(results_dir: Path) -> None:
    head = git("rev-parse", "--short", "HEAD")
    write(results_dir, "old-model", {"provenance": block(head, "one MLP [128, 64]"), "ms": 4.56})
    text = figures.figure("old-model", "ms", ".1f")
    assert text.startswith("4.6 (") and "older served model (one MLP [128, 64])" in text
    write(results_dir, "unrecorded", {"date": "2026-11-29", "ms": 4.56})
    assert "served model was not recorded" in figures.figure("unrecorded", "ms", ".1f")


@pytest.mark.skipif(shallow(), reason="needs the repository's history")
def test_a_figure_from_before_the_measured_code_changed_says_so(results_dir: Path) -> None:
    first = git("rev-list", "--max-parents=0", "HEAD").splitlines()[0][:7]
    write(results_dir, "old-code", {"provenance": block(first, None), "x": 1})
    assert f"the code it measures has changed since `{first}`" in figures.figure("old-code", "x")


def test_paths_select_filter_and_reduce(results_dir: Path) -> None:
    write(
        results_dir,
        "runs",
        {
            "provenance": block("", None) | {"served_model": {"tag": "none"}},
            "kills": [{"mode": "journal", "missing": 0}, {"mode": "async", "missing": 734}],
            "runs": [{"rps": 10.0}, {"rps": 30.0}, {"rps": 20.0}],
            "recall": {"at_0.1pct_fpr": {"mean": 0.84}},
            "sizes": {"scipy": 81, "scipy.libs": 30},
        },
    )
    assert figures.value("runs", "kills.?mode=async.missing") == 734
    assert figures.value("runs", "runs.*.rps", "median") == 20.0
    assert figures.value("runs", "kills.1.mode") == "async"
    assert figures.value("runs", "recall.at_0.1pct_fpr.mean") == 0.84  # a key with a dot
    assert figures.value("runs", "sizes.scipy.libs") == 30  # the longest key wins
    assert figures.value("runs", "sizes.scipy") == 81
    with pytest.raises(KeyError, match=re.escape("runs.json has no 'runs.0.p99'")):
        figures.value("runs", "runs.0.p99")
    with pytest.raises(KeyError, match="0 items match"):
        figures.value("runs", "kills.?mode=none.missing")


def test_results_are_written_only_with_their_provenance(results_dir: Path) -> None:
    with pytest.raises(ValueError, match="no provenance"):
        provenance.write_results("bare", {"rps": 1})
    header = provenance.run_header("benchmarks.x", ["--seconds", "5"], None, model=None)
    provenance.write_results("x-vm", {**header, "rps": 1}, "| table |\n")
    written = json.loads((results_dir / "x-vm.json").read_text())
    assert written["provenance"]["command"] == "python -m benchmarks.x --seconds 5"
    assert written["provenance"]["commit"].split("+")[0] == git("rev-parse", "--short", "HEAD")
    assert (results_dir / "x-vm.md").read_text() == "| table |\n"


def test_the_recorded_architecture_is_what_training_configs_compose() -> None:
    """`architecture` of a card's training config and of today's configs agree in form."""
    text = figures.current_architecture("mlp")
    assert text.startswith("5 cross-fitted MLP") and "LightGBM" in text
