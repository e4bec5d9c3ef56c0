"""Deployment files, checked offline: they parse, kustomize builds, and they agree with the
service (routes, port), with each other (image names) and with the Makefile (targets)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fraud_detection.settings import ServingSettings

REPO = Path(__file__).resolve().parents[1]
PORT = 3000  # BentoML's default; the bento's entrypoint maps Cloud Run's $PORT onto it
#: Routes of the served app that probes and scrapers may use (checked live below).
SERVICE_ROUTES = {"/readyz", "/livez", "/metrics", "/predict"}
CPU_IMAGE = "REGION-docker.pkg.dev/PROJECT_ID/fraud/fraud-detector:latest"
GPU_IMAGE = "REGION-docker.pkg.dev/PROJECT_ID/fraud/fraud-detector-gpu:latest"

YAML_FILES = sorted(
    [*REPO.glob("deploy/**/*.yaml"), *REPO.glob(".github/workflows/*.yml")]
    + [
        REPO / f
        for f in (
            "cloudbuild.yaml",
            "bentofile.yaml",
            "bentofile-gpu.yaml",
            ".pre-commit-config.yaml",
        )
    ]
)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path: Path) -> None:
    assert isinstance(load(path), dict)


def kustomize(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "deploy/gke/overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(yaml.safe_load_all(out.stdout))


def probes(container: dict) -> list[dict]:
    return [
        container[k]["httpGet"]
        for k in ("startupProbe", "readinessProbe", "livenessProbe")
        if k in container
    ]


@pytest.mark.parametrize(("overlay", "image"), [("cpu", CPU_IMAGE), ("gpu", GPU_IMAGE)])
def test_gke_overlay_builds_a_consistent_deployment(overlay: str, image: str) -> None:
    docs = {d["kind"]: d for d in kustomize(overlay)}
    assert set(docs) == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PodMonitoring",
    }
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image
    assert container["ports"] == [{"name": "http", "containerPort": PORT}]
    assert {p["path"] for p in probes(container)} == {"/readyz", "/livez"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    written = {m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FRAUD_MONITOR_LOG_PATH"] in written, "the drift log needs a writable volume"
    # The score journal lives there too: a durable mode, valid for the service.
    assert env["FRAUD_SCORE_LOG_DURABILITY"] in ("journal", "commit")
    assert ServingSettings.from_env(env).resolved_durability == env["FRAUD_SCORE_LOG_DURABILITY"]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus == "1") == (overlay == "gpu")
    assert env["FRAUD_MODEL"] == ("distilbert" if overlay == "gpu" else "mlp")
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodMonitoring"):
        selector = docs[kind]["spec"]["selector"]
        assert (selector.get("matchLabels") or selector).items() <= labels.items()
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert docs["PodMonitoring"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "fraud-detector"


@pytest.mark.parametrize(("name", "image"), [("cpu", CPU_IMAGE), ("gpu", GPU_IMAGE)])
def test_cloud_run_service(name: str, image: str) -> None:
    service = load(REPO / f"deploy/cloudrun/service-{name}.yaml")
    assert service["apiVersion"] == "serving.knative.dev/v1"
    template = service["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["image"] == image
    assert container["ports"][0]["containerPort"] == PORT
    assert {p["path"] for p in probes(container)} == {"/readyz", "/livez"}
    assert all(p["port"] == PORT for p in probes(container))
    limits = container["resources"]["limits"]
    if name == "gpu":
        assert limits["nvidia.com/gpu"] == "1"
        assert template["spec"]["nodeSelector"]["run.googleapis.com/accelerator"] == "nvidia-l4"
    annotations = template["metadata"]["annotations"]
    assert int(annotations["autoscaling.knative.dev/minScale"]) >= 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FRAUD_SCORE_LOG_DURABILITY"] in ("journal", "commit")
    assert template["spec"]["containerConcurrency"] > 0


def test_probe_and_scrape_paths_are_real_routes(trained_store: Path, tmp_path: Path) -> None:
    """Every path a manifest points at answers 200 on a real server."""
    import httpx

    from tests.conftest import start_server

    paths = {"/metrics"}
    for name in ("cpu", "gpu"):
        (container,) = load(REPO / f"deploy/cloudrun/service-{name}.yaml")["spec"]["template"][
            "spec"
        ]["containers"]
        paths |= {p["path"] for p in probes(container)}
    deployment = load(REPO / "deploy/gke/base/deployment.yaml")
    paths |= {p["path"] for p in probes(deployment["spec"]["template"]["spec"]["containers"][0])}
    assert paths <= SERVICE_ROUTES
    running = start_server(trained_store, tmp_path, "mlp")
    try:
        for path in sorted(paths):
            assert httpx.get(running.url + path, timeout=10).status_code == 200, path
    finally:
        running.server.stop()


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.MULTILINE))


def test_workflows_call_existing_make_targets() -> None:
    targets = makefile_targets()
    called = set()
    for path in REPO.glob(".github/workflows/*.yml"):
        for job in load(path)["jobs"].values():
            for step in job["steps"]:
                called |= set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", step.get("run", "")))
    assert called, "the workflows run make targets"
    assert called <= targets, called - targets


def test_test_workflow_covers_both_pythons_with_pip_cache() -> None:
    jobs = load(REPO / ".github/workflows/ci.yml")["jobs"]
    assert jobs["test"]["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]
    setup = next(s for s in jobs["test"]["steps"] if "setup-python" in s.get("uses", ""))
    assert setup["with"]["cache"] == "pip"
    release = load(REPO / ".github/workflows/release.yml")
    assert release[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key "on" as True


def test_cloudbuild_and_vertex_job_agree_with_the_project() -> None:
    build = load(REPO / "cloudbuild.yaml")
    assert build["substitutions"]["_IMAGE"] == "fraud-detector"
    scripts = " ".join(" ".join(s.get("args", [])) for s in build["steps"])
    assert "make ${_MAKE_TARGET}" in scripts and "bentoml models import" in scripts
    assert build["substitutions"]["_MAKE_TARGET"] in makefile_targets()
    job = load(REPO / "deploy/vertex/train-distilbert-base.yaml")
    (pool,) = job["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorCount"] == 1
    command = " ".join(pool["containerSpec"]["args"])
    assert "dvc pull" in command and "python -m training model=distilbert_base" in command
    assert (REPO / "configs/model/distilbert_base.yaml").is_file()
    # The job's overrides compose, and its float16 graph is not asked to hold the trees.
    from tests.test_training import compose_config

    overrides = command.split("python -m training ")[1].split("&&")[0].split()
    cfg = compose_config(*[o for o in overrides if not o.startswith("data.path=")])
    assert cfg.export.fp16 and not cfg.ensemble.trees.enabled


def test_make_data_without_a_remote_writes_the_synthetic_default(tmp_path: Path) -> None:
    from training.data import read_transactions_csv
    from training.data.write_synthetic import main

    out = main([str(tmp_path / "creditcard.csv"), "--rows", "2000"])
    frame = read_transactions_csv(out)
    assert len(frame) == 2000 and frame["Class"].sum() >= 1
    assert "YOUR_BUCKET" in (REPO / ".dvc/config").read_text(), "no bucket is committed"
