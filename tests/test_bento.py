"""`bentoml build` on the real bentofile: serving files, the model, and no training stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

TRAINING_ONLY = ("torch", "lightning", "wandb", "hydra-core", "transformers", "onnxscript")


def test_bentoml_build_packages_the_serving_side_only(trained_store: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(trained_store)}
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bento_dir = max((trained_store / "bentos" / "fraud_detector").glob("*/"), key=os.path.getmtime)
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    served = [m["tag"] for s in info["services"] for m in s["models"]]
    assert len(served) == 1 and served[0].startswith("fraud-mlp:")
    sources = {
        p.relative_to(bento_dir / "src").as_posix() for p in (bento_dir / "src").rglob("*.*")
    }
    assert "service.py" in sources and "fraud_detection/scorer.py" in sources
    assert "fraud_detection/monitor_logging.yaml" in sources, "the drift-log monitor needs it"
    assert not any(s.startswith(("training/", "tests/")) for s in sources)
    assert (bento_dir / "env" / "docker" / "Dockerfile").is_file()
    locked = (bento_dir / "env" / "python" / "requirements.txt").read_text().lower().splitlines()
    names = {line.split("==")[0].strip() for line in locked if "==" in line}
    assert {"bentoml", "onnxruntime", "evidently"} <= names
    assert not names & set(TRAINING_ONLY), names & set(TRAINING_ONLY)
