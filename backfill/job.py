"""The backfill as one Spark job: read, check, score, stage, commit, summarise."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from backfill.commit import REJECTS
from backfill.commit import SCORES
from backfill.commit import HadoopFiles
from backfill.commit import StagedRun
from backfill.commit import commit
from backfill.commit import input_key
from backfill.commit import recover
from backfill.models import ShippedModel
from backfill.models import ship_model
from backfill.scoring import DATE_VALUE
from backfill.scoring import MALFORMED
from backfill.scoring import OUTPUT_COLUMNS
from backfill.scoring import REJECT_COLUMN
from backfill.scoring import REJECT_REASON
from backfill.scoring import SCORE_DATE
from backfill.scoring import InputColumns
from backfill.scoring import ScoringPlan
from backfill.scoring import rejected_batches
from backfill.scoring import rejected_schema
from backfill.scoring import scored_batches
from backfill.scoring import scored_schema
from backfill.summary import promotion_evidence
from fraud_detection.schema import FEATURE_NAMES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql import SparkSession

logger = logging.getLogger("backfill")

#: Rows per Arrow batch handed to a Python worker: one ONNX Runtime call each.
BATCH_ROWS = 10_000


class BackfillError(Exception):
    """Something the user must fix before the job can run; the message says what."""


@dataclass(frozen=True)
class Backfill:
    """One backfill, as the command line describes it."""

    input: str
    output: str
    model: str = "mlp"
    challenger: str | None = None
    master: str | None = None  # None: local[*], unless spark-submit already set one
    input_format: str | None = None  # csv or parquet; None: from the input's name
    id_column: str | None = None  # None: "transaction_id" where the input has it
    label_column: str | None = None  # None: "Class" where the input has it
    date_column: str | None = None  # partition by this column's date, not the scoring date
    bootstrap_rounds: int = 200
    conf: dict[str, str] = field(default_factory=dict)


def spark_session(backfill: Backfill) -> SparkSession:
    """A session for the job; the executors' Python is this one unless PYSPARK_PYTHON says."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("fraud-backfill")
    if backfill.master is not None:
        builder = builder.master(backfill.master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not started by spark-submit
        builder = builder.master("local[*]")
    # PySpark starts its Python workers with PYSPARK_PYTHON, else a bare `python3` that lacks
    # this environment's packages: default it to the driver's interpreter (a venv's python).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(BATCH_ROWS),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # The promotion evidence brings the labelled rows' four columns to the driver.
        "spark.driver.maxResultSize": "4g",
        **backfill.conf,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _is_csv(backfill: Backfill) -> bool:
    if backfill.input_format is not None:
        return backfill.input_format == "csv"
    return re.search(r"\.csv(\.gz|\.bz2)?$", backfill.input.rstrip("/*")) is not None


def _read(spark: SparkSession, backfill: Backfill) -> DataFrame:
    """The input as Spark reads it: Parquet typed; CSV with every field as text (unreadable
    values stay visible) and a row whose field count differs from the header kept whole in
    `MALFORMED` instead of being cut or padded."""
    from pyspark.sql import types as T

    if not _is_csv(backfill):
        return spark.read.parquet(backfill.input)
    header = spark.read.option("header", True).csv(backfill.input).columns
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in header]
        + [T.StructField(MALFORMED, T.StringType())]
    )
    return (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", MALFORMED)
        .schema(schema)
        .csv(backfill.input)
    )


