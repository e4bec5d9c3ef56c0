"""The bento image as users run it: size, cold start, memory, and throughput next to the host.

    make container BASE_IMAGE=fraud-python:3.11-bookworm   # or BentoML's default base
    python -m benchmarks.container --data creditcard.csv.gz

The host server uses the model store of this environment (``BENTOML_HOME``): build the image
from the same store, so both serve the same model.

- size of each image given (`--images`), and its largest site-packages, measured inside it;
- cold start: ``docker run`` (Cloud Run style: ``-e PORT=8080``, the service manifest's env
  and memory limit) until ``/readyz`` answers 200, `--starts` times;
- throughput: wrk, one-row requests at 32 connections and 100-row requests at 8, against the
  container and against ``bentoml serve`` on the host with the same env and model, in
  alternating passes (`--rounds`); resident memory of each after the load.

Writes ``benchmarks/results/container-<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from benchmarks.peers.measure import run_wrk
from benchmarks.peers.measure import wrk_script
from benchmarks.provenance import provenance
from benchmarks.request_mix import load_rows
from fraud_detection.schema import FEATURE_NAMES
from harness.server_process import ServerProcess
from harness.server_process import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def docker(*args: str, timeout: float = 300) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {done.stderr[-2000:]}")
    return done.stdout


def cloud_run_env() -> dict[str, str]:
    service = yaml.safe_load((REPO / "deploy/cloudrun/service-cpu.yaml").read_text())
    container = service["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def image_figures(image: str) -> dict[str, Any]:
    """Image size, and the ten largest installed packages inside it (MB)."""
    size = int(docker("image", "inspect", image, "--format", "{{.Size}}"))
    listing = docker(
        "run", "--rm", "--entrypoint", "sh", image, "-c",
        "du -sm /app/.venv/lib/python3*/site-packages/* 2>/dev/null | sort -rn | head -10",
    )  # fmt: skip
    largest = {
        Path(path).name: int(mb) for mb, path in (line.split("\t") for line in listing.splitlines())
    }
    return {"image": image, "size_mb": round(size / 1e6), "largest_packages_mb": largest}


def start_container(image: str, env: dict[str, str], name: str) -> tuple[str, float]:
    """Cloud Run style; returns the URL and seconds from ``docker run`` to ready.

    Host networking: Docker's published ports go through its userland proxy (a process that
    copies every byte, 0.71 x the host's throughput on one-row requests here), which neither
    Cloud Run nor GKE has in the request path.
    """
    port = free_port()
    env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    started = time.monotonic()
    docker("run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
           "--memory", "2g", *env_args, image)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < 180:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return url, time.monotonic() - started
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(docker("logs", name)[-3000:])


def container_rss_mb(name: str) -> float:
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).split("/")[0]
    value = float(usage.strip().rstrip("GMKiB"))
    return value * 1024 if "GiB" in usage else value


def scripts(workdir: Path, rows: np.ndarray) -> dict[str, tuple[Path, int]]:
    """wrk scripts: one-row requests (32 connections) and 100-row ones (8 connections)."""
    made = {}
    for label, n, connections in (("one-row", 1, 32), ("100-row", 100, 8)):
        body = workdir / f"{label}.json"
        records = [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows[:n].tolist()]
        body.write_text(json.dumps({"transactions": records}))
        script = workdir / f"{label}.lua"
        script.write_text(wrk_script(body))
        made[label] = (script, connections)
    return made


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="fraud-detector:local", help="comma-separated")
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    images = [i for i in args.images.split(",") if i]
    env = cloud_run_env()
    workdir = Path(tempfile.mkdtemp(prefix="bench-container-"))
    rows = load_rows(args.data, 200, seed=5)
    results: dict[str, Any] = {
        "provenance": provenance("benchmarks.container", argv),
        "machine": f"{os.cpu_count()} logical CPUs ({platform.machine()}), "
        f"Python {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "env": env,
        "images": [image_figures(i) for i in images],
    }
    image = images[0]
    starts = []
    for i in range(args.starts):
        name = f"bench-cold-{i}"
        _, seconds = start_container(image, env, name)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        starts.append(round(seconds, 2))
    results["cold_start_s"] = starts

    host_port = free_port()
    host = ServerProcess.start(
        [sys.executable, "-m", "bentoml", "serve", "service:FraudDetector",
         "--host", "127.0.0.1", "--port", str(host_port)],
        port=host_port, cwd=REPO, log_file=workdir / "host.log",
        env={
            **os.environ,
            **{k: v for k, v in env.items() if k not in ("BENTOML_HOME", "HOME")},
            "FRAUD_MONITOR_LOG_PATH": str(workdir / "monitoring"),
        },
    )  # fmt: skip
    container_url, _ = start_container(image, env, "bench-load")
    targets = {"container": container_url, "host": host.url}
    passes: dict[str, dict[str, list[float]]] = {}
    try:
        loads = scripts(workdir, rows)
        for url in targets.values():
            run_wrk(url, "/predict", loads["one-row"][0], 32, 3)  # warm-up
        for round_ in range(args.rounds):
            order = list(targets) if round_ % 2 == 0 else list(targets)[::-1]
            for label, (script, connections) in loads.items():
                for where in order:
                    result = run_wrk(targets[where], "/predict", script, connections, args.seconds)
                    cell = passes.setdefault(label, {}).setdefault(where, [])
                    cell.append(result.requests_per_s)
        results["rss_mb"] = {
            "container": container_rss_mb("bench-load"),
            "host": round(sum(host.rss_bytes().values()) / 2**20, 1),
        }
    finally:
        host.stop()
        subprocess.run(["docker", "rm", "-f", "bench-load"], capture_output=True)
    results["throughput"] = {
        label: {
            "requests_per_s": {w: round(float(np.mean(v)), 1) for w, v in by_where.items()},
            "container_over_host": round(
                float(np.mean(by_where["container"]) / np.mean(by_where["host"])), 3
            ),
        }
        for label, by_where in passes.items()
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"container-{args.name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# The image, measured",
        "",
        f"{results['machine']}; {results['date']}; env {results['env']}",
        "",
        "| image | size | largest packages (MB) |",
        "|---|---:|---|",
    ]
    for image in results["images"]:
        largest = ", ".join(f"{k} {v}" for k, v in image["largest_packages_mb"].items())
        lines.append(f"| `{image['image']}` | {image['size_mb']} MB | {largest} |")
    lines += [
        "",
        f"Cold start, `docker run` to `/readyz` 200: {results['cold_start_s']} s.",
        f"Resident memory after the load: {results['rss_mb']}.",
        "",
        "| load | container req/s | host req/s | container / host |",
        "|---|---:|---:|---:|",
    ]
    for label, t in results["throughput"].items():
        rps = t["requests_per_s"]
        lines.append(
            f"| {label} | {rps['container']} | {rps['host']} | {t['container_over_host']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
