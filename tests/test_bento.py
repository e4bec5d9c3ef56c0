"""`bentoml build` on the real bentofile: serving files, the model, and no training stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

TRAINING_ONLY = ("torch", "lightning", "wandb", "hydra-core", "transformers", "onnxscript")


def test_bentoml_build_packages_the_serving_side_only(trained_store: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(trained_store), "FRAUD_CHALLENGER": "distilbert"}
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bento_dir = max((trained_store / "bentos" / "fraud_detector").glob("*/"), key=os.path.getmtime)
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    served = [m["tag"] for s in info["services"] for m in s["models"]]
    # Built with a challenger, the image holds both models: promotion is an env change.
    assert sorted(t.split(":")[0] for t in served) == ["fraud-distilbert", "fraud-mlp"]
    sources = {
        p.relative_to(bento_dir / "src").as_posix() for p in (bento_dir / "src").rglob("*.*")
    }
    assert "service.py" in sources and "fraud_detection/scorer.py" in sources
    assert "fraud_detection/drift/detector.py" in sources, "sub-packages are packed too"
    assert not any(s.startswith(("training/", "tests/")) for s in sources)
    assert (bento_dir / "env" / "docker" / "Dockerfile").is_file()
    lock_file = bento_dir / "env" / "python" / "requirements.lock.txt"
    locked = lock_file.read_text().lower().splitlines()
    names = {line.split("==")[0].strip() for line in locked if "==" in line}
    assert {"bentoml", "onnxruntime", "evidently", "psycopg", "psycopg-binary"} <= names
    assert not names & set(TRAINING_ONLY), names & set(TRAINING_ONLY)
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^USER bentoml$", dockerfile, re.MULTILINE), "the image runs as non-root"
    entrypoint = (bento_dir / "env" / "docker" / "entrypoint.sh").read_text()
    assert "export BENTOML_PORT=$PORT" in entrypoint, "Cloud Run's $PORT must be honoured"


def test_gpu_bento_swaps_onnxruntime_for_its_cuda_build(trained_store: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(trained_store), "FRAUD_MODEL": "distilbert"}
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "bentofile-gpu.yaml", "--output", "tag"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bento_dir = max(
        (trained_store / "bentos" / "fraud_detector_gpu").glob("*/"), key=os.path.getmtime
    )
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    served = [m["tag"] for s in info["services"] for m in s["models"]]
    assert len(served) == 1 and served[0].startswith("fraud-distilbert:")
    lock_file = bento_dir / "env" / "python" / "requirements.lock.txt"
    locked = lock_file.read_text().lower().splitlines()
    names = {line.split("==")[0].strip() for line in locked if "==" in line}
    assert "onnxruntime-gpu" in names and "onnxruntime" not in names
    assert {"nvidia-cudnn-cu13", "nvidia-cublas"} <= names, "CUDA libraries come as wheels"
    assert not names & set(TRAINING_ONLY), names & set(TRAINING_ONLY)
