"""`python -m benchmarks.peers`: our BentoML service next to peer serving frameworks.

    python -m benchmarks.peers                                   # every server, ~20 min
    python -m benchmarks.peers --servers kserve --connections 32 --duration 5 --users ""

For each server: build its venv if needed (`benchmarks.peers.venvs`), start it on a free
127.0.0.1 port, check its scores against the reference, time lone requests, run wrk at each
``--connections`` (lone requests again after the burst), a 100-row wrk pass, Locust at each
``--users``, read its RSS, stop it. Writes ``peers-<name>.{json,md,png}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from benchmarks.peers.measure import ParityError
from benchmarks.peers.measure import bad_body
from benchmarks.peers.measure import body
from benchmarks.peers.measure import check_parity
from benchmarks.peers.measure import lone_latency
from benchmarks.peers.measure import post
from benchmarks.peers.measure import run_locust
from benchmarks.peers.measure import run_wrk
from benchmarks.peers.measure import wait_first_answer
from benchmarks.peers.measure import wrk_script
from benchmarks.peers.report import write_report
from benchmarks.peers.servers import REPO
from benchmarks.peers.servers import SERVERS
from benchmarks.peers.servers import ServerSpec
from benchmarks.peers.servers import ours_before
from benchmarks.peers.venvs import VenvError
from benchmarks.peers.venvs import ensure_venv
from benchmarks.peers.venvs import installed_version
from benchmarks.provenance import provenance
from benchmarks.request_mix import DEFAULT_MIX
from benchmarks.request_mix import RequestMix
from benchmarks.request_mix import format_mix
from benchmarks.request_mix import load_rows
from benchmarks.serving import machine as serving_machine
from harness.server_process import ServerProcess
from harness.server_process import free_port

MODEL_STORE_NAME = "fraud-mlp"


def model_directory(bentoml_home: Path) -> Path:
    """``<home>/models/fraud-mlp/<latest version>``: the model every server loads."""
    models = bentoml_home / "models" / MODEL_STORE_NAME
    latest = models / "latest"
    if not latest.exists():
        raise SystemExit(f"No {MODEL_STORE_NAME} model under {bentoml_home}: run `make models`")
    path = models / latest.read_text().strip()
    if not (path / "model.onnx").exists():
        raise SystemExit(f"{path} holds no model.onnx: run `make models`")
    return path


def machine() -> dict[str, Any]:
    return {**serving_machine(), "wrk": shutil.which("wrk")}


def stop_tree(server: ServerProcess, timeout: float = 30.0) -> None:
    """Stop the server's process group, then any process it started that left the group."""
    try:
        descendants = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    server.stop(timeout)
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def rss_mb(server: ServerProcess) -> dict[str, float]:
    rss = server.rss_bytes()
    if not rss:
        return {"total": 0.0, "largest": 0.0, "processes": 0}
    return {
        "total": sum(rss.values()) / 2**20,
        "largest": max(rss.values()) / 2**20,
        "processes": len(rss),
    }


def framework_version(spec: ServerSpec) -> str:
    return installed_version(spec.python, spec.framework)


class Inputs:
    """Every request body of the run, built once from the same rows."""

    def __init__(self, data: str | None, parity_rows: int, work: Path) -> None:
        rows = load_rows(data, max(parity_rows, 100), seed=1)
        self.parity = body(rows[:parity_rows])
        self.one_row = [body(rows[i : i + 1]) for i in range(min(parity_rows, len(rows)))]
        self.bad = bad_body(rows[0])
        self.rows100 = body(rows[:100])
        self.mix = RequestMix.build(DEFAULT_MIX, data=data)
        self.mix_file = work / "bodies.jsonl"
        self.mix.save(self.mix_file)
        self.one_row_script = self._script(work, "one_row", self.one_row[0])
        self.rows100_script = self._script(work, "rows100", self.rows100)

    @staticmethod
    def _script(work: Path, name: str, payload: bytes) -> Path:
        (work / f"{name}.json").write_bytes(payload)
        script = work / f"{name}.lua"
        script.write_text(wrk_script(work / f"{name}.json"))
        return script


def reference_answers(
    how: str, model_dir: Path, inputs: Inputs, work: Path
) -> tuple[str, list[dict[str, Any]]]:
    """The reference scores of the parity rows: from our service ("ours"), else in-process.

    In-process scoring uses `benchmarks.peers.common.Scorer` (our `OnnxScorer`), which is also
    the fallback when our service does not start (it may be mid-change).
    """
    from benchmarks.peers.common import Scorer

    direct = Scorer(model_dir).predict_json(inputs.parity)
    if how == "scorer":
        return "OnnxScorer in the harness process", direct
    spec = SERVERS["ours"]
    port = free_port()
    try:
        server = ServerProcess.start(
            spec.argv(port),
            port=port,
            env=spec.environment(model_dir, work),
            cwd=REPO,
            log_file=work / "reference-ours.log",
            ready_timeout=spec.ready_timeout,
            ready_path=spec.ready_path,
        )
    except Exception as e:
        print(f"  our service did not start ({str(e)[:300]}); reference: OnnxScorer", flush=True)
        return f"OnnxScorer in the harness process (our service failed: {str(e)[:200]})", direct
    try:
        status, answer = post(server.url, spec.route, inputs.parity)
    finally:
        stop_tree(server)
    if status != 200:
        note = f"our service answered HTTP {status}: {answer[:200]!r}"
        print(f"  {note}; reference: OnnxScorer", flush=True)
        return f"OnnxScorer in the harness process ({note})", direct
    ours = json.loads(answer)
    check_parity(direct, ours)  # our service must agree with our own scorer
    return "our BentoML service (`ours`, as shipped)", ours


