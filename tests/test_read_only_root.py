"""The built image's layout serves on a read-only root filesystem with the GKE manifest's volumes.

No Docker daemon here, so the container is imitated: in a private mount namespace the host's
root is bind-mounted read-only, the exported bento sits at the image's `$BENTO_PATH`, and only
the paths the Deployment mounts as `emptyDir` are writable. The environment is the Dockerfile's
`ENV` lines overridden by the Deployment's `env`, as Kubernetes does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from harness.server_process import free_port
from tests.conftest import REPO
from training.data import generate_transactions

BENTO_PATH = "/home/bentoml/bento"


def can_unshare_mounts() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not can_unshare_mounts(), reason="needs root and mount namespaces (unshare -m)"
)


def dockerfile_env(dockerfile: str) -> dict[str, str]:
    """The literal `ENV KEY=VALUE` settings of a Dockerfile (build-arg ones are left out)."""
    found = re.findall(r"^ENV (\w+)=(\S+)$", dockerfile, re.MULTILINE)
    return {key: value for key, value in found if "$" not in value}


def gke_container() -> dict:
    deployment = yaml.safe_load((REPO / "deploy" / "gke" / "base" / "deployment.yaml").read_text())
    spec = deployment["spec"]["template"]["spec"]
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    return spec["containers"][0]


def namespace_script(root: Path, bento_tar: Path, writable: list[str], command: str) -> str:
    """Shell run under `unshare -m`: build the read-only root at `root`, then chroot into it."""
    lines = [
        "set -euo pipefail",
        "mount --make-rprivate /",
        f"mount --rbind / {root}",
        f"mount -o remount,bind,ro {root}",
        # The image's /home: a fresh tmpfs holding the bento, made read-only once filled.
        f"mount -t tmpfs tmpfs {root}/home",
        f"mkdir -p {root}{BENTO_PATH}",
        f"tar -xf {bento_tar} -C {root}{BENTO_PATH}",
    ]
    for path in writable:
        if not path.startswith("/home/"):
            # A mount point outside /home that the host lacks: give its parent a tmpfs first.
            parent = str(Path(path).parent)
            lines.append(f"[ -d {root}{path} ] || mount -t tmpfs tmpfs {root}{parent}")
        lines.append(f"mkdir -p {root}{path}")
    lines.append(f"mount -o remount,ro {root}/home")
    for path in writable:
        if not path.startswith("/home/") and path != "/tmp":
            lines.append(f"mount -o remount,ro {root}{Path(path).parent} 2>/dev/null || true")
    lines += [f"mount -t tmpfs tmpfs {root}{path}" for path in writable]  # the emptyDirs
    # The image holds the bento, not this checkout: hide the source tree (an editable install
    # would otherwise supply modules the bento lacks) and bring back only the Python env.
    venv = Path(sys.prefix)
    lines += [
        f"hidden=0; if [ -d {root}{REPO} ]; then mount -t tmpfs tmpfs {root}{REPO}; hidden=1; fi",
        f"mkdir -p {root}{venv}",
        f"mount --bind {venv} {root}{venv}",
        f"mount -o remount,bind,ro {root}{venv}",
        f'if [ "$hidden" = 1 ]; then mount -o remount,ro {root}{REPO}; fi',
    ]
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
    lines.append(f"exec {chroot} {root} /bin/bash -c {shlex.quote(command)}")
    return "\n".join(lines)


def test_bento_serves_on_a_read_only_root_with_the_manifest_volumes(
    trained_store: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "BENTOML_HOME": str(trained_store), "FRAUD_MODEL": "mlp"}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento_tar = tmp_path / "fraud_detector.bento"
    exported = subprocess.run(
        [sys.executable, "-m", "bentoml", "export", tag, str(bento_tar)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    with tarfile.open(bento_tar) as tar:
        dockerfile = tar.extractfile("./env/docker/Dockerfile").read().decode()  # type: ignore[union-attr]

    container = gke_container()
    writable = [m["mountPath"] for m in container["volumeMounts"]]
    port = free_port()
    container_env = {
        **dockerfile_env(dockerfile),
        **{e["name"]: str(e["value"]) for e in container["env"] if "value" in e},
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "BENTOML_PORT": str(port),
    }
    command = f"cd {BENTO_PATH} && exec bentoml serve {BENTO_PATH}"
    root = tmp_path / "root"
    root.mkdir()
    script = namespace_script(root, bento_tar, writable, command)
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as log:
        server = subprocess.Popen(
            ["unshare", "-m", "bash", "-c", script],
            env=container_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = False
        while not ready and time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            if not ready:
                time.sleep(0.5)
        assert server.poll() is None, "start-up failed:\n" + log_file.read_text()[-4000:]
        assert ready, "not ready after 120 s:\n" + log_file.read_text()[-4000:]
        rows = generate_transactions(3, seed=3).drop(columns="Class").to_dict(orient="records")
        response = httpx.post(f"{url}/predict", json={"transactions": rows}, timeout=30)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 3
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
        time.sleep(1)  # the drift log writes every 0.2 s
        failures = re.findall(
            r"^fraud_drift_log_failures_total(?:\{[^}]*\})? (\S+)$",
            httpx.get(f"{url}/metrics", timeout=10).text,
            re.MULTILINE,
        )
        assert sum(float(v) for v in failures) == 0, "the drift log must be writable"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)
    assert "Read-only file system" not in log_file.read_text()
