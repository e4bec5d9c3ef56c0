"""Shared fixtures: a tiny model store trained by the real Hydra app, and real servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bentoml
import psycopg
import pytest

from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import open_database
from harness.postgres_server import PostgresServer
from harness.server_process import ServerProcess
from harness.server_process import free_port

REPO = Path(__file__).resolve().parents[1]
#: Small enough for CI on 2 cores, big enough to hold ~30 frauds.
TINY_TRAINING = [
    "data.n_rows=6000",
    "data.fraud_rate=0.01",
    "model.max_epochs=3",
    "trainer.patience=3",
    "export.reference_rows=500",
    "ensemble.folds=3",
]


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


def failed_start_output(bentoml_home: Path, kind: str) -> str:
    """Run ``bentoml serve`` expecting it to stop at start-up; return what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "service:FraudDetector", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(bentoml_home), "FRAUD_MODEL": kind},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, "the server was expected to refuse to start"
    return result.stdout + result.stderr


@dataclass
class RunningServer:
    kind: str
    url: str
    server: ServerProcess
    monitor_dir: Path

    def log(self) -> str:
        return self.server.log()


#: Debian's Chromium, which the browser tests drive through Playwright (no browser download).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def skip_module_without_chromium() -> None:
    """Skip the calling test module when Debian's Chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium)",
            allow_module_level=True,
        )


def start_server(
    bentoml_home: Path, workdir: Path, kind: str, **env_overrides: str
) -> RunningServer:
    """Start ``bentoml serve service:FraudDetector`` on a free loopback port."""
    port = free_port()
    monitor_dir = workdir / "monitoring"
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "FRAUD_MONITOR_LOG_PATH": str(monitor_dir),
        "FRAUD_MODEL": kind,
        **env_overrides,
    }
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "service:FraudDetector",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = ServerProcess.start(argv, port=port, env=env, cwd=REPO, log_file=workdir / "serve.log")
    return RunningServer(kind=kind, url=server.url, server=server, monitor_dir=monitor_dir)


@pytest.fixture(scope="module", params=["mlp", "distilbert"])
def server(
    request: pytest.FixtureRequest, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A real server for each model kind (module scope: started once per kind)."""
    workdir = tmp_path_factory.mktemp(f"serve_{request.param}")
    running = start_server(trained_store, workdir, request.param)
    yield running
    running.server.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[bentoml.SyncHTTPClient]:
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as c:
        yield c


async def read_body(receive) -> bytes:
    """The whole request body, as an ASGI app receives it (in one or more messages)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def call_asgi(
    app, *, path="/predict", method="POST", headers=(), chunks=(b"",)
) -> tuple[int, bytes, dict]:
    """Run one HTTP request through an ASGI app; the body arrives in `chunks`."""
    scope = {
        "type": "http",
        "path": path,
        "method": method,
        "headers": [(k.lower(), v) for k, v in headers],
    }
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], b"".join(m.get("body", b"") for m in sent[1:]), dict(start["headers"])


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer.create(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


_databases = iter(range(10**6))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> ScoreDatabase:
    """An empty score database of each kind (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        return open_database(f"sqlite:///{tmp_path / 'scores.sqlite3'}")
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"test_{next(_databases)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return open_database(server.url.rsplit("/", 1)[0] + f"/{name}")