def read_input(spark: SparkSession, backfill: Backfill) -> tuple[DataFrame, InputColumns]:
    """The input's columns the job needs, checked: every feature there and of a usable type,
    the optional columns distinct from the features and from each other."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    try:
        frame = _read(spark, backfill)
        types = {f.name: f.dataType for f in frame.schema.fields}
    except Exception as e:  # Spark's errors for a missing path, a non-Parquet file...
        kind = "CSV" if _is_csv(backfill) else "Parquet"
        raise BackfillError(
            f"Cannot read --input {backfill.input} as {kind} (--format csv|parquet picks "
            f"another): {str(e).splitlines()[0][:400]}"
        ) from e
    missing = [c for c in FEATURE_NAMES if c not in types]
    if missing:
        raise BackfillError(
            f"--input {backfill.input} lacks column(s) {missing}. A backfill needs all 30 "
            f"features of the schema: {', '.join(FEATURE_NAMES)} (other columns are ignored)."
        )
    # As POST /predict refuses "1.5" for a number, a typed file must type its features; a
    # CSV has only text, which the rules read row by row.
    usable = (T.NumericType, T.StringType) if _is_csv(backfill) else (T.NumericType,)
    wrong = {c: types[c].simpleString() for c in FEATURE_NAMES if not isinstance(types[c], usable)}
    if wrong:
        raise BackfillError(
            f"--input {backfill.input}: feature column(s) not of a numeric type: {wrong}. "
            "Store the features as numbers (float or double)."
        )

    taken = {*FEATURE_NAMES, *OUTPUT_COLUMNS}

    def optional(given: str | None, default: str | None, option: str) -> str | None:
        if given is not None and given not in types:
            raise BackfillError(f"--input {backfill.input} has no column {given!r} ({option})")
        name = given if given is not None else (default if default in types else None)
        allowed = {"transaction_id"} if option == "--id-column" else set()  # it becomes that
        if name is not None and name in taken - allowed:
            raise BackfillError(
                f"{option} {name!r} is a feature, an output column or another option's column"
            )
        if name is not None:
            taken.add(name)
        return name

    columns = InputColumns(
        transaction_id=optional(backfill.id_column, "transaction_id", "--id-column"),
        label=optional(backfill.label_column, "Class", "--label-column"),
        date=optional(backfill.date_column, None, "--date-column"),
        malformed=MALFORMED if MALFORMED in types else None,
    )
    selected = [F.col(c) for c in columns.names()]
    if columns.date is not None:
        date_type = types[columns.date]
        if isinstance(date_type, T.StringType):
            as_date = F.try_to_date(F.col(columns.date))
        elif isinstance(date_type, T.DateType | T.TimestampType | T.TimestampNTZType):
            as_date = F.to_date(F.col(columns.date))
        else:
            raise BackfillError(
                f"--date-column {columns.date!r} is {date_type.simpleString()}: a date, a "
                "timestamp or text such as 2026-12-06 is needed"
            )
        selected.append(as_date.alias(DATE_VALUE))
    return frame.select(*selected), columns


def _check_partitioning(files: HadoopFiles, output: str, partition: str) -> None:
    """One output folder holds one partitioning (Spark cannot read two side by side)."""
    for folder in files.folders(f"{output}/{SCORES}"):
        name = folder.rsplit("/", 1)[-1].partition("=")[0]
        if name != partition:
            raise BackfillError(
                f"{output}/{SCORES} is partitioned by {name!r}; this run would add "
                f"{partition!r} partitions. Use another --output, or the same --date-column."
            )


def _spark_schema(schema: Any) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _tag_columns(frame: DataFrame, plan: ScoringPlan, scored_at: dt.datetime) -> DataFrame:
    """The constant columns, added by Spark rather than carried through Arrow per row."""
    from pyspark.sql import functions as F

    def text(value: str | None) -> Any:
        return F.lit(value).cast("string")

    challenger = plan.challenger
    partition = plan.columns.date or SCORE_DATE
    label = [] if plan.columns.label is None else [plan.columns.label]
    frame = frame.withColumns(
        {
            "model": text(plan.champion.name),
            "model_version": text(plan.champion.version),
            "challenger": text(None if challenger is None else challenger.name),
            "challenger_version": text(None if challenger is None else challenger.version),
            "scored_at": F.lit(scored_at),
        }
    )
    if plan.columns.date is None:
        frame = frame.withColumn(SCORE_DATE, F.lit(scored_at.date()))
    return frame.select(
        "transaction_id", "fraud_probability", "is_fraud", "model", "model_version",
        "challenger_probability", "challenger_is_fraud", "challenger", "challenger_version",
        "Amount", *label, "scored_at", partition,
    )  # fmt: skip


def _read_staged(spark: SparkSession, files: HadoopFiles, folder: str) -> DataFrame | None:
    """The Parquet files Spark staged in `folder`, or None where it wrote none (no row)."""
    if not any(f.endswith(".parquet") for f in files.files(folder)):
        return None
    return spark.read.parquet(folder)


def _describe(model: ShippedModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {"model": model.tag, "kind": model.kind, "threshold": model.threshold}


def run(backfill: Backfill, argv: list[str] | None = None) -> dict[str, Any]:
    """Run `backfill`; returns its summary (also written to ``<output>/summary.json``)."""
    started = time.time()
    spark = spark_session(backfill)
    try:
        return _run(spark, backfill, argv, started)
    finally:
        spark.stop()


def _run(
    spark: SparkSession, backfill: Backfill, argv: list[str] | None, started: float
) -> dict[str, Any]:
    from bentoml.exceptions import NotFound
    from pyspark.sql import functions as F

    from fraud_detection.model_files import ModelIntegrityError

    ready = time.time()
    files = HadoopFiles(spark, backfill.output)
    output = files.qualified(backfill.output)
    key = input_key(HadoopFiles(spark, backfill.input).qualified(backfill.input))
    for line in recover(files, output, key):
        logger.warning("%s: %s", output, line)
    with tempfile.TemporaryDirectory(prefix="backfill-models-") as workdir:
        try:
            champion = ship_model(backfill.model, spark.sparkContext, Path(workdir))
            challenger = (
                None
                if backfill.challenger is None
                else ship_model(backfill.challenger, spark.sparkContext, Path(workdir))
            )
        except (NotFound, ModelIntegrityError, ValueError, FileNotFoundError) as e:
            raise BackfillError(str(e)) from e
        frame, columns = read_input(spark, backfill)
        plan = ScoringPlan(champion, challenger, columns)
        partition = columns.date or SCORE_DATE
        _check_partitioning(files, output, partition)
        scored_at = dt.datetime.fromtimestamp(started, tz=dt.UTC)  # aware: Spark keeps it UTC
        run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{uuid.uuid4().hex[:6]}"
        staged = StagedRun(output, key, run_id)

        input_rows = frame.count()
        if input_rows == 0:
            raise BackfillError(f"--input {backfill.input} has no rows")
        logger.info("%d input rows (%.1f s)", input_rows, time.time() - ready)
        seen_rejects = spark.sparkContext.accumulator(0)
        scored = frame.mapInArrow(
            partial(scored_batches, plan=plan, rejected=seen_rejects),
            _spark_schema(scored_schema(columns)),
        )
        _tag_columns(scored, plan, scored_at).write.partitionBy(partition).parquet(
            staged.part(SCORES)
        )
        logger.info("scores staged (%.1f s)", time.time() - ready)
        if seen_rejects.value:  # a second pass, for the rows that broke a rule only
            rejected = frame.mapInArrow(
                partial(rejected_batches, columns=columns),
                _spark_schema(rejected_schema(columns)),
            )
            # One file: the check stays parallel, only the rejected rows are shuffled.
            rejected.repartition(1).write.parquet(staged.part(REJECTS))
            logger.info("rejects staged (%.1f s)", time.time() - ready)
        staged_scores = _read_staged(spark, files, staged.part(SCORES))
        staged_rejects = _read_staged(spark, files, staged.part(REJECTS))
        scored_rows = 0 if staged_scores is None else staged_scores.count()
        rejected_rows = 0 if staged_rejects is None else staged_rejects.count()
        if scored_rows + rejected_rows != input_rows:
            raise RuntimeError(  # a defect, not bad input: no row may go unaccounted for
                f"{input_rows} input rows but {scored_rows} scored + {rejected_rows} rejected; "
                f"nothing committed (staged in {staged.folder})"
            )
        reasons = {}
        if staged_rejects is not None:
            counted = staged_rejects.groupBy(REJECT_COLUMN, REJECT_REASON).count().collect()
            reasons = {f"{r[REJECT_COLUMN]}: {r[REJECT_REASON]}": r["count"] for r in counted}
        partitions = (
            []
            if staged_scores is None
            else sorted(
                str(r[0]) for r in staged_scores.select(F.col(partition)).distinct().collect()
            )
        )
        evidence = None
        if columns.label is not None and staged_scores is not None:
            evidence = promotion_evidence(
                staged_scores, columns.label, champion, challenger, backfill.bootstrap_rounds
            )
        seconds = time.time() - ready
        summary: dict[str, Any] = {
            "command": argv,
            "input": backfill.input,
            "output": output,
            "master": spark.sparkContext.master,
            "spark_version": spark.version,
            "default_parallelism": spark.sparkContext.defaultParallelism,
            "champion": _describe(champion),
            "challenger": _describe(challenger),
            "started_at": dt.datetime.fromtimestamp(started, tz=dt.UTC).isoformat(),
            "run": run_id,
            "input_rows": input_rows,
            "scored_rows": scored_rows,
            "rejected_rows": rejected_rows,
            "rejected_by_reason": dict(sorted(reasons.items())),
            "partition_column": partition,
            "partitions": partitions,
            "seconds": round(seconds, 3),
            "seconds_with_spark_start": round(time.time() - started, 3),
            "rows_per_second": round(input_rows / seconds, 1) if seconds > 0 else None,
            **(evidence or {}),
        }
        commit(files, staged, summary)
        return summary
