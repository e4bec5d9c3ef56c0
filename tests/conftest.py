"""Shared fixtures: a tiny model store trained by the real Hydra app, and real servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bentoml
import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Small enough for CI on 2 cores, big enough to hold ~30 frauds.
TINY_TRAINING = [
    "data.n_rows=6000",
    "data.fraud_rate=0.01",
    "model.max_epochs=3",
    "trainer.patience=3",
    "export.reference_rows=500",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_training(
    bentoml_home: Path, workdir: Path, *overrides: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m training`` exactly as a user would, into `bentoml_home`."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "WANDB_MODE": "offline"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            *overrides,
            f"hydra.sweep.dir={workdir}/multirun",
            f"hydra.run.dir={workdir}/run",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@dataclass(frozen=True)
class TrainedStore:
    home: Path  # BENTOML_HOME holding fraud-mlp and fraud-distilbert
    workdir: Path  # Hydra's output folders (W&B offline runs inside)
    output: str  # what the training command printed


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Both models, trained by the Hydra app (multirun) on tiny synthetic data."""
    home = tmp_path_factory.mktemp("bentoml_home")
    workdir = tmp_path_factory.mktemp("training_run")
    result = run_training(home, workdir, "-m", "model=mlp,distilbert", *TINY_TRAINING)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return TrainedStore(home=home, workdir=workdir, output=result.stdout + result.stderr)


@pytest.fixture(scope="session")
def trained_store(trained: TrainedStore) -> Path:
    return trained.home


@dataclass
class RunningServer:
    kind: str
    url: str
    process: subprocess.Popen[str]
    monitor_dir: Path
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text()


def wait_ready(
    url: str, process: subprocess.Popen[str], log_file: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"bentoml serve exited with {process.returncode}:\n{log_file.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{log_file.read_text()[-3000:]}")


def start_server(
    bentoml_home: Path, workdir: Path, kind: str, **env_overrides: str
) -> RunningServer:
    """Start ``bentoml serve service:FraudDetector`` on a free loopback port."""
    port = free_port()
    monitor_dir = workdir / "monitoring"
    log_file = workdir / "serve.log"
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "FRAUD_MONITOR_LOG_PATH": str(monitor_dir),
        "FRAUD_MODEL": kind,
        **env_overrides,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "service:FraudDetector",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_file)
    except BaseException:
        stop_server(process)
        raise
    return RunningServer(
        kind=kind, url=url, process=process, monitor_dir=monitor_dir, log_file=log_file
    )


def stop_server(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@pytest.fixture(scope="module", params=["mlp", "distilbert"])
def server(
    request: pytest.FixtureRequest, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A real server for each model kind (module scope: started once per kind)."""
    workdir = tmp_path_factory.mktemp(f"serve_{request.param}")
    running = start_server(trained_store, workdir, request.param)
    yield running
    stop_server(running.process)


@pytest.fixture
def client(server: RunningServer) -> Iterator[bentoml.SyncHTTPClient]:
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as c:
        yield c
