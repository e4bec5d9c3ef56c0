"""Stored-model checksums: recorded at save, verified before the service starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import ONNX_FILE
from fraud_detection.catalog import VALIDATION_SCORES_FILE
from fraud_detection.model_files import CHECKSUMS_KEY
from fraud_detection.model_files import MODEL_FILES
from fraud_detection.model_files import ModelIntegrityError
from fraud_detection.model_files import file_checksums
from fraud_detection.model_files import verify_checksums
from tests.conftest import failed_start_output


def stored_model(home: Path, name: str = "fraud-mlp:latest"):
    from bentoml._internal.models.model import ModelStore

    return ModelStore(str(home / "models")).get(name)


def test_checksums_are_recorded_and_match_the_saved_files(trained_store: Path) -> None:
    model = stored_model(trained_store)
    recorded = model.info.metadata[CHECKSUMS_KEY]
    assert set(recorded) == set(MODEL_FILES)
    assert recorded == file_checksums(model.path)
    verify_checksums(model.path, recorded, str(model.tag))  # no error


def test_verify_names_every_altered_or_missing_file(tmp_path: Path) -> None:
    for name in MODEL_FILES:
        (tmp_path / name).write_text(name)
    recorded = file_checksums(tmp_path)
    (tmp_path / ONNX_FILE).write_text("tampered")
    (tmp_path / CARD_FILE).unlink()
    with pytest.raises(ModelIntegrityError) as error:
        verify_checksums(tmp_path, recorded, "fraud-mlp:v1")
    assert "model.onnx differs" in str(error.value) and "card.json is missing" in str(error.value)
    with pytest.raises(ModelIntegrityError, match="no file checksums"):
        verify_checksums(tmp_path, None, "fraud-mlp:v1")


@pytest.mark.parametrize("damaged", [ONNX_FILE, CARD_FILE])
def test_a_corrupted_model_stops_the_server_at_start_up(
    trained_store: Path, tmp_path: Path, damaged: str
) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained_store / "models", home / "models")
    model = stored_model(home)
    with open(Path(model.path) / damaged, "ab") as f:
        f.write(b"\0garbage")
    output = failed_start_output(home, "mlp")
    assert f"{damaged} differs from the saved file" in output
    assert "python -m training model=mlp" in output


def test_models_saved_before_the_validation_scores_file_still_verify(tmp_path: Path) -> None:
    for name in MODEL_FILES:
        (tmp_path / name).write_text(name)
    recorded = file_checksums(tmp_path)
    older = {k: v for k, v in recorded.items() if k != VALIDATION_SCORES_FILE}
    (tmp_path / VALIDATION_SCORES_FILE).unlink()
    verify_checksums(tmp_path, older, "fraud-mlp:old")  # what was recorded still matches
    with pytest.raises(ModelIntegrityError, match=r"card\.json has no recorded checksum"):
        verify_checksums(tmp_path, {k: v for k, v in older.items() if k != CARD_FILE}, "t")
