"""Stage, then commit: a backfill's rows become visible all at once, or not at all.

Spark writes a run's scores and rejects under ``<output>/_staging/<input>-<run>/`` (Parquet
readers skip folders that start with ``_``). Once both are complete, the driver writes a commit
record there, and from then on the run is as good as done: the input's earlier files are
deleted and the new ones renamed into ``scores/<partition>/`` and ``rejects/`` as
``part-<input>-<run>-<n>.parquet``. A job killed before the record leaves only its staging
folder, which the next run of the same input deletes; killed after it, the next run finishes
the commit first. Files go through Hadoop's FileSystem API, so ``gs://`` works as local paths.

`<input>` is a digest of the ``--input`` argument: a rerun of the same input replaces exactly
the rows it wrote before, whatever their date, and leaves other inputs' rows alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGING = "_staging"
SCORES = "scores"
REJECTS = "rejects"
SUMMARY = "summary.json"
COMMIT_RECORD = "_COMMIT.json"


def input_key(qualified_input: str) -> str:
    """Short digest of the input's qualified path (``file:/abs/history/*.parquet``, however
    ``--input`` spelt it), naming that input's files in the output."""
    return hashlib.sha256(qualified_input.rstrip("/").encode()).hexdigest()[:12]


class HadoopFiles:
    """The few file operations a commit needs, on any Hadoop FileSystem (file:, gs:, hdfs:)."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self._jvm = spark.sparkContext._jvm
        self._path = self._jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(root).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def qualified(self, path: str) -> str:
        """`path` as the FileSystem names it (``file:/abs/path``, ``gs://bucket/path``)."""
        return str(self._fs.makeQualified(self._path(path)).toString()).rstrip("/")

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def files(self, folder: str) -> list[str]:
        """Every file under `folder`, recursively (none when it does not exist)."""
        if not self.exists(folder):
            return []
        found, listing = [], self._fs.listFiles(self._path(folder), True)
        while listing.hasNext():
            found.append(str(listing.next().getPath().toString()))
        return found

    def folders(self, folder: str) -> list[str]:
        if not self.exists(folder):
            return []
        return [
            str(s.getPath().toString())
            for s in self._fs.listStatus(self._path(folder))
            if s.isDirectory()
        ]

    def rename(self, source: str, target: str) -> None:
        """Move `source` to `target`, replacing it: a commit repeated after a crash may find
        both (on GCS a rename is a copy, then a delete)."""
        target_path = self._path(target)
        self._fs.mkdirs(target_path.getParent())
        if self._fs.exists(target_path):
            self._fs.delete(target_path, False)
        if not self._fs.rename(self._path(source), target_path):
            raise OSError(f"could not rename {source} to {target}")

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def write_text(self, path: str, text: str) -> None:
        """Write `path` whole or not at all: a temporary file, then a rename."""
        partial = f"{path}.partial"
        stream = self._fs.create(self._path(partial), True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        self.rename(partial, path)

    def read_text(self, path: str) -> str:
        stream = self._fs.open(self._path(path))
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()


@dataclass(frozen=True)
class StagedRun:
    """Where one run of one input writes before it commits."""

    output: str  # qualified (HadoopFiles.qualified)
    key: str  # input_key
    run: str

    @property
    def folder(self) -> str:
        return f"{self.output}/{STAGING}/{self.key}-{self.run}"

    def part(self, name: str) -> str:
        return f"{self.folder}/{name}"


def _relative(path: str, folder: str) -> str:
    """`path` below `folder` (both qualified)."""
    if not path.startswith(folder + "/"):
        raise ValueError(f"{path} is not under {folder}")
    return path[len(folder) + 1 :]


def commit(files: HadoopFiles, staged: StagedRun, summary: dict[str, Any]) -> list[str]:
    """Make `staged` the input's rows in the output; returns the files now visible."""
    moves: list[tuple[str, str]] = []
    for kind in (SCORES, REJECTS):
        data = [
            f for f in files.files(staged.part(kind)) if f.rsplit("/", 1)[-1].startswith("part-")
        ]
        for n, source in enumerate(sorted(data)):
            partition = _relative(source, staged.part(kind)).rpartition("/")[0]
            folder = f"{staged.output}/{kind}" + (f"/{partition}" if partition else "")
            moves.append((source, f"{folder}/part-{staged.key}-{staged.run}-{n:05d}.parquet"))
    record = {"input": staged.key, "run": staged.run, "moves": moves, "summary": summary}
    # The commit point: from here on, the next run of this input finishes the commit.
    files.write_text(staged.part(COMMIT_RECORD), json.dumps(record))
    return apply_commit(files, staged, record)


def apply_commit(files: HadoopFiles, staged: StagedRun, record: dict[str, Any]) -> list[str]:
    """Carry out a commit record (again, after a crash: every step can be repeated)."""
    ours = f"part-{staged.key}-"
    this_run = f"part-{staged.key}-{staged.run}-"
    for kind in (SCORES, REJECTS):
        for path in files.files(f"{staged.output}/{kind}"):
            name = path.rsplit("/", 1)[-1]
            if name.startswith(ours) and not name.startswith(this_run):
                files.delete(path)  # the input's earlier rows: deleted first, never doubled
    for source, target in record["moves"]:
        if files.exists(source):
            files.rename(source, target)
    files.write_text(f"{staged.output}/{SUMMARY}", json.dumps(record["summary"], indent=2))
    files.delete(staged.folder)
    return [target for _, target in record["moves"]]


def recover(files: HadoopFiles, output: str, key: str) -> list[str]:
    """Finish every committed run a killed job left in `output` (whatever its input), and
    drop the uncommitted runs of the input `key` (another input's may still be running).

    Returns what was done, one line per staging folder."""
    done = []
    for folder in files.folders(f"{output}/{STAGING}"):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        staged_key, _, run = name.partition("-")
        staged = StagedRun(output, staged_key, run)
        if files.exists(staged.part(COMMIT_RECORD)):
            apply_commit(files, staged, json.loads(files.read_text(staged.part(COMMIT_RECORD))))
            done.append(f"finished the commit of run {run} (input {staged_key})")
        elif staged_key == key:
            files.delete(folder)
            done.append(f"deleted run {run}, killed before it committed")
    return done
