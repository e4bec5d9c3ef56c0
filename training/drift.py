"""Offline drift report: the serving detector, run on monitor logs or a CSV of transactions.

python -m training.drift --model fraud-mlp:latest --current monitoring/fraud_transactions/data
python -m training.drift --model fraud-mlp:latest --current transactions.csv --output drift-report

`--current` is a drift-log file written by the service (``rows.<worker>.<day>.f64``), a
folder of them (JSON-lines ``data.<worker>.log`` files of earlier versions are read too), or a
CSV (plain or gzipped) with the 30 features; rows without a ``fraud_probability`` column are
scored with the model's ONNX graph.
The report is `fraud_detection.drift.detector.DriftDetector`'s, the same code the service
runs, against the stored model's reference. Prints the summary JSON; writes ``summary.json``
and ``report.html`` to `--output`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import bentoml
import pandas as pd

from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.detector import DriftDetector
from fraud_detection.drift.detector import DriftRun
from fraud_detection.drift.reference import ReferenceProfile
from fraud_detection.drift_log import LOG_SUFFIX
from fraud_detection.drift_log import SCORE_COLUMN
from fraud_detection.drift_log import read_log_files
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import check_feature_names
from fraud_detection.scorer import OnnxScorer

logger = logging.getLogger(__name__)


def drift_log_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The drift-log files under `path` (or `path` itself): binary ones, then JSON-lines ones."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob(f"rows.*{LOG_SUFFIX}") if p.is_file())
        files += sorted(p for p in path.rglob("data.*.log*") if p.is_file())
    binary = [f for f in files if f.name.endswith(LOG_SUFFIX)]
    json_lines = [f for f in files if f not in binary]
    if not files:
        raise FileNotFoundError(
            f"{path} holds no drift-log files (rows.<worker>.<day>{LOG_SUFFIX}); point --current "
            "at <FRAUD_MONITOR_LOG_PATH>/fraud_transactions/data or at a CSV"
        )
    return binary, json_lines


def read_current(path: Path) -> pd.DataFrame:
    """Rows to judge: drift-log files or a CSV, checked for the 30 features."""
    if not path.exists():
        raise FileNotFoundError(f"--current {path}: no such file or folder")
    if path.is_file() and path.name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(path)
    else:
        binary, json_lines = drift_log_files(path)
        parts = [read_log_files(binary)] if binary else []
        parts += [pd.read_json(f, lines=True) for f in json_lines if f.stat().st_size]
        parts = [p for p in parts if not p.empty]
        if not parts:
            raise ValueError(f"{path}: the drift-log files are all empty")
        frame = pd.concat(parts, ignore_index=True)
    present = [c for c in frame.columns if c in FEATURE_NAMES]
    check_feature_names(present, source=str(path))
    if frame.empty:
        raise ValueError(f"{path} holds no rows")
    return frame


def build_report(
    model_dir: Path, model: str, current: pd.DataFrame, config: DriftConfig
) -> DriftRun:
    """The drift report of `current` against the model's reference (scores it if needed)."""
    if SCORE_COLUMN not in current.columns:
        scorer = OnnxScorer.from_directory(model_dir)
        current = current.assign(
            **{SCORE_COLUMN: scorer.predict_proba(current[list(FEATURE_NAMES)].to_numpy())}
        )
    detector = DriftDetector(ReferenceProfile.from_model_dir(model_dir), config, model=model)
    return detector.run_frame(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fraud-mlp:latest", help="BentoML model tag")
    parser.add_argument("--current", type=Path, required=True, help="monitor log(s) or CSV")
    parser.add_argument("--output", type=Path, default=Path("drift-report"))
    parser.add_argument("--method", default=DriftConfig.method, help="Evidently stattest")
    parser.add_argument("--threshold", type=float, default=DriftConfig.threshold)
    parser.add_argument(
        "--ignore-features",
        default=",".join(sorted(DriftConfig().ignore_features)),
        help="comma-separated features to leave out ('' keeps all 30)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        stored = bentoml.models.get(args.model)
    except bentoml.exceptions.NotFound as e:
        parser.error(f"{e}; train it with: python -m training (or: make models)")
    current = read_current(args.current)
    config = DriftConfig(
        window_rows=len(current),
        min_rows=1,
        method=args.method,
        threshold=args.threshold,
        ignore_features=frozenset(n.strip() for n in args.ignore_features.split(",") if n.strip()),
    )
    run = build_report(Path(stored.path), str(stored.tag), current, config)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "summary.json").write_text(run.summary.model_dump_json(indent=2))
    (args.output / "report.html").write_text(run.html())
    print(run.summary.model_dump_json(indent=2))
    logger.info("Wrote %s and %s", args.output / "summary.json", args.output / "report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
