"""`ReplicaSet`: PostgreSQL, N ``bentoml serve`` replicas sharing it, and HAProxy in front.

    python -m benchmarks.replicas                               # 3 replicas, 1 kill, 20 s
    python -m benchmarks.replicas --data creditcard.csv.gz --kills 3 --seconds 60

Each replica is a real ``bentoml serve service:FraudDetector`` (one worker) on its own
loopback port, with its own FRAUD_MONITOR_LOG_PATH and the score log in one PostgreSQL
database (FRAUD_SCORE_LOG_DURABILITY=commit unless told otherwise). HAProxy (Debian's
``haproxy``, in the foreground) balances them round-robin and health-checks ``/readyz`` every
500 ms; a refused connection, or one closed with no answer, is sent again to another replica.

`main` runs the kill scenario: client threads send one-row requests with unique transaction
ids through HAProxy with `fraud_detection.client.predict_with_retry`, while every
``seconds / (kills + 1)`` a replica (its arbiter and worker) is SIGKILLed, then started again.
It counts the ids answered, those the ``scores`` table lacks, and the errors callers saw,
labels every answered id through ``/feedback`` and checks that ``/performance`` counts each
once. Then one replica gets SIGTERM under load (`drain_under_load`): when HAProxy takes it
out, against when it stops answering. Writes ``benchmarks/results/replicas-<name>.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pandas as pd
import psycopg

from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from fraud_detection.client import predict_with_retry
from fraud_detection.schema import FEATURE_NAMES
from harness.postgres_server import PostgresServer
from harness.server_process import ServerProcess
from harness.server_process import free_port

REPO = Path(__file__).resolve().parents[1]
BACKEND = "replicas"
#: Every labelled transaction of a run stays in ``/performance``'s window.
WIDE_WINDOW = {"FRAUD_PERFORMANCE_WINDOW_ROWS": "10000000"}


def haproxy_binary() -> str | None:
    """HAProxy's path (Debian puts it in /usr/sbin, off most users' PATH), or None."""
    for candidate in (shutil.which("haproxy"), "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def haproxy_config(port: int, servers: Mapping[str, int], stats_socket: Path) -> str:
    """``haproxy.cfg``: `servers` (name: port on 127.0.0.1) behind 127.0.0.1:`port`."""
    lines = [
        "global",
        "    maxconn 4096",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    log stdout format raw local0 notice",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout check 1s",
        # A replica that refused the connection, or closed it without an answer (killed
        # mid-request), gets the request sent again elsewhere: the transaction ids make it safe.
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "",
        "frontend fraud",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
        # One failed check takes a replica out; two good ones bring it back.
        "    default-server check inter 500ms fall 1 rise 2",
        *(f"    server {name} 127.0.0.1:{p}" for name, p in servers.items()),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Replica:
    """One ``bentoml serve`` of the service, started (again) on the same port."""

    name: str
    port: int
    folder: Path
    env: dict[str, str]
    server: ServerProcess | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "bentoml", "serve", "service:FraudDetector",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        self.starts += 1
        self.server = ServerProcess.start(
            argv,
            port=self.port,
            env=self.env,
            cwd=REPO,
            log_file=self.folder / f"serve.{self.starts}.log",
        )

    def kill(self) -> None:
        """SIGKILL the arbiter and its workers at once (each worker has a session of its own,
        so the process group alone would miss them), as when a machine or container dies."""
        assert self.server is not None
        self.server.kill()

    def terminate(self) -> None:
        """SIGTERM the main process only, as a container runtime does."""
        assert self.server is not None
        os.kill(self.server.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@dataclass
class ReplicaSet:
    """A started PostgreSQL, `replicas` and HAProxy; `url` is HAProxy's."""

    folder: Path
    postgres: PostgresServer
    replicas: list[Replica]
    port: int
    stats_socket: Path
    haproxy: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        folder: Path,
        bentoml_home: Path,
        *,
        n: int = 3,
        durability: str = "commit",
        env: Mapping[str, str] | None = None,
    ) -> ReplicaSet:
        """PostgreSQL, then `n` replicas (in parallel), then HAProxy once all are ready.

        `durability` is FRAUD_SCORE_LOG_DURABILITY; `env` adds or overrides variables.
        """
        binary = haproxy_binary()
        if binary is None:
            raise FileNotFoundError("haproxy not found (apt-get install haproxy)")
        folder.mkdir(parents=True, exist_ok=True)
        postgres = PostgresServer.create(folder / "postgres")
        # A unix socket's path must fit in 108 bytes; pytest's folders can be longer.
        stats_socket = Path(tempfile.mkdtemp(prefix="haproxy-")) / "stats.sock"
        replica_set = cls(folder, postgres, [], free_port(), stats_socket)
        try:
            for i in range(n):
                home = folder / f"r{i}"
                replica_set.replicas.append(
                    Replica(
                        f"r{i}",
                        free_port(),
                        home,
                        {
                            **os.environ,
                            "BENTOML_HOME": str(bentoml_home),
                            "FRAUD_DB_URL": postgres.url,
                            "FRAUD_MONITOR_LOG_PATH": str(home / "monitoring"),
                            "FRAUD_SCORE_LOG_DURABILITY": durability,
                            **WIDE_WINDOW,
                            **(env or {}),
                        },
                    )
                )
                home.mkdir(parents=True, exist_ok=True)
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(Replica.start, replica_set.replicas))
            replica_set._start_haproxy(binary)
        except BaseException:
            replica_set.stop()
            raise
        return replica_set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start_haproxy(self, binary: str) -> None:
        config = self.folder / "haproxy.cfg"
        config.write_text(
            haproxy_config(self.port, {r.name: r.port for r in self.replicas}, self.stats_socket)
        )
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused {config}:\n{check.stdout}{check.stderr}")
        with (self.folder / "haproxy.log").open("wb") as log:
            self.haproxy = subprocess.Popen(
                [binary, "-db", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for(lambda states: all(s == "UP" for s in states.values()), "all replicas UP")

    def haproxy_log(self) -> str:
        return (self.folder / "haproxy.log").read_text(errors="replace")

    def server_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's ``show stat`` for each replica: ``status`` (UP, DOWN, ``UP 1/2`` while
        coming back...), ``stot`` (sessions sent to it), and the rest of its CSV columns."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        text = data.decode().lstrip("# ")
        return {
            row["svname"]: row
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def states(self) -> dict[str, str]:
        return {name: row["status"] for name, row in self.server_stats().items()}

    def wait_for(
        self, condition: Any, what: str, timeout: float = 60.0, poll_s: float = 0.1
    ) -> dict[str, str]:
        """Poll HAProxy's server states until `condition(states)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.haproxy is not None and self.haproxy.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.haproxy_log()[-3000:]}")
            try:
                states = self.states()
            except OSError:  # the stats socket is not there yet
                states = {}
            if states and condition(states):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: still {states}\n{self.haproxy_log()[-3000:]}")
            time.sleep(poll_s)

    def restart(self, replica: Replica) -> None:
        """Start `replica` again on its port and wait until HAProxy has it back in the pool."""
        replica.start()
        self.wait_for(lambda states: states[replica.name] == "UP", f"{replica.name} back UP")

    def score_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """Rows of each of `ids` in the ``scores`` table (ids it lacks are left out)."""
        with psycopg.connect(self.postgres.url) as conn:
            rows = conn.execute(
                "SELECT transaction_id, count(*) FROM scores WHERE transaction_id = ANY(%s) "
                "GROUP BY transaction_id",
                (list(ids),),
            ).fetchall()
        return dict(rows)

    def stop(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=10)
        if self.replicas:  # in parallel: each may drain for FRAUD_DRAIN_SECONDS
            with ThreadPoolExecutor(len(self.replicas)) as pool:
                list(pool.map(Replica.stop, self.replicas))
        self.postgres.stop()
        shutil.rmtree(self.stats_socket.parent, ignore_errors=True)

    def __enter__(self) -> ReplicaSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def transactions(data: str | None, n_rows: int, seed: int) -> pd.DataFrame:
    """Feature rows and their ``Class``: from a CSV of the ULB schema, else synthetic."""
    if data:
        from training.data.csv_source import read_transactions_csv

        frame = read_transactions_csv(data)
        return frame.sample(n=min(n_rows, len(frame)), random_state=seed).reset_index(drop=True)
    from training.data.synthetic import generate_transactions

    return generate_transactions(n_rows, fraud_rate=0.01, seed=seed)


@dataclass
class LoadResult:
    """What the callers saw: the ids answered (with the row's label) and every error."""

    labels: dict[str, int]
    errors: list[str]
    retries: int  # the callers' own (`predict_with_retry`'s backoffs)
    seconds: float

    @property
    def requests_per_s(self) -> float:
        return len(self.labels) / self.seconds if self.seconds else 0.0


@dataclass
class OneRowLoad:
    """`threads` callers, each its own `bentoml.SyncHTTPClient` to `url`, sending one-row
    ``/predict`` requests with unique transaction ids through `predict_with_retry`."""

    url: str
    frame: pd.DataFrame
    threads: int = 4
    prefix: str = "load"
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _labels: dict[str, int] = field(default_factory=dict)
    _errors: list[str] = field(default_factory=list)
    _retries: list[float] = field(default_factory=list)
    _started: float = 0.0

    def start(self) -> OneRowLoad:
        rows = self.frame[list(FEATURE_NAMES)].to_dict(orient="records")
        classes = self.frame["Class"].astype(int).tolist()
        self._started = time.monotonic()
        for t in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t, rows, classes), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, t: int, rows: list[dict[str, float]], classes: list[int]) -> None:
        def backoff(seconds: float) -> None:
            self._retries.append(seconds)
            time.sleep(seconds)

        with bentoml.SyncHTTPClient(self.url, server_ready_timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                k = (t + i * self.threads) % len(rows)
                tid = f"{self.prefix}-{t}-{i}"
                i += 1
                try:
                    (answer,) = predict_with_retry(
                        client, [{**rows[k], "transaction_id": tid}], sleep=backoff
                    )
                except Exception as e:  # every failure a caller would see
                    self._errors.append(f"{tid}: {type(e).__name__}: {e}"[:300])
                    continue
                if answer["transaction_id"] != tid:
                    self._errors.append(f"{tid}: answered as {answer['transaction_id']}")
                    continue
                self._labels[tid] = classes[k]

    def stop(self) -> LoadResult:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        return LoadResult(
            dict(self._labels),
            list(self._errors),
            len(self._retries),
            time.monotonic() - self._started,
        )


def post_labels(url: str, labels: Mapping[str, int], chunk: int = 5000) -> dict[str, int]:
    """``POST /feedback`` every label in chunks; the answers' counts, summed."""
    totals = {"received": 0, "stored": 0, "unmatched": 0}
    items = [{"transaction_id": tid, "label": y} for tid, y in labels.items()]
    for start in range(0, len(items), chunk):
        answer = httpx.post(f"{url}/feedback", json=items[start : start + chunk], timeout=60)
        answer.raise_for_status()
        for key in totals:
            totals[key] += answer.json()[key]
    return totals


def labelled(url: str) -> int:
    """``/performance``'s count of labelled transactions in its window."""
    answer = httpx.get(f"{url}/performance", timeout=60)
    answer.raise_for_status()
    return int(answer.json()["labelled"])


def missing_from_log(
    replica_set: ReplicaSet, ids: Sequence[str], settle_s: float = 5.0
) -> tuple[list[str], dict[str, int]]:
    """The ids the ``scores`` table lacks, waiting up to `settle_s` for writers still flushing
    (none should be, with durability ``commit``), and the rows of those it holds."""
    deadline = time.monotonic() + settle_s
    while True:
        counts = replica_set.score_counts(ids)
        missing = [tid for tid in ids if tid not in counts]
        if not missing or time.monotonic() > deadline:
            return missing, counts
        time.sleep(0.5)


def counted(
    after: Mapping[str, Mapping[str, str]], before: Mapping[str, Mapping[str, str]], column: str
) -> int:
    """A ``show stat`` counter's growth, summed over the replicas."""
    return sum(
        int(row[column] or 0) - int(before[name][column] or 0) for name, row in after.items()
    )


def kill_under_load(
    replica_set: ReplicaSet,
    frame: pd.DataFrame,
    *,
    kills: int = 1,
    seconds: float = 20.0,
    threads: int = 4,
    prefix: str = "kill",
) -> dict[str, Any]:
    """One-row load through HAProxy while `kills` replicas (in turn) are SIGKILLed and started
    again; then what the callers saw, what the log holds, and ``/performance``'s count."""
    period = seconds / (kills + 1)
    stats_before = replica_set.server_stats()
    load = OneRowLoad(replica_set.url, frame, threads, prefix).start()
    killed = []
    for k in range(kills):
        time.sleep(period)
        victim = replica_set.replicas[k % len(replica_set.replicas)]
        victim.kill()
        killed.append({"replica": victim.name, "at_s": round(time.monotonic() - load._started, 2)})
        replica_set.restart(victim)
    time.sleep(period)
    result = load.stop()
    stats = replica_set.server_stats()
    answered = list(result.labels)
    missing_at_stop = len(answered) - len(replica_set.score_counts(answered))
    missing, counts = missing_from_log(replica_set, answered)
    before = labelled(replica_set.url)
    feedback = post_labels(replica_set.url, result.labels)
    after = labelled(replica_set.url)
    return {
        "replicas": len(replica_set.replicas),
        "client_threads": threads,
        "kills": killed,
        "seconds": round(result.seconds, 1),
        "answered": len(answered),
        "requests_per_s": round(result.requests_per_s, 1),
        "errors_seen_by_callers": len(result.errors),
        "error_examples": result.errors[:5],
        "caller_retries": result.retries,
        "haproxy_retries": counted(stats, stats_before, "wretr"),
        "haproxy_redispatches": counted(stats, stats_before, "wredis"),
        "missing_from_log_at_stop": missing_at_stop,
        "missing_from_log": len(missing),
        "missing_examples": missing[:5],
        "scored_more_than_once": sum(n > 1 for n in counts.values()),
        "feedback": feedback,
        "labelled_by_performance": after - before,
        "unique_labelled_ids": len(result.labels),
    }


def drain_under_load(
    replica_set: ReplicaSet,
    frame: pd.DataFrame,
    victim: Replica,
    *,
    threads: int = 4,
    warmup_s: float = 2.0,
    prefix: str = "drain",
) -> dict[str, Any]:
    """One-row load through HAProxy while `victim` gets SIGTERM (its main process, as from a
    container runtime); then `victim` is started again.

    Times from the signal, polled every 50 ms: HAProxy marks it DOWN (and the check status
    and code it saw), the replica stops answering ``/livez`` within 0.3 s, its port refuses
    connections, its process exits (BentoML's socket accepts, unserved, between the last two).
    """
    replica_set.wait_for(lambda states: all(s == "UP" for s in states.values()), "all UP")
    load = OneRowLoad(replica_set.url, frame, threads, prefix).start()
    time.sleep(warmup_s)
    assert victim.server is not None
    process = victim.server.process
    signalled = time.monotonic()
    victim.terminate()
    at: dict[str, float | None] = dict.fromkeys(("down", "unanswered", "refused", "exited"))
    check: dict[str, str] = {}

    def since() -> float:
        return round(time.monotonic() - signalled, 3)

    while at["refused"] is None and time.monotonic() - signalled < 120:
        if at["down"] is None:
            row = replica_set.server_stats()[victim.name]
            if row["status"].startswith("DOWN"):
                at["down"] = since()
                check = {"status": row["check_status"], "code": row["check_code"]}
        if at["unanswered"] is None:
            try:
                httpx.get(f"{victim.url}/livez", timeout=0.3).raise_for_status()
            except httpx.HTTPError:
                at["unanswered"] = since()
        if at["exited"] is None and process.poll() is not None:
            at["exited"] = since()
        try:
            socket.create_connection(("127.0.0.1", victim.port), timeout=0.3).close()
        except ConnectionRefusedError:
            at["refused"] = since()
        except OSError:  # a full backlog times out: not refused yet
            pass
        time.sleep(0.05)
    if at["down"] is None:  # noticed only after the port refused (or never: this raises)
        replica_set.wait_for(lambda states: states[victim.name].startswith("DOWN"), "DOWN")
        at["down"] = since()
        row = replica_set.server_stats()[victim.name]
        check = {"status": row["check_status"], "code": row["check_code"]}
    exit_code = process.wait(timeout=120)
    at["exited"] = at["exited"] if at["exited"] is not None else since()
    time.sleep(1.0)  # the load goes on without it
    result = load.stop()
    replica_set.restart(victim)
    return {
        "replica": victim.name,
        "drain_seconds": float(victim.env.get("FRAUD_DRAIN_SECONDS", "0")),
        "seconds_after_sigterm": at,
        "haproxy_check": check,
        "exit_code": exit_code,
        "answered": len(result.labels),
        "errors_seen_by_callers": len(result.errors),
        "error_examples": result.errors[:5],
        "caller_retries": result.retries,
    }


def markdown(results: dict[str, Any]) -> str:
    k = results["kill"]
    rows = [
        ("replicas behind HAProxy (one worker each), client threads",
         f"{k['replicas']}, {k['client_threads']}", ""),
        ("replicas SIGKILLed (arbiter and worker) under load, then restarted",
         ", ".join(f"{x['replica']} at {x['at_s']} s" for x in k["kills"]), ""),
        ("one-row requests answered", f"{k['answered']} in {k['seconds']} s "
         f"({k['requests_per_s']} req/s)", ""),
        ("errors seen by the callers", k["errors_seen_by_callers"], "0"),
        ("requests sent again: by HAProxy (to another replica); by the callers",
         f"{k['haproxy_redispatches']}; {k['caller_retries']}", ""),
        ("answered ids missing from the `scores` table (at the end of the load; after 5 s)",
         f"{k['missing_from_log_at_stop']}; {k['missing_from_log']}", "0"),
        ("answered ids scored more than once (a retry after a kill)",
         k["scored_more_than_once"], ""),
        ("labels stored by `/feedback`; of ids the log lacked", f"{k['feedback']['stored']}; "
         f"{k['feedback']['unmatched']}", f"{k['unique_labelled_ids']}; 0"),
        ("labelled transactions `/performance` gained", k["labelled_by_performance"],
         f"{k['unique_labelled_ids']} (each id once)"),
    ]  # fmt: skip
    if "drain" in results:
        d = results["drain"]
        at = d["seconds_after_sigterm"]
        check = d["haproxy_check"]
        rows += [
            (f"{d['replica']} SIGTERMed under load (FRAUD_DRAIN_SECONDS={d['drain_seconds']:g}), "
             "seconds after: HAProxy marks it DOWN; it stops answering; its port refuses; "
             "it exits",
             f"{at['down']} (check {check.get('status')} {check.get('code')}); "
             f"{at['unanswered']}; {at['refused']}; {at['exited']}", "DOWN first"),
            ("... errors seen by the callers; their retries",
             f"{d['errors_seen_by_callers']}; {d['caller_retries']}", "0 errors"),
        ]  # fmt: skip
    lines = [
        "# Replicas behind HAProxy: replicas killed and drained under load",
        "",
        f"{results['machine']}; {results['date']}; commit {results['commit']}; model "
        f"{results['model']}; rows: {results['rows']}; score log durability "
        f"{results['durability']}.",
        "",
        f"`{results['command']}`",
        "",
        "<!-- --8<-- [start:replicas] -->",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        *(f"| {m} | {v} | {t} |" for m, v, t in rows),
        "",
        "<!-- --8<-- [end:replicas] -->",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0, help="load, besides restarts")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--durability", default="commit", help="FRAUD_SCORE_LOG_DURABILITY")
    parser.add_argument(
        "--drain-seconds", type=float, default=3.0, help="FRAUD_DRAIN_SECONDS of every replica"
    )
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)

    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))  # BentoML's default
    frame = transactions(args.data, 20_000, seed=7)
    results: dict[str, Any] = {
        **run_header("benchmarks.replicas", argv, args.data),
        "durability": args.durability,
    }
    env = {"FRAUD_DRAIN_SECONDS": str(args.drain_seconds)}
    with (
        tempfile.TemporaryDirectory(prefix="replicas-") as tmp,
        ReplicaSet.start(
            Path(tmp), home, n=args.replicas, durability=args.durability, env=env
        ) as replica_set,
    ):
        results["model"] = httpx.get(f"{replica_set.url}/model/info", timeout=10).json()["model"]
        results["kill"] = kill_under_load(
            replica_set, frame, kills=args.kills, seconds=args.seconds, threads=args.threads
        )
        victim = replica_set.replicas[1 % len(replica_set.replicas)]
        results["drain"] = drain_under_load(replica_set, frame, victim, threads=args.threads)
    return write_results(f"replicas-{args.name}", results, markdown(results))


if __name__ == "__main__":
    main()
