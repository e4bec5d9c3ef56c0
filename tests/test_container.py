"""The bento image, built by ``make container`` and run the way Cloud Run and GKE run it.

`make container-test` (in `.ci/run`) runs this module. It starts ``dockerd`` when none is
running and skips, with the reason, only where Docker cannot run at all. The image comes from
the real Makefile target (`bentoml containerize`, BuildKit off) on the test's trained store;
``BASE_IMAGE`` in the environment (``make base-image`` where Docker Hub is out of reach)
replaces BentoML's python:3.11-slim. Every runtime setting (env, memory, volumes, user, grace
period) is read from the Cloud Run service and the rendered kustomize Deployment, not retyped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from harness.server_process import free_port
from tests.conftest import REPO
from tests.test_deploy import kustomize
from training.data import generate_transactions

pytestmark = pytest.mark.container

CPU_TAG = "fraud-detector:local"
GPU_TAG = "fraud-detector-gpu:local"
LEAN_TAG = "fraud-detector-lean:local"
IMAGE_UID = 1034  # BentoML's "bentoml" user, the manifests' runAsUser
TRAINING_ONLY = ("torch", "wandb", "hydra", "transformers", "lightning")
#: What the test learned about the image, for the README's Deploy section.
# The run's own timings, for its log: a test never rewrites a committed results file
# (the image's figures come from `make bench-container`, benchmarks/results/container-vm.json).
FIGURES = REPO / ".cache" / "container-test.json"


def docker_ready() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def start_dockerd() -> str | None:
    """Start a Docker daemon if none answers; returns why Docker cannot run, or None."""
    if shutil.which("docker") is None:
        return "no docker client (apt-get install docker.io)"
    if docker_ready():
        return None
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        return "no Docker daemon running and no dockerd binary (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "no Docker daemon running, and starting dockerd needs root"
    log = open("/tmp/fraud-dockerd.log", "ab")  # noqa: SIM115 - the daemon outlives the test
    subprocess.Popen([dockerd], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_ready():
            return None
        time.sleep(1)
    return "dockerd did not answer within 60 s (see /tmp/fraud-dockerd.log)"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def record(**figures: object) -> None:
    FIGURES.parent.mkdir(exist_ok=True)
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    FIGURES.write_text(json.dumps({**known, **figures}, indent=2) + "\n")


@pytest.fixture(scope="module")
def cpu_image(trained_store: Path) -> str:
    """``make container`` on the trained store, as a user runs it."""
    reason = start_dockerd()
    if reason is not None:
        pytest.skip(reason)
    env = {**os.environ, "BENTOML_HOME": str(trained_store), "CONTAINER_TAG": CPU_TAG}
    base = os.environ.get("BASE_IMAGE")
    local = base and base.startswith("fraud-python:")  # `make base-image` makes these
    if local and docker("image", "inspect", base, check=False).returncode != 0:
        made = subprocess.run(
            ["make", "base-image", f"LOCAL_BASE_IMAGE={base}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-4000:]
    started = time.monotonic()
    built = subprocess.run(
        ["make", "container"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    size = int(docker("image", "inspect", CPU_TAG, "--format", "{{.Size}}").stdout)
    record(
        cpu_image_bytes=size,
        cpu_image_build_seconds=round(time.monotonic() - started, 1),
        base_image=os.environ.get("BASE_IMAGE") or "python:3.11-slim (BentoML's default)",
    )
    return CPU_TAG


# --- What the manifests say -------------------------------------------------------------------


def cloud_run_container(manifest: str = "service-cpu.yaml") -> dict:
    service = yaml.safe_load((REPO / "deploy/cloudrun" / manifest).read_text())
    return service["spec"]["template"]["spec"]["containers"][0]


def gke_deployment() -> dict:
    return next(d for d in kustomize("cpu") if d["kind"] == "Deployment")


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def env_args(container: dict) -> list[str]:
    return [arg for e in container.get("env", []) for arg in ("-e", f"{e['name']}={e['value']}")]


@dataclass
class RunSpec:
    """`docker run` arguments that reproduce one platform's container settings."""

    name: str
    args: list[str]
    port: int  # the port the service listens on inside the container
    writable: tuple[str, ...]  # paths the platform lets the container write
    grace_seconds: int


