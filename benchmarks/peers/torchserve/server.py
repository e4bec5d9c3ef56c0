"""TorchServe peer: a custom handler in a model archive, one Python worker, batch size 1.

    FRAUD_MODEL_DIR=bentos/models/fraud-mlp/<version> PYTHONPATH=. \
        .venv-peers/torchserve/bin/python benchmarks/peers/torchserve/server.py --port 8080

Packs ``fraud_handler.py`` into a no-archive model archive with ``torch-model-archiver``,
writes a ``config.properties`` (inference API on 127.0.0.1:--port, management and metrics APIs
on free loopback ports, token authorization off, one worker per model, batch size 1) and a
log4j2 configuration that keeps warnings only (no access or per-request metrics log), then
runs ``torchserve --foreground`` in its place. ``POST /predictions/fraud`` takes our
``{"transactions": [...]}`` body (422 on bad input); readiness: ``GET /ping``. Needs Java 17.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root

from benchmarks.peers.common import MODEL_DIR_ENV
from benchmarks.peers.common import peer_args

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MODEL_NAME = "fraud"
LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off" additivity="false"/>
    <Logger name="MODEL_LOG" level="warn"/>
    <Logger name="MODEL_METRICS" level="off" additivity="false"/>
    <Logger name="TS_METRICS" level="off" additivity="false"/>
    <Logger name="org.pytorch.serve" level="warn"/>
    <Root level="warn"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    args = peer_args()
    bindir = Path(sys.executable).parent
    if shutil.which("java") is None:
        sys.exit("TorchServe needs Java (17) on PATH")
    work = Path(tempfile.mkdtemp(prefix="fraud-torchserve-"))
    store = work / "model-store"
    store.mkdir()
    settings = work / "peer_settings.json"
    settings.write_text(
        json.dumps({"repo_root": str(REPO), "model_dir": os.environ[MODEL_DIR_ENV]})
    )
    subprocess.run(
        [
            str(bindir / "torch-model-archiver"),
            "--model-name",
            MODEL_NAME,
            "--version",
            "1.0",
            "--handler",
            str(HERE / "fraud_handler.py"),
            "--extra-files",
            str(settings),
            "--export-path",
            str(store),
            "--archive-format",
            "no-archive",
        ],
        check=True,
    )
    config = work / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://{args.host}:{args.port}",
                f"management_address=http://127.0.0.1:{free_port()}",
                f"metrics_address=http://127.0.0.1:{free_port()}",
                f"model_store={store}",
                f"load_models={MODEL_NAME}",
                "default_workers_per_model=1",
                "disable_token_authorization=true",
                "install_py_dep_per_model=false",
                "disable_system_metrics=true",
                "job_queue_size=1000",
                "",
            ]
        )
    )
    log4j = work / "log4j2.xml"
    log4j.write_text(LOG4J)
    env = {**os.environ, "TEMP": str(work), "TMPDIR": str(work), "LOG_LOCATION": str(work)}
    env["METRICS_LOCATION"] = str(work)
    argv = [
        str(bindir / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--ts-config",
        str(config),
        "--log-config",
        str(log4j),
        "--model-store",
        str(store),
    ]
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
