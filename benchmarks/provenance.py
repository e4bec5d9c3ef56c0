"""Where a results file's figures come from, written into the file by the benchmark itself.

Every ``benchmarks/results/<benchmark>-<machine>.json`` carries a ``provenance`` block: the
commit (``+dirty`` when the tree differed), the date, the machine, the command, and the served
model's tag and architecture. Pages and the README render figures from these files
(`benchmarks.figures`); a rerun replaces the file, and history lives in git.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def git_commit() -> str:
    """The checked-out commit, ``+dirty`` when the code differs from it."""
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    # Results and pages written during a run are not the code it measured.
    measured = [".", ":!benchmarks/results", ":!docs", ":!README.md"]
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *measured], cwd=REPO)
    dirty = dirty.returncode != 0
    return result.stdout.strip() + ("+dirty" if dirty else "") if result.returncode == 0 else "?"


def machine() -> str:
    return (
        f"{os.cpu_count()} logical CPUs ({platform.machine()}), Python {platform.python_version()}"
    )


def architecture(training_config: dict[str, Any]) -> str:
    """What a trained model is, in words, from its resolved training config (the card keeps
    it; `current_architecture` composes it from ``configs/``): two models with the same
    architecture differ only in their data and seeds."""
    model = training_config["model"]
    kind = model["kind"]
    ensemble = training_config.get("ensemble") or {}
    folds = int(ensemble.get("folds", 1))
    if kind == "mlp":
        width = (model.get("member_network") or {}).get("hidden_sizes") if folds > 1 else None
        net = f"MLP {list(width or model['network']['hidden_sizes'])}"
    else:
        net = str(kind)
    words = f"{folds} cross-fitted {net}" if folds > 1 else f"one {net}"
    trees = ensemble.get("trees") or {}
    if folds > 1 and trees.get("enabled"):
        words += f" + LightGBM (depth {trees.get('max_depth')})"
    words += f", {training_config.get('calibration', {}).get('method', 'none')} calibration"
    if (training_config.get("export") or {}).get("fp16"):
        words += ", fp16"
    return words


def current_architecture(kind: str = "mlp") -> str:
    """The architecture ``make serve`` trains today (``configs/`` composed by Hydra)."""
    from hydra import compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from training.config import register_configs

    register_configs()
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        config = compose("train", overrides=[f"model={kind}"])
    return architecture(OmegaConf.to_container(config, resolve=False))  # type: ignore[arg-type]


def served_model(reference: str = "mlp") -> dict[str, str]:
    """Tag and architecture of a stored model (`reference`: a kind or a tag) in
    ``BENTOML_HOME``; ``{"tag": "none"}`` when the benchmark served none."""
    import bentoml

    tag = reference if ":" in reference else f"fraud-{reference}:latest"
    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return {"tag": "none"}
    card = json.loads(Path(model.path_of("card.json")).read_text())
    return {"tag": str(model.tag), "architecture": architecture(card["training_config"])}


def provenance(
    module: str, argv: list[str] | None = None, model: str | None = "mlp"
) -> dict[str, Any]:
    """The block every results file carries."""
    return {
        "commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)]),
        "served_model": served_model(model) if model else {"tag": "none"},
    }


def run_header(
    module: str, argv: list[str] | None, data: str | None, model: str | None = "mlp"
) -> dict[str, Any]:
    """What a results file opens with: its provenance, and the top-level machine, date,
    commit, command and rows its own tables print."""
    block = provenance(module, argv, model)
    return {
        "provenance": block,
        "machine": block["machine"],
        "date": block["date"],
        "commit": block["commit"],
        "command": block["command"],
        "rows": f"real ({data})" if data else "synthetic",
    }


def write_results(stem: str, results: dict[str, Any], table: str | None = None) -> Path:
    """``benchmarks/results/<stem>.json`` (and ``.md`` when `table` is given), replacing the
    previous run's; prints the table. Results without a provenance block are refused."""
    if "provenance" not in results:
        raise ValueError(f"{stem}: results carry no provenance block (use run_header)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / stem
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    if table is not None:
        out.with_suffix(".md").write_text(table)
        print(table)
    return out