def cloud_run_spec(manifest: str = "service-cpu.yaml") -> RunSpec:
    container = cloud_run_container(manifest)
    memory = container["resources"]["limits"]["memory"]
    # Cloud Run sets PORT; the bento's entrypoint serves on it. Its filesystem is writable
    # and in memory: the manifest points every writer (drift log, BentoML's home, $HOME)
    # under /tmp, the one place the service should write.
    env = {e["name"]: e["value"] for e in container["env"]}
    writers = [env[k] for k in ("FRAUD_MONITOR_LOG_PATH", "BENTOML_HOME", "HOME")]
    assert all(w == "/tmp" or w.startswith("/tmp/") for w in writers), writers
    return RunSpec(
        name="cloud-run",
        args=["-e", "PORT=8080", "--memory", str(memory_bytes(memory)), *env_args(container)],
        port=8080,
        writable=("/tmp",),
        grace_seconds=10,  # Cloud Run sends SIGTERM, then SIGKILL 10 s later
    )


def gke_spec() -> RunSpec:
    pod = gke_deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    volumes = {v["name"]: v for v in pod["volumes"]}
    args = [
        "--read-only",
        "--memory",
        str(memory_bytes(container["resources"]["limits"]["memory"])),
    ]
    args += ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if security.get("capabilities", {}).get("drop") == ["ALL"]:
        args += ["--cap-drop", "ALL"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    writable = []
    for mount in container["volumeMounts"]:
        empty_dir = volumes[mount["name"]]["emptyDir"] or {}
        options = f"rw,mode=1777,uid={security['runAsUser']},gid={security['fsGroup']}"
        if "sizeLimit" in empty_dir:
            options += f",size={memory_bytes(empty_dir['sizeLimit'])}"
        args += ["--tmpfs", f"{mount['mountPath']}:{options}"]
        writable.append(mount["mountPath"])
    return RunSpec(
        name="gke",
        args=[*args, *env_args(container)],
        port=container["ports"][0]["containerPort"],
        writable=tuple(writable),
        grace_seconds=pod["terminationGracePeriodSeconds"],
    )


# --- A running container ----------------------------------------------------------------------


@dataclass
class RunningContainer:
    spec: RunSpec
    name: str
    url: str
    ready_seconds: float

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr


def run_container(image: str, spec: RunSpec, *extra: str) -> RunningContainer:
    name = f"fraud-test-{spec.name}-{os.getpid()}"
    docker("rm", "-f", name, check=False)
    host_port = free_port()
    started = time.monotonic()
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{host_port}:{spec.port}", *spec.args,
           *extra, image)  # fmt: skip
    url = f"http://127.0.0.1:{host_port}"
    deadline = started + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return RunningContainer(spec, name, url, round(time.monotonic() - started, 2))
        except httpx.HTTPError:
            pass
        state = docker("inspect", name, "--format", "{{.State.Status}}").stdout.strip()
        if state == "exited":
            break
        time.sleep(0.25)
    logs = docker("logs", name, check=False)
    docker("rm", "-f", name, check=False)
    raise AssertionError(
        f"{spec.name} container not ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
    )


@pytest.fixture(scope="module", params=["cloud-run", "gke"])
def served(request: pytest.FixtureRequest, cpu_image: str) -> Iterator[RunningContainer]:
    spec = cloud_run_spec() if request.param == "cloud-run" else gke_spec()
    running = run_container(cpu_image, spec)
    record(**{f"{spec.name}_ready_seconds": running.ready_seconds})
    yield running
    docker("rm", "-f", running.name, check=False)


def rows(n: int, seed: int) -> list[dict[str, float]]:
    frame = generate_transactions(n, fraud_rate=0.01, seed=seed)
    return json.loads(frame[list(FEATURE_NAMES)].to_json(orient="records"))


# --- The tests --------------------------------------------------------------------------------


