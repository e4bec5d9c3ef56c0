"""Each peer's virtual environment, ``.venv-peers/<peer>``, built from its requirements.txt.

Rebuilt when missing or when requirements.txt changed: the venv holds a stamp file with the
SHA-256 of the requirements it was built from.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers.servers import PEERS_DIR
from benchmarks.peers.servers import VENVS_DIR

STAMP = ".requirements.sha256"


class VenvError(RuntimeError):
    """A peer's environment could not be built; the message says why."""


def requirements_file(peer: str) -> Path:
    return PEERS_DIR / peer / "requirements.txt"


def requirements_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_current(venv: Path, requirements: Path) -> bool:
    """Built, and from these very requirements."""
    stamp = venv / STAMP
    return (
        (venv / "bin" / "python").exists()
        and stamp.exists()
        and stamp.read_text().strip() == requirements_hash(requirements)
    )


def ensure_venv(peer: str, *, python: str = sys.executable, root: Path = VENVS_DIR) -> Path:
    """The peer's venv, (re)built with pip if missing or stale; `VenvError` if pip fails."""
    requirements = requirements_file(peer)
    venv = root / peer
    if is_current(venv, requirements):
        return venv
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"{peer}.pip.log"
    started = time.monotonic()
    print(f"  building {venv} from {requirements} (log: {log})", flush=True)
    (venv / STAMP).unlink(missing_ok=True)
    steps = [
        [python, "-m", "venv", "--clear", str(venv)],
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
    ]
    with log.open("w") as out:
        for argv in steps:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
            if done.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-15:]
                raise VenvError(
                    f"`{' '.join(argv[-3:])}` failed ({done.returncode}) for {peer}:\n"
                    + "\n".join(tail)
                )
    (venv / STAMP).write_text(requirements_hash(requirements) + "\n")
    print(f"  built {venv} in {time.monotonic() - started:.0f} s", flush=True)
    return venv


def installed_version(python: Path, distribution: str) -> str:
    """The version of `distribution` in the environment of `python` ("?" if unknown)."""
    done = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip() if done.returncode == 0 else "?"
