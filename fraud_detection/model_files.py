"""Integrity of a stored model: SHA-256 of each file, recorded at save, verified at load.

A stored model is exactly four files (ONNX graph, JSON card, two CSV references); nothing that
could execute code (no pickle) is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import ONNX_FILE
from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.catalog import VALIDATION_SCORES_FILE

MODEL_FILES = (ONNX_FILE, CARD_FILE, REFERENCE_FILE, VALIDATION_SCORES_FILE)
#: Files every stored model must have had checksummed (the others came later).
REQUIRED_FILES = (ONNX_FILE, CARD_FILE, REFERENCE_FILE)
#: Key of the checksums in the BentoML model's metadata.
CHECKSUMS_KEY = "sha256"


class ModelIntegrityError(RuntimeError):
    """A stored model's files are missing or differ from what was saved."""


def file_checksums(directory: str | Path) -> dict[str, str]:
    """SHA-256 (hex) of each model file in `directory`."""
    directory = Path(directory)
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in MODEL_FILES
    }


def verify_checksums(directory: str | Path, expected: Mapping[str, str] | None, tag: str) -> None:
    """Raise `ModelIntegrityError` unless every model file matches its recorded checksum."""
    directory = Path(directory)
    if not expected:
        raise ModelIntegrityError(
            f"{tag} records no file checksums (saved by an older version); retrain it"
        )
    # Models saved before validation_scores.csv existed record three files: check those.
    problems = [
        f"{name} has no recorded checksum" for name in REQUIRED_FILES if name not in expected
    ]
    for name in [n for n in MODEL_FILES if n in expected]:
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != expected.get(name):
            problems.append(f"{name} differs from the saved file (SHA-256 mismatch)")
    if problems:
        raise ModelIntegrityError(f"{tag} at {directory}: " + "; ".join(problems))
