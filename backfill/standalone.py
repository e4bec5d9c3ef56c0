"""A Spark standalone cluster on this machine, started from the pyspark wheel's `spark-class`.

The wheel has no ``sbin/start-master.sh``; its ``bin/spark-class`` runs the same master and
worker classes. For trying a backfill on a real cluster without one, and for the tests:

    python -m backfill.standalone --workers 2 --cores 1     # prints spark://127.0.0.1:<port>
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path


def spark_home() -> Path:
    """The pyspark package folder: it holds bin/spark-class and the jars."""
    import pyspark

    return Path(pyspark.__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StandaloneCluster:
    """A master and its workers (one process each), stopped together."""

    url: str
    web_ui: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(
        cls, workers: int = 2, cores: int = 1, memory: str = "2g", log_dir: Path | None = None
    ) -> StandaloneCluster:
        """Start the master, then `workers` workers of `cores` cores; wait until all are ALIVE."""
        spark_class = str(spark_home() / "bin" / "spark-class")
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        }
        port, ui = _free_port(), _free_port()
        cluster = cls(url=f"spark://127.0.0.1:{port}", web_ui=f"http://127.0.0.1:{ui}")
        log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))

        def launch(name: str, argv: list[str]) -> None:
            log = open(log_dir / f"spark-{name}-{port}.log", "wb")  # noqa: SIM115 (the child's)
            cluster.processes.append(
                subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            )

        master = "org.apache.spark.deploy.master.Master"
        launch("master", [spark_class, master, "--host", "127.0.0.1", "--port", str(port),
                          "--webui-port", str(ui)])  # fmt: skip
        try:
            cluster._wait(lambda state: '"status" : "ALIVE"' in state, "the master")
            for i in range(workers):
                launch(f"worker{i}", [spark_class, "org.apache.spark.deploy.worker.Worker",
                                      "--host", "127.0.0.1", "--cores", str(cores),
                                      "--memory", memory, "--webui-port", str(_free_port()),
                                      cluster.url])  # fmt: skip
            cluster._wait(lambda state: state.count('"state" : "ALIVE"') >= workers, "workers")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def state(self) -> str:
        """The master's JSON status page."""
        with urllib.request.urlopen(f"{self.web_ui}/json/", timeout=2) as response:
            return response.read().decode()

    def _wait(self, ready, what: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a Spark process exited while waiting for {what}")
            try:
                if ready(self.state()):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def __enter__(self) -> StandaloneCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m backfill.standalone", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="per worker")
    parser.add_argument("--memory", default="2g", help="per worker")
    args = parser.parse_args()
    with StandaloneCluster.start(args.workers, args.cores, args.memory) as cluster:
        print(f"{cluster.url}   (web UI {cluster.web_ui}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
