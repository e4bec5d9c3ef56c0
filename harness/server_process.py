"""`ServerProcess`: start an HTTP server as a subprocess, wait for `/readyz`, stop it cleanly.

Used by the benchmark runners and by the test suite's real-server fixtures. Servers whose
readiness check lives elsewhere (peer frameworks in `benchmarks.peers`) pass ``ready_path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A server in its own process group. ``bentoml serve``'s workers are not in it (circus
    starts each in a session of its own): its arbiter stops them on SIGTERM, and `kill` finds
    them by parentage."""

    url: str
    process: subprocess.Popen[bytes]
    log_file: Path
    ready_path: str = "/readyz"

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        cwd: Path,
        log_file: Path,
        ready_timeout: float = 120.0,
        ready_path: str = "/readyz",
    ) -> ServerProcess:
        """Run `argv` (which must listen on 127.0.0.1:`port`) until GET `ready_path` is 200."""
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(
            url=f"http://127.0.0.1:{port}",
            process=process,
            log_file=log_file,
            ready_path=ready_path,
        )
        try:
            server.wait_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.url} not ready after {timeout}s:\n{self.log()[-3000:]}")

    def rss_bytes(self) -> dict[int, int]:
        """Resident memory of the server and each process it started, by pid."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        rss: dict[int, int] = {}
        for p in processes:
            try:
                rss[p.pid] = p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return rss

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server and the processes it started."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in processes:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group (graceful shutdown), SIGKILL it after `timeout`."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and every process under it, at once (nothing cleans up)."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        # The parent first, so it cannot restart a child it sees die.
        for p in processes:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
        with contextlib.suppress(ProcessLookupError):  # and any the group still holds
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        psutil.wait_procs(processes, timeout=10)
