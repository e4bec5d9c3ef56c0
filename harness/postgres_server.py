"""`PostgresServer`: a real PostgreSQL server in a temporary folder, for tests and benchmarks.

Uses the server binaries (``initdb``, ``pg_ctl``) from PATH or Debian's
``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root, so under root the
cluster belongs to the ``postgres`` system user (``runuser``). It listens on loopback only,
with trust authentication: never a production setup.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.server_process import free_port


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    """A started cluster; `url` is a psycopg connection URL to its ``postgres`` database."""

    data_dir: Path
    port: int
    bin_dir: Path
    log_file: Path

    @property
    def url(self) -> str:
        return f"postgresql://fraud@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls, folder: Path) -> PostgresServer:
        """initdb a cluster under `folder` and start it."""
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError(
                "PostgreSQL server binaries not found (apt-get install postgresql-15)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            folder.chmod(0o755)
        server = cls(folder / "data", free_port(), bin_dir, folder / "postgres.log")
        server._run("initdb", "-D", str(server.data_dir), "-U", "fraud", "-A", "trust")
        server.start()
        return server

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            # postgres must be able to reach the folder, at every call: a pytest session that
            # starts meanwhile sets its /tmp/pytest-of-<user> back to 0700.
            for parent in self.data_dir.parents:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.data_dir.parent} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server now (fast shutdown: open sessions are cut)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
