"""The backfill's commit, and its recovery after a crash at each step, on Hadoop's real
FileSystem (local files here; ``gs://`` goes through the same calls)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backfill.commit import COMMIT_RECORD
from backfill.commit import HadoopFiles
from backfill.commit import StagedRun
from backfill.commit import apply_commit
from backfill.commit import commit
from backfill.commit import recover


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[1]").appName("commit-test").getOrCreate()
    yield session
    session.stop()


def touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def visible(output: Path) -> set[str]:
    """The data files a reader of `output` sees (not staging, not checksum files)."""
    return {
        p.relative_to(output).as_posix()
        for p in output.rglob("*.parquet")
        if not p.relative_to(output).as_posix().startswith("_")
    }


def staged_run(files: HadoopFiles, output: Path, key: str, run: str) -> StagedRun:
    staged = StagedRun(files.qualified(str(output)), key, run)
    folder = output / "_staging" / f"{key}-{run}"
    touch(folder / "scores" / "score_date=2026-12-06" / "part-00000-a.snappy.parquet", run)
    touch(folder / "scores" / "score_date=2026-12-07" / "part-00001-b.snappy.parquet", run)
    touch(folder / "rejects" / "part-00000-c.snappy.parquet", run)
    touch(folder / "scores" / "_SUCCESS")
    return staged


def test_commit_replaces_the_inputs_rows_and_keeps_the_others(spark, tmp_path: Path) -> None:
    output = tmp_path / "out"
    files = HadoopFiles(spark, str(output))
    touch(output / "scores" / "score_date=2026-12-01" / "part-aaaa-old-00000.parquet")
    touch(output / "scores" / "score_date=2026-12-01" / "part-bbbb-other-00000.parquet")
    touch(output / "rejects" / "part-aaaa-old-00000.parquet")
    commit(files, staged_run(files, output, "aaaa", "new"), {"run": "new"})
    assert visible(output) == {
        "scores/score_date=2026-12-01/part-bbbb-other-00000.parquet",
        "scores/score_date=2026-12-06/part-aaaa-new-00000.parquet",
        "scores/score_date=2026-12-07/part-aaaa-new-00001.parquet",
        "rejects/part-aaaa-new-00000.parquet",
    }
    assert json.loads((output / "summary.json").read_text()) == {"run": "new"}
    assert not list((output / "_staging").iterdir())


def test_a_commit_cut_short_is_finished_by_the_next_run_of_any_input(spark, tmp_path: Path) -> None:
    output = tmp_path / "out"
    files = HadoopFiles(spark, str(output))
    touch(output / "scores" / "score_date=2026-12-01" / "part-aaaa-old-00000.parquet")
    staged = staged_run(files, output, "aaaa", "new")
    # The crash: the record is written and one file moved; the old rows still there.
    record = {
        "input": "aaaa",
        "run": "new",
        "summary": {"run": "new"},
        "moves": [
            [f"{staged.folder}/scores/score_date=2026-12-06/part-00000-a.snappy.parquet",
             f"{staged.output}/scores/score_date=2026-12-06/part-aaaa-new-00000.parquet"],
            [f"{staged.folder}/scores/score_date=2026-12-07/part-00001-b.snappy.parquet",
             f"{staged.output}/scores/score_date=2026-12-07/part-aaaa-new-00001.parquet"],
        ],
    }  # fmt: skip
    files.write_text(staged.part(COMMIT_RECORD), json.dumps(record))
    first_source, first_target = record["moves"][0]
    files.rename(first_source, first_target)
    # On GCS a rename is a copy then a delete: the crash may also leave both copies.
    second_target = record["moves"][1][1]
    touch(Path(second_target.removeprefix("file:")), "new")
    # An uncommitted run of another input (still running, perhaps) and of this one.
    other = staged_run(files, output, "bbbb", "running")
    mine = staged_run(files, output, "aaaa", "killed")

    done = recover(files, staged.output, "cccc")  # a run of a third input finds them
    assert done == ["finished the commit of run new (input aaaa)"]
    assert visible(output) == {
        "scores/score_date=2026-12-06/part-aaaa-new-00000.parquet",
        "scores/score_date=2026-12-07/part-aaaa-new-00001.parquet",
    }
    assert files.exists(other.folder) and files.exists(mine.folder)
    assert recover(files, staged.output, "aaaa") == [
        "deleted run killed, killed before it committed"
    ]
    assert files.exists(other.folder) and not files.exists(mine.folder)
    # Finishing twice changes nothing: every step can be repeated.
    apply_commit(files, staged, record)
    assert len(visible(output)) == 2