def measure_server(
    spec: ServerSpec,
    args: argparse.Namespace,
    model_dir: Path,
    inputs: Inputs,
    reference: list[dict[str, Any]],
    work: Path,
    record: dict[str, Any],
) -> None:
    """Start `spec`'s server and fill `record` with its figures; stops it whatever happens."""
    port = free_port()
    started = time.monotonic()
    server = ServerProcess.start(
        spec.argv(port),
        port=port,
        env=spec.environment(model_dir, work),
        cwd=spec.cwd,
        log_file=work / "server.log",
        ready_timeout=spec.ready_timeout,
        ready_path=spec.ready_path,
    )
    record["log"] = str(work / "server.log")
    try:
        wait_first_answer(server.url, spec.route, inputs.one_row[0], timeout=spec.ready_timeout)
        record["startup_s"] = time.monotonic() - started
        print(f"  ready in {record['startup_s']:.1f} s at {server.url}{spec.route}", flush=True)

        status, answer = post(server.url, spec.route, inputs.parity)
        if status != 200:
            raise ParityError(f"parity request answered HTTP {status}: {answer[:300]!r}")
        diff = check_parity(reference, json.loads(answer), args.tolerance)
        bad_status, bad_answer = post(server.url, spec.route, inputs.bad)
        if not 400 <= bad_status < 500:
            raise ParityError(
                f"bad request (V1 a string) answered HTTP {bad_status}, not 4xx: "
                f"{bad_answer[:200]!r}"
            )
        record["parity"] = {
            "rows": len(reference),
            "max_abs_diff": diff,
            "bad_request_status": bad_status,
        }
        print(f"  parity ok (max |diff| {diff:.2g}), bad request -> {bad_status}", flush=True)

        lone = record["lone"] = {}
        lone["fresh"] = asdict(lone_latency(server.url, spec.route, inputs.one_row, args.lone))
        print(f"  lone fresh p50 {lone['fresh']['p50_ms']:.2f} ms", flush=True)

        record["wrk"] = []
        for c in sorted(args.connections):
            if args.warmup > 0:
                run_wrk(server.url, spec.route, inputs.one_row_script, c, args.warmup)
            level = run_wrk(server.url, spec.route, inputs.one_row_script, c, args.duration)
            record["wrk"].append({"connections": c, **level.to_dict()})
            print(
                f"  wrk c={c:3d} req/s={level.requests_per_s:8.1f} p50={level.p50_ms:7.2f}ms "
                f"p99={level.p99_ms:7.2f}ms errors={level.errors}",
                flush=True,
            )
            if c == args.burst:
                time.sleep(1)
                lone["after_burst"] = asdict(
                    lone_latency(server.url, spec.route, inputs.one_row, args.lone)
                )
                print(f"  lone after burst p50 {lone['after_burst']['p50_ms']:.2f} ms")
                if args.after_minute:
                    time.sleep(60)
                    lone["after_minute"] = asdict(
                        lone_latency(server.url, spec.route, inputs.one_row, args.lone)
                    )
                    print(f"  lone after a minute p50 {lone['after_minute']['p50_ms']:.2f} ms")

        c = args.rows100_connections
        if args.warmup > 0:
            run_wrk(server.url, spec.route, inputs.rows100_script, c, args.warmup)
        level = run_wrk(server.url, spec.route, inputs.rows100_script, c, args.duration)
        record["rows100"] = {
            "connections": c,
            "rows_per_request": 100,
            "rows_per_s": level.requests_per_s * 100,
            **level.to_dict(),
        }
        print(f"  100-row wrk c={c}: {level.requests_per_s * 100:,.0f} rows/s", flush=True)

        record["locust"] = []
        for u in sorted(args.users):
            level_locust = run_locust(
                server.url, spec.route, u, args.locust_duration, inputs.mix_file, work / f"l{u}"
            )
            record["locust"].append(level_locust)
            print(
                f"  locust u={u:3d} req/s={level_locust['requests_per_s']:8.1f} "
                f"p50={level_locust['p50_ms']:.0f}ms p99={level_locust['p99_ms']:.0f}ms "
                f"failures={level_locust['failures']}",
                flush=True,
            )
        record["rss_mb"] = rss_mb(server)
        print(
            f"  RSS {record['rss_mb']['total']:.0f} MB in {record['rss_mb']['processes']} "
            f"processes, largest {record['rss_mb']['largest']:.0f} MB",
            flush=True,
        )
    finally:
        stop_tree(server)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serving frameworks compared (module doc).")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--connections", type=_ints, default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk pass")
    parser.add_argument("--warmup", type=float, default=2, help="wrk warm-up before each pass")
    parser.add_argument(
        "--burst", type=int, default=32, help="lone latency is measured again after this pass"
    )
    parser.add_argument("--after-minute", action="store_true", help="and 60 s after it")
    parser.add_argument("--rows100-connections", type=int, default=32)
    parser.add_argument(
        "--users", type=_ints, default=[1, 8, 32, 64], help="Locust users ('' for none)"
    )
    parser.add_argument("--locust-duration", type=float, default=6)
    parser.add_argument("--lone", type=int, default=300, help="requests per lone-latency run")
    parser.add_argument("--parity-rows", type=int, default=200)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--data", help="CSV of the ULB schema (else synthetic rows)")
    parser.add_argument(
        "--reference",
        choices=["ours", "scorer"],
        default="ours",
        help="parity reference: our service (falls back to the scorer) or OnnxScorer in-process",
    )
    parser.add_argument("--name", default="vm", help="results stem: peers-<name>")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--bentoml-home", type=Path, default=None)
    parser.add_argument(
        "--before",
        metavar="GIT_REF",
        help="also measure our service at this commit (server ours-before, drift off)",
    )
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    if args.before and "ours-before" not in args.servers:
        args.servers.insert(0, "ours-before")
    unknown = [s for s in args.servers if s not in SERVERS and s != "ours-before"]
    if unknown:
        parser.error(f"unknown servers {unknown}; choose from {list(SERVERS)}")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    wall = time.monotonic()
    home = args.bentoml_home or Path(os.environ.get("BENTOML_HOME", REPO / "bentos"))
    model_dir = model_directory(home)
    results: dict[str, Any] = {
        "provenance": provenance("benchmarks.peers", argv),
        "machine": machine(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model_dir": str(model_dir),
        "settings": {
            "servers": args.servers,
            "connections": sorted(args.connections),
            "wrk_seconds": args.duration,
            "warmup_seconds": args.warmup,
            "burst_connections": args.burst,
            "after_minute": args.after_minute,
            "rows100_connections": args.rows100_connections,
            "locust_users": sorted(args.users),
            "locust_seconds": args.locust_duration,
            "locust_mix": format_mix(DEFAULT_MIX),
            "lone_requests": args.lone,
            "parity_rows": args.parity_rows,
            "tolerance": args.tolerance,
            "data": args.data or "synthetic rows",
        },
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="fraud-peers-") as tmp:
        work = Path(tmp)
        inputs = Inputs(args.data, args.parity_rows, work)
        results["settings"]["locust_mean_rows"] = inputs.mix.mean_rows
        print("reference scores ...", flush=True)
        results["reference"], reference = reference_answers(args.reference, model_dir, inputs, work)
        print(f"  reference: {results['reference']}", flush=True)
        servers = dict(SERVERS)
        if args.before:
            tree = work / "before-tree"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.before],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            servers["ours-before"] = ours_before(tree, args.before)
        for name in args.servers:
            spec = servers[name]
            record: dict[str, Any] = {
                "status": "ok",
                "framework": spec.framework,
                "short": spec.short,
                "config": spec.config,
                "route": spec.route,
                "ready_path": spec.ready_path,
            }
            results["servers"][name] = record
            # Other work on this machine skews every figure: say how busy it was.
            record["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
            print(f"{name}: {spec.short} (load average {record['load_average_before']})")
            began = time.monotonic()
            try:
                if spec.peer:
                    ensure_venv(spec.peer)
                record["version"] = framework_version(spec)
                server_work = work / name
                server_work.mkdir()
                measure_server(spec, args, model_dir, inputs, reference, server_work, record)
            except VenvError as e:
                record.update(status="skipped", reason=f"environment not built: {e}")
            except ParityError as e:
                record.update(status="failed", reason=f"score parity: {e}")
            except Exception as e:
                record.update(status="failed", reason=f"{type(e).__name__}: {e}")
                traceback.print_exc()
            record["seconds"] = time.monotonic() - began
            if record["status"] != "ok":
                print(f"  {record['status']}: {str(record['reason'])[:500]}", flush=True)
            log = Path(record.get("log", ""))
            if record["status"] != "ok" and log.is_file():
                record["log_tail"] = log.read_text(errors="replace")[-3000:]
            record.pop("log", None)
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)
    results["wall_s"] = time.monotonic() - wall
    out = write_report(results, args.out, f"peers-{args.name}")
    print(f"wrote {out}.json/.md/.png in {results['wall_s'] / 60:.1f} min", flush=True)
    return out