def test_scores_equal_the_in_process_scorer(served: RunningContainer, trained_store: Path) -> None:
    body = rows(300, seed=41)
    response = httpx.post(f"{served.url}/predict", json={"transactions": body}, timeout=60)
    assert response.status_code == 200, response.text
    models = trained_store / "models" / "fraud-mlp"
    version = (models / "latest").read_text().strip()
    scorer = OnnxScorer.from_directory(models / version)
    expected = scorer.predict_proba(np.array([[r[c] for c in FEATURE_NAMES] for r in body]))
    served_scores = np.array([p["fraud_probability"] for p in response.json()])
    assert np.abs(served_scores - expected).max() <= 1e-6
    assert response.json()[0]["model_version"] == version


def test_bad_input_is_a_4xx_and_the_container_keeps_serving(served: RunningContainer) -> None:
    bad = {"transactions": [{**rows(2, seed=1)[0], "V3": "not a number"}]}
    response = httpx.post(f"{served.url}/predict", json=bad, timeout=30)
    assert response.status_code == 400 and "V3" in response.text
    wrong_type = httpx.post(
        f"{served.url}/predict", content=b"x", headers={"content-type": "text/plain"}, timeout=30
    )
    assert 400 <= wrong_type.status_code < 500
    assert httpx.get(f"{served.url}/readyz", timeout=10).status_code == 200


def test_explanations_and_console_inside_the_image(served: RunningContainer) -> None:
    """shap (numba, llvmlite) runs in the image, read-only root included; the console ships."""
    body = rows(20, seed=43)
    response = httpx.post(f"{served.url}/explain", json={"transactions": body}, timeout=180)
    assert response.status_code == 200, served.logs()[-3000:]
    for answer in response.json():
        total = answer["base_value"] + sum(answer["shap_values"].values())
        assert abs(total - answer["logit"]) <= 1e-4
    root = httpx.get(f"{served.url}/", timeout=10)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = httpx.get(f"{served.url}/ui/", timeout=10)
    assert page.status_code == 200 and "Fraud console" in page.text
    assert httpx.get(f"{served.url}/ui/plotly.min.js", timeout=10).status_code == 200


def test_drift_gauges_and_summary_after_traffic(served: RunningContainer) -> None:
    for seed in range(4):  # 2,000 rows: past the detector's minimum window
        response = httpx.post(
            f"{served.url}/predict", json={"transactions": rows(500, seed=100 + seed)}, timeout=60
        )
        assert response.status_code == 200
    deadline = time.monotonic() + 60
    summary = httpx.get(f"{served.url}/drift/summary", timeout=10)
    while summary.status_code == 404 and time.monotonic() < deadline:
        time.sleep(1)
        summary = httpx.get(f"{served.url}/drift/summary", timeout=10)
    assert summary.status_code == 200, served.logs()[-3000:]
    assert summary.json()["window_rows"] >= 1000
    metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert "fraud_drift_detected" in metrics and "fraud_drift_computations_total" in metrics
    report = httpx.get(f"{served.url}/drift/report", timeout=120)  # Evidently inside the image
    assert report.status_code == 200 and "<html" in report.text.lower()


def test_writes_stay_in_the_declared_volumes(served: RunningContainer) -> None:
    changed = docker("diff", served.name).stdout.split("\n")
    paths = [line.split(" ", 1)[1] for line in changed if line.strip()]
    outside = [
        p
        for p in paths
        if not any(
            p == w or p.startswith(w + "/") or w.startswith(p + "/") for w in served.spec.writable
        )
    ]
    assert not outside, f"{served.spec.name}: writes outside {served.spec.writable}: {outside}"


