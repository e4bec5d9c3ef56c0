"""Models for a backfill: resolved in the BentoML store on the driver, shipped to executors.

The driver checks each model's files (`stored_model`), packs the four files into an archive
and hands it to Spark (`SparkContext.addArchive`), which unpacks it in every executor's
working folder. Each Python worker loads an `OnnxScorer` from there once and keeps it for
every task it runs.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import resolve_model
from fraud_detection.model_card import ModelCard
from fraud_detection.model_files import CHECKSUMS_KEY
from fraud_detection.model_files import MODEL_FILES
from fraud_detection.model_files import verify_checksums
from fraud_detection.scorer import OnnxScorer

if TYPE_CHECKING:
    from pyspark import SparkContext


@dataclass(frozen=True)
class ShippedModel:
    """A stored model as executors find it: the archive's name and what to check."""

    name: str
    version: str
    kind: str
    threshold: float
    archive: str  # file name given to addArchive; SparkFiles.get(archive) is the folder
    checksums: dict[str, str]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


def ship_model(model: str, context: SparkContext, workdir: Path) -> ShippedModel:
    """Resolve `model` (a kind or a tag) in the store, check it, and add it to the job."""
    # Here, on the driver, only: importing bentoml would add seconds to each Python worker.
    from fraud_detection.stored_models import stored_model

    kind, tag = resolve_model(model)
    stored = stored_model(tag).stored
    assert stored is not None  # stored_model raised otherwise
    path = Path(stored.path)
    name, version = stored.tag.name, str(stored.tag.version)
    archive = workdir / f"{name}-{version}.tar"
    with tarfile.open(archive, "w") as tar:  # ONNX compresses poorly: plain tar
        for file in MODEL_FILES:
            if (path / file).exists():
                tar.add(path / file, arcname=file)
    context.addArchive(str(archive))
    card = ModelCard.from_json_file(path / CARD_FILE)
    return ShippedModel(
        name=name,
        version=version,
        kind=kind,
        threshold=card.threshold.value,
        archive=archive.name,
        checksums=dict(stored.info.metadata.get(CHECKSUMS_KEY) or {}),
    )


_loaded: dict[tuple[str, int], OnnxScorer] = {}


def executor_scorer(model: ShippedModel, threads: int) -> OnnxScorer:
    """The worker's scorer of `model` with `threads` intra-op threads, loaded on first use."""
    key = (model.archive, threads)
    if key not in _loaded:
        from pyspark import SparkFiles

        folder = Path(SparkFiles.get(model.archive))
        verify_checksums(folder, model.checksums, model.tag)
        # One session per task slot, its intra-op pool the task's cores and no inter-op pool:
        # several workers share a machine.
        _loaded[key] = OnnxScorer.from_directory(
            folder, intra_op_threads=threads, inter_op_threads=1
        )
    return _loaded[key]
