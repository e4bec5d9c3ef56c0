"""The servers `python -m benchmarks.peers` compares: ours and each peer framework's config."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(__file__).resolve().parent
VENVS_DIR = REPO / ".venv-peers"
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server configuration and where it answers."""

    name: str
    framework: str  # the distribution whose version is reported
    route: str  # POST route of the JSON API
    ready_path: str  # GET path that is 200 once the server can score
    short: str  # the configuration, in a few words, for the tables
    config: str  # the configuration in full, for the report's configuration section
    peer: str | None = None  # folder under benchmarks/peers (and .venv-peers); None: ours
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 180.0
    cwd: Path = REPO  # ours-before runs from a checkout of an earlier commit

    @property
    def venv(self) -> Path | None:
        return VENVS_DIR / self.peer if self.peer else None

    @property
    def python(self) -> Path:
        if self.venv is None:
            return PROJECT_PYTHON if PROJECT_PYTHON.exists() else Path(sys.executable)
        return self.venv / "bin" / "python"

    def argv(self, port: int) -> list[str]:
        if self.peer is None:
            return [
                str(self.python),
                "-m",
                "bentoml",
                "serve",
                "service:FraudDetector",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
        server = PEERS_DIR / self.peer / "server.py"
        return [str(self.python), str(server), "--port", str(port), *self.args]

    def environment(self, model_dir: Path, work: Path) -> dict[str, str]:
        """The process environment: the model and repo for peers, FRAUD_* settings for ours."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        env["PYTHONPATH"] = str(REPO)
        env["FRAUD_MODEL_DIR"] = str(model_dir)
        env["PYTHONUNBUFFERED"] = "1"
        if self.venv is not None:
            env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        else:
            env["BENTOML_HOME"] = os.environ.get("BENTOML_HOME", str(REPO / "bentos"))
            env["FRAUD_WORKERS"] = "1"
            env["FRAUD_MODEL"] = "mlp"
            env["FRAUD_MONITOR_LOG_PATH"] = str(work / "monitoring")
        env.update(self.env)
        return env


BATCH_ARGS = ("--batching", "--max-batch-size", "64", "--batch-wait-ms", "5")
OURS_CONFIG = (
    "`bentoml serve service:FraudDetector` with the service's defaults (as shipped) but "
    "FRAUD_WORKERS=1: one worker process, one ONNX Runtime thread, zero-delay batching on, "
    "request guards on, access log and tracing off"
)


def ours_before(tree: Path, ref: str) -> ServerSpec:
    """Our service as it was at git `ref` (checked out at `tree`), drift features off."""
    return ServerSpec(
        "ours-before",
        "bentoml",
        "/predict",
        "/readyz",
        f"at {ref}: 1 worker, BentoML adaptive batching, drift off",
        f"Our service at commit {ref} (before the serving-path rebuild), run from a git "
        "worktree with the same venv and model store; FRAUD_WORKERS=1, FRAUD_DRIFT_LOG=0, "
        "FRAUD_DRIFT_DETECTION=0.",
        env={"FRAUD_DRIFT_LOG": "0", "FRAUD_DRIFT_DETECTION": "0"},
        cwd=tree,
    )


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in [
        ServerSpec(
            "ours",
            "bentoml",
            "/predict",
            "/readyz",
            "1 worker, zero-delay batching, drift log + detector on",
            OURS_CONFIG + ", drift log and online drift detector on (the defaults).",
        ),
        ServerSpec(
            "ours-no-drift",
            "bentoml",
            "/predict",
            "/readyz",
            "1 worker, zero-delay batching, drift off",
            OURS_CONFIG + "; FRAUD_DRIFT_LOG=0 and FRAUD_DRIFT_DETECTION=0.",
            env={"FRAUD_DRIFT_LOG": "0", "FRAUD_DRIFT_DETECTION": "0"},
        ),
        ServerSpec(
            "kserve",
            "kserve",
            "/v1/models/fraud:predict",
            "/v1/models/fraud",
            "1 uvicorn worker, no batching",
            "`kserve.Model` subclass served by `kserve.ModelServer`, V1 protocol route; "
            "1 uvicorn worker, no batching (KServe's Python server has none), gRPC off, "
            "uvicorn access log and `kserve.trace` per-request timing log off, bound to "
            "127.0.0.1 (KServe hard-codes 0.0.0.0; patched in server.py). KServe parses the "
            "JSON; our pydantic model validates the dict (400 on bad input).",
            peer="kserve",
        ),
        ServerSpec(
            "mlserver",
            "mlserver",
            "/predict",
            "/v2/models/fraud/ready",
            "parallel_workers=0, no batching",
            "Custom runtime (`MLModel`) with a `@custom_handler` REST route; "
            "parallel_workers=0 (inference in the server process, no worker pool), no "
            "adaptive batching, metrics server off, gzip off, access log off (debug=False); "
            "gRPC on a second loopback port (MLServer always starts it). uvicorn parses HTTP "
            "with h11: httptools is not among MLServer's dependencies.",
            peer="mlserver",
        ),
        ServerSpec(
            "litserve-batching",
            "litserve",
            "/predict",
            "/health",
            "1 API + 1 inference process, batch <= 64 / 5 ms",
            "`LitAPI` with batch/unbatch, `LitServer(accelerator='cpu', workers_per_device=1)`, "
            "num_api_servers=1; max_batch_size=64, batch_timeout=5 ms; FastAPI validates the "
            "body against our pydantic model in the API process (422), the inference worker "
            "process scores; log level warning.",
            peer="litserve",
            args=BATCH_ARGS,
        ),
        ServerSpec(
            "litserve",
            "litserve",
            "/predict",
            "/health",
            "1 API + 1 inference process, no batching",
            "As litserve-batching with max_batch_size=1 (no batching).",
            peer="litserve",
        ),
        ServerSpec(
            "rayserve-batching",
            "ray",
            "/predict",
            "/predict",
            "1 replica, @serve.batch <= 64 / 5 ms",
            "Local Ray instance (num_cpus=2, no dashboard UI), Serve HTTP proxy on 127.0.0.1, "
            "one replica, max_ongoing_requests=100 (Ray's default 5 would cap a batch at 5); "
            "`@serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)`; validation in "
            "the replica (422); access logs off.",
            peer="rayserve",
            args=BATCH_ARGS,
        ),
        ServerSpec(
            "rayserve",
            "ray",
            "/predict",
            "/predict",
            "1 replica, no batching",
            "As rayserve-batching without `@serve.batch`: each request scored alone.",
            peer="rayserve",
        ),
        ServerSpec(
            "torchserve",
            "torchserve",
            "/predictions/fraud",
            "/ping",
            "1 Python worker, batch size 1",
            "Java frontend + 1 Python backend worker running a custom handler (no-archive "
            "model archive), batch size 1, job_queue_size=1000, token authorization off, "
            "system metrics off, log4j at WARN (no access or metrics log); responses "
            "serialised by TorchServe (json.dumps, indent=2). /ping answers Healthy before "
            "the worker is up, so the harness also waits for a first scored request.",
            peer="torchserve",
        ),
    ]
}