def test_sigterm_drains_large_requests_within_the_grace_period(
    served: RunningContainer,
) -> None:
    body = json.dumps({"transactions": rows(10_000, seed=7)})
    answers: list[int] = []

    def post() -> None:
        response = httpx.post(
            f"{served.url}/predict", content=body, headers={"content-type": "application/json"},
            timeout=120,
        )  # fmt: skip
        answers.append(response.status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the requests are being read and scored
    stopped = time.monotonic()
    docker("stop", "-t", str(served.spec.grace_seconds), served.name, timeout=120)
    took = time.monotonic() - stopped
    for t in threads:
        t.join(timeout=120)
    exit_code = int(docker("inspect", served.name, "--format", "{{.State.ExitCode}}").stdout)
    record(**{f"{served.spec.name}_sigterm_exit_seconds": round(took, 2)})
    assert answers == [200] * 4, served.logs()[-3000:]
    assert exit_code == 0, served.logs()[-3000:]
    assert took < served.spec.grace_seconds


def test_image_holds_no_training_stack_and_runs_as_bentoml(cpu_image: str) -> None:
    probe = "; ".join(
        [
            "import importlib.util, os",
            f"print(os.getuid(), [m for m in {TRAINING_ONLY!r} if importlib.util.find_spec(m)])",
        ]
    )
    done = docker("run", "--rm", "--entrypoint", "python", cpu_image, "-c", probe)
    assert done.stdout.split() == [str(IMAGE_UID), "[]"]
    serving = docker(
        "run", "--rm", "--entrypoint", "python", "-w", "/home/bentoml/bento/src", cpu_image, "-c",
        "import bentoml, onnxruntime, evidently, msgspec, fraud_detection.scorer; print('ok')",
    )  # fmt: skip
    assert serving.stdout.strip() == "ok"


def test_a_container_without_its_model_stops_at_once_naming_it(cpu_image: str) -> None:
    started = time.monotonic()
    done = docker(
        "run", "--rm", "-e", "FRAUD_MODEL=distilbert", cpu_image, check=False, timeout=120
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 60
    output = done.stdout + done.stderr
    assert "fraud-distilbert" in output and "not in the BentoML model store" in output


def test_gpu_image_builds_and_serves_on_cpu(cpu_image: str, trained_store: Path) -> None:
    """``make container-gpu``: CUDA wheels inside; with no GPU the CUDA provider falls back."""
    env = {**os.environ, "BENTOML_HOME": str(trained_store), "CONTAINER_GPU_TAG": GPU_TAG}
    built = subprocess.run(
        ["make", "container-gpu"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=2400,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    record(gpu_image_bytes=int(docker("image", "inspect", GPU_TAG, "--format", "{{.Size}}").stdout))
    running = run_container(GPU_TAG, cloud_run_spec("service-gpu.yaml"))
    try:
        response = httpx.post(
            f"{running.url}/predict", json={"transactions": rows(20, seed=9)}, timeout=60
        )
        assert response.status_code == 200, running.logs()[-3000:]
        assert {p["model"] for p in response.json()} == {"fraud-distilbert"}
        assert "Failed to create CUDAExecutionProvider" in running.logs(), "fallback is logged"
    finally:
        docker("rm", "-f", running.name, check=False)


def test_image_without_explanations_is_smaller_and_says_why(
    cpu_image: str, trained_store: Path
) -> None:
    """``make container EXPLANATIONS=0``: no shap, numba or llvmlite; /explain is 404."""
    env = {**os.environ, "BENTOML_HOME": str(trained_store), "CONTAINER_TAG": LEAN_TAG}
    built = subprocess.run(
        ["make", "container", "EXPLANATIONS=0"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=1800,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    lean = int(docker("image", "inspect", LEAN_TAG, "--format", "{{.Size}}").stdout)
    full = int(docker("image", "inspect", cpu_image, "--format", "{{.Size}}").stdout)
    record(lean_image_bytes=lean)
    assert full - lean > 150e6, (full, lean)
    running = run_container(LEAN_TAG, cloud_run_spec())
    try:
        body = {"transactions": rows(5, seed=10)}
        assert httpx.post(f"{running.url}/predict", json=body, timeout=60).status_code == 200
        explain = httpx.post(f"{running.url}/explain", json=body, timeout=60)
        assert explain.status_code == 404, explain.text
        assert "EXPLANATIONS=0" in explain.text
        assert httpx.get(f"{running.url}/readyz", timeout=10).status_code == 200
    finally:
        docker("rm", "-f", running.name, check=False)
