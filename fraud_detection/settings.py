"""`ServingSettings`: the service's knobs, read once from the environment at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from fraud_detection.catalog import ModelKind
from fraud_detection.catalog import resolve_model
from fraud_detection.drift.config import DriftConfig
from fraud_detection.explanations import ExplainConfig
from fraud_detection.performance.config import PerformanceConfig
from fraud_detection.review.config import ReviewConfig

#: Folder under ``FRAUD_MONITOR_LOG_PATH`` where each worker publishes its drift results.
DRIFT_RESULTS_DIR = "fraud_drift"
#: The score log's SQLite file under ``FRAUD_MONITOR_LOG_PATH`` (when FRAUD_DB_URL is unset).
SCORE_DB_FILE = "fraud_scores.sqlite3"

#: Every variable `ServingSettings.from_env` reads: the settings field it sets (dotted for
#: nested configs; None where it has no field of its own) and what it means. The docs site's
#: Configuration page is generated from this table and the dataclass defaults, and a test holds
#: it to the variables `from_env` really reads.
ENVIRONMENT_VARIABLES: dict[str, tuple[str | None, str]] = {
    "FRAUD_MODEL": (
        "model",
        "the champion: a model kind (`mlp`, `distilbert`: the latest stored) or a stored tag "
        "(`fraud-mlp:<version>`)",
    ),
    "FRAUD_CHALLENGER": (
        "challenger",
        "a second model (kind or tag) scored in shadow, and deciding the canary share",
    ),
    "FRAUD_SHADOW_SHARE": (
        "shadow_share",
        "share of transactions the challenger also scores, off the response path",
    ),
    "FRAUD_CANARY_SHARE": (
        "canary_share",
        "share of transactions the challenger decides (their `model` field names it)",
    ),
    "FRAUD_SCORE_LOG": ("score_log", "`0` turns the score log, `/feedback` and `/performance` off"),
    "FRAUD_DB_URL": (
        "db_url",
        "score database: `postgresql://user:password@host/db`, or `sqlite:///<path>` "
        "(default: `fraud_scores.sqlite3` under FRAUD_MONITOR_LOG_PATH)",
    ),
    "FRAUD_SCORE_LOG_DURABILITY": (
        "score_log_durability",
        "when an answer may leave: `journal` (its rows are in the worker's on-disk journal; "
        "default with SQLite), `commit` (... and committed to the database; default with "
        "PostgreSQL), `async` (queued in memory: a killed worker loses them)",
    ),
    "FRAUD_SCORE_LOG_MAX_PENDING": (
        "score_log_max_pending",
        "`async` mode: score rows a worker queues in memory; beyond it, rows are dropped and "
        "counted",
    ),
    "FRAUD_SCORE_JOURNAL_MAX_MB": (
        "score_journal_max_mb",
        "durable modes: journal megabytes a worker keeps while the database is behind or down; "
        "beyond it, rows are dropped and counted",
    ),
    "FRAUD_FEEDBACK_MAX_ITEMS": ("feedback_max_items", "most labels in one `/feedback` request"),
    "FRAUD_PERFORMANCE_WINDOW_ROWS": (
        "performance.window_rows",
        "newest labelled transactions `/performance` judges the models on",
    ),
    "FRAUD_PERFORMANCE_WINDOW_DAYS": (
        "performance.window_days",
        "... scored within this many days",
    ),
    "FRAUD_RECALL_ALERT_MARGIN": (
        "performance.recall_alert_margin",
        "the recall alert fires below the card's validation recall minus this",
    ),
    "FRAUD_RECALL_ALERT_MIN_FRAUDS": (
        "performance.recall_alert_min_frauds",
        "... once the window holds at least this many labelled frauds",
    ),
    "FRAUD_PERFORMANCE_EVERY_SECONDS": (
        "performance_every_seconds",
        "how often each worker recomputes the online performance gauges",
    ),
    "FRAUD_REVIEW": (
        "review.enabled",
        "`0` turns the analyst review queue off: no features kept, `/review` answers 404",
    ),
    "FRAUD_REVIEW_MIN_PROBABILITY": (
        "review.min_probability",
        "a scored transaction is kept for review (with its 30 features) when decided fraud or "
        'its probability is at least this: 0.5 on calibrated models is "more likely fraud than '
        'not", the near misses below the served threshold',
    ),
    "FRAUD_REVIEW_RETENTION_DAYS": (
        "review.retention_days",
        "review rows scored longer ago than this are purged (by each worker, hourly)",
    ),
    "FRAUD_REVIEW_LEASE_SECONDS": (
        "review.lease_seconds",
        "how long an item listed or opened by a reviewer stays theirs alone",
    ),
    "FRAUD_MAX_BATCH_SIZE": ("max_batch_size", "most rows per batched ONNX call"),
    "FRAUD_MAX_LATENCY_MS": (
        "max_latency_ms",
        "longest a request may wait in the batcher's queue; past it, 503 + `Retry-After`",
    ),
    "FRAUD_MAX_ROWS": ("max_rows", "most transactions in one `/predict` request"),
    "FRAUD_MONITOR_LOG_PATH": (
        "monitor_log_path",
        "folder of the drift log (`fraud_transactions/data/rows.*.f64`) and drift results",
    ),
    "FRAUD_DRIFT_LOG": ("drift_log", "`0` turns the drift-logging hook off"),
    "FRAUD_DRIFT_LOG_KEEP_DAYS": ("drift_log_keep_days", "days of drift-log files kept"),
    "FRAUD_BATCHING": (
        "batching",
        "`0` scores each request on its own; `1` merges requests arriving during a model call",
    ),
    "FRAUD_WORKERS": (
        "workers",
        "HTTP worker processes, each with its own ONNX session; set it to the container's CPUs",
    ),
    "FRAUD_ORT_THREADS": (
        "ort_threads",
        "ONNX Runtime intra-op threads per worker (`0`: one per core)",
    ),
    "FRAUD_ACCESS_LOG": ("access_log", "`1` adds BentoML's per-request access log"),
    "FRAUD_TRACING": (
        "tracing",
        "`1` keeps `/predict` in BentoML's OpenTelemetry middleware (with an exporter)",
    ),
    "FRAUD_DRIFT_DETECTION": ("drift_detection", "`0` turns the online drift detector off"),
    "FRAUD_DRIFT_WINDOW_ROWS": ("drift.window_rows", "rows kept per worker for drift"),
    "FRAUD_DRIFT_MIN_ROWS": ("drift.min_rows", "no drift verdict from a smaller window"),
    "FRAUD_DRIFT_EVERY_ROWS": ("drift.every_rows", "a drift computation after this many rows"),
    "FRAUD_DRIFT_EVERY_SECONDS": (
        "drift.every_seconds",
        "... or after this many seconds with new rows, whichever first",
    ),
    "FRAUD_DRIFT_MAX_CPU_SHARE": (
        "drift.max_cpu_share",
        "cap on the drift thread's share of a worker's time",
    ),
    "FRAUD_DRIFT_METHOD": ("drift.method", "Evidently stattest for every feature and the score"),
    "FRAUD_DRIFT_THRESHOLD": ("drift.threshold", "the stattest's drift threshold"),
    "FRAUD_DRIFT_MIN_DRIFTED_FEATURES": (
        "drift.min_drifted_features",
        "drifted features that make a window drifted",
    ),
    "FRAUD_DRIFT_IGNORE_FEATURES": (
        "drift.ignore_features",
        'comma-separated features left out of drift (`""` monitors all 30)',
    ),
    "FRAUD_EXPLAIN_MAX_ROWS": ("explain_max_rows", "most transactions in one `/explain`"),
    "FRAUD_EXPLAIN_BACKGROUND_ROWS": (
        "explain.background_rows",
        "reference rows the explanations average over",
    ),
    "FRAUD_EXPLAIN_PERMUTATIONS": (
        "explain.permutations",
        "antithetic permutations per explained row (cost is proportional to it)",
    ),
    "FRAUD_EXPLAIN_SEED": ("explain.seed", "seed of the background sample and permutations"),
    "FRAUD_EXPLAIN_TOP_REASONS": ("explain.top_reasons", "reasons listed per transaction"),
    "FRAUD_MAX_BODY_BYTES": ("max_body_bytes", "largest request body; larger is 413"),
    "FRAUD_MAX_IN_FLIGHT": (
        "max_in_flight",
        "concurrent `/predict` requests per worker; beyond it 503 + `Retry-After` at once",
    ),
    "FRAUD_REQUEST_TIMEOUT_S": (
        "request_timeout_s",
        "a request not answered in this many seconds gets 504 and its work is cancelled",
    ),
    "FRAUD_API_TOKEN": (
        "api_token",
        "when set, `Authorization: Bearer <token>` is required except on the public paths",
    ),
    "FRAUD_API_TOKEN_FILE": (None, "a file holding the token (a mounted secret)"),
    "FRAUD_PUBLIC_PATHS": ("public_paths", "comma-separated paths that need no token"),
    "FRAUD_DRAIN_SECONDS": (
        "drain_seconds",
        "after SIGTERM, `/readyz` answers 503 this long while requests are still served, then "
        "the worker shuts down: above the balancer's time to notice (check interval x fall), "
        "below the platform's grace period (Kubernetes terminationGracePeriodSeconds)",
    ),
}


@dataclass(frozen=True)
class ServingSettings:
    """The service's settings; `from_env` reads them from ``FRAUD_*`` variables.

    `ENVIRONMENT_VARIABLES` names each variable, the field it sets and what it means (the docs'
    Configuration page is generated from it); the field defaults here are the defaults.
    """

    model: str = "mlp"
    challenger: str | None = None
    # DistilBERT costs 40-70x the MLP per row on CPU (100-120 us against 1.5-2.7 us in 64-row
    # calls, one thread): 5% of 1,000 rows/s is 1-2% of a core, and still ~7,000 frauds a day
    # scored by both models at the ULB fraud rate (docs/champion-challenger.md).
    shadow_share: float = 0.05
    canary_share: float = 0.0
    score_log: bool = True
    db_url: str | None = field(default=None, repr=False)  # may hold a password
    score_log_durability: str | None = None  # None: `resolved_durability` picks per backend
    score_log_max_pending: int = 100_000
    score_journal_max_mb: int = 1024
    feedback_max_items: int = 10_000
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    performance_every_seconds: float = 60.0
    review: ReviewConfig = field(default_factory=ReviewConfig)
    max_batch_size: int = 1024
    max_latency_ms: int = 1000
    max_rows: int = 10_000
    monitor_log_path: str = "monitoring"
    drift_log: bool = True
    drift_log_keep_days: int = 7
    batching: bool = True
    workers: int = 1
    ort_threads: int = 1
    access_log: bool = False
    max_body_bytes: int = 8 * 2**20
    max_in_flight: int = 64
    request_timeout_s: float = 30.0
    api_token: str | None = field(default=None, repr=False)  # never in logs or reprs
    public_paths: frozenset[str] = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
    drain_seconds: float = 0.0
    tracing: bool = False
    drift_detection: bool = True
    drift: DriftConfig = field(default_factory=DriftConfig)
    explain_max_rows: int = 100
    explain: ExplainConfig = field(default_factory=ExplainConfig)

    def __post_init__(self) -> None:
        for name in ("model", "challenger"):
            value = getattr(self, name)
            if value is not None:
                try:
                    resolve_model(value)
                except ValueError as e:
                    raise ValueError(f"FRAUD_{name.upper()}={value!r}: {e}") from e
        if self.challenger is not None and resolve_model(self.challenger)[1] == self.model_tag:
            raise ValueError(f"FRAUD_CHALLENGER names the champion itself ({self.model_tag})")
        for name in ("shadow_share", "canary_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"FRAUD_{name.upper()} must be in [0, 1], got {getattr(self, name)}"
                )
        if self.challenger is not None and not self.score_log:
            raise ValueError(
                "FRAUD_CHALLENGER needs the score log (its shadow scores go there): "
                "unset FRAUD_SCORE_LOG=0"
            )
        if self.score_log_durability not in (None, "async", "journal", "commit"):
            raise ValueError(
                f"FRAUD_SCORE_LOG_DURABILITY must be async, journal or commit, got "
                f"{self.score_log_durability!r}"
            )
        if self.canary_share > 0 and self.challenger is None:
            raise ValueError("FRAUD_CANARY_SHARE needs a FRAUD_CHALLENGER to route to")
        if not self.performance_every_seconds > 0:
            raise ValueError(
                f"FRAUD_PERFORMANCE_EVERY_SECONDS must be > 0, got {self.performance_every_seconds}"
            )
        if self.ort_threads < 0:
            raise ValueError(f"FRAUD_ORT_THREADS must be >= 0, got {self.ort_threads}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"FRAUD_REQUEST_TIMEOUT_S must be > 0, got {self.request_timeout_s}")
        if not self.drain_seconds >= 0:
            raise ValueError(f"FRAUD_DRAIN_SECONDS must be >= 0, got {self.drain_seconds}")
        if self.api_token is not None and not self.api_token.strip():
            raise ValueError("FRAUD_API_TOKEN (or its file) is empty")
        for name in (
            "max_batch_size",
            "max_latency_ms",
            "max_rows",
            "workers",
            "max_body_bytes",
            "max_in_flight",
            "drift_log_keep_days",
            "explain_max_rows",
            "score_log_max_pending",
            "score_journal_max_mb",
            "feedback_max_items",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"FRAUD_{name.upper()} must be >= 1, got {getattr(self, name)}")

    def service_config(self) -> dict[str, Any]:
        """Keyword arguments for ``@bentoml.service`` shared by every service of the bundle.

        Access logging and the OpenTelemetry middleware cost 14% and 40% of a worker's
        throughput on ``/predict`` (measured on 2 CPU cores); both are opt-in.
        """
        config: dict[str, Any] = {
            # Enforced by `http_guards.RequestTimeout`, which service.py puts in place of
            # BentoML's timeout middleware (see `install_request_timeout`).
            "traffic": {"timeout": self.request_timeout_s},
            "workers": self.workers,
            "logging": {"access": {"enabled": self.access_log}},
        }
        if not self.tracing:
            config["tracing"] = {"excluded_urls": "/predict"}
        return config

    @property
    def model_kind(self) -> ModelKind:
        return resolve_model(self.model)[0]

    @property
    def model_tag(self) -> str:
        return resolve_model(self.model)[1]

    @property
    def challenger_tag(self) -> str | None:
        return None if self.challenger is None else resolve_model(self.challenger)[1]

    @property
    def score_db_url(self) -> str:
        """FRAUD_DB_URL, or the SQLite file beside the drift log."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{Path(self.monitor_log_path).resolve() / SCORE_DB_FILE}"

    @property
    def resolved_durability(self) -> str:
        """FRAUD_SCORE_LOG_DURABILITY, or the backend's default: ``commit`` on PostgreSQL
        (replicas come and go; only the database outlives one), ``journal`` on SQLite (the
        database is a file beside the journal: a commit would protect nothing more)."""
        if self.score_log_durability is not None:
            return self.score_log_durability
        return "journal" if self.score_db_url.startswith("sqlite") else "commit"

    @property
    def drift_results_path(self) -> Path:
        """Where workers publish drift summaries and reports (beside the monitor log)."""
        return Path(self.monitor_log_path) / DRIFT_RESULTS_DIR

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServingSettings:
        """Build settings from ``FRAUD_*`` variables, naming the variable on a bad value."""
        defaults = cls()

        def converted(name: str, default: Any, convert: Any, kind: str) -> Any:
            raw = environ.get(name)
            if raw is None:
                return default
            try:
                return convert(raw)
            except ValueError as e:
                raise ValueError(f"{name}={raw!r} is not {kind}") from e

        def integer(name: str, default: int) -> int:
            return converted(name, default, int, "an integer")

        def flag(name: str, default: bool) -> bool:
            raw = environ.get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name}={raw!r} is not a flag; use 1 or 0")

        def number(name: str, default: float) -> float:
            return converted(name, default, float, "a number")

        def names(name: str, default: frozenset[str]) -> frozenset[str]:
            raw = environ.get(name)
            if raw is None:
                return default
            return frozenset(n.strip() for n in raw.split(",") if n.strip())

        def drift_config() -> DriftConfig:
            d = defaults.drift
            return DriftConfig(
                window_rows=integer("FRAUD_DRIFT_WINDOW_ROWS", d.window_rows),
                min_rows=integer("FRAUD_DRIFT_MIN_ROWS", d.min_rows),
                every_rows=integer("FRAUD_DRIFT_EVERY_ROWS", d.every_rows),
                every_seconds=number("FRAUD_DRIFT_EVERY_SECONDS", d.every_seconds),
                max_cpu_share=number("FRAUD_DRIFT_MAX_CPU_SHARE", d.max_cpu_share),
                method=environ.get("FRAUD_DRIFT_METHOD", d.method),
                threshold=number("FRAUD_DRIFT_THRESHOLD", d.threshold),
                min_drifted_features=integer(
                    "FRAUD_DRIFT_MIN_DRIFTED_FEATURES", d.min_drifted_features
                ),
                ignore_features=names("FRAUD_DRIFT_IGNORE_FEATURES", d.ignore_features),
            )

        def explain_config() -> ExplainConfig:
            e = defaults.explain
            return ExplainConfig(
                background_rows=integer("FRAUD_EXPLAIN_BACKGROUND_ROWS", e.background_rows),
                permutations=integer("FRAUD_EXPLAIN_PERMUTATIONS", e.permutations),
                seed=integer("FRAUD_EXPLAIN_SEED", e.seed),
                top_reasons=integer("FRAUD_EXPLAIN_TOP_REASONS", e.top_reasons),
            )

        def performance_config() -> PerformanceConfig:
            p = defaults.performance
            return PerformanceConfig(
                window_rows=integer("FRAUD_PERFORMANCE_WINDOW_ROWS", p.window_rows),
                window_days=number("FRAUD_PERFORMANCE_WINDOW_DAYS", p.window_days),
                recall_alert_margin=number("FRAUD_RECALL_ALERT_MARGIN", p.recall_alert_margin),
                recall_alert_min_frauds=integer(
                    "FRAUD_RECALL_ALERT_MIN_FRAUDS", p.recall_alert_min_frauds
                ),
            )

        def review_config() -> ReviewConfig:
            r = defaults.review
            return ReviewConfig(
                enabled=flag("FRAUD_REVIEW", r.enabled),
                min_probability=number("FRAUD_REVIEW_MIN_PROBABILITY", r.min_probability),
                retention_days=number("FRAUD_REVIEW_RETENTION_DAYS", r.retention_days),
                lease_seconds=number("FRAUD_REVIEW_LEASE_SECONDS", r.lease_seconds),
            )

        def api_token() -> str | None:
            if "FRAUD_API_TOKEN" in environ:
                return environ["FRAUD_API_TOKEN"]
            path = environ.get("FRAUD_API_TOKEN_FILE")
            if path is None:
                return None
            try:
                return Path(path).read_text().strip()
            except OSError as e:
                raise ValueError(f"FRAUD_API_TOKEN_FILE={path!r} cannot be read: {e}") from e

        return cls(
            model=environ.get("FRAUD_MODEL", defaults.model),
            challenger=environ.get("FRAUD_CHALLENGER") or defaults.challenger,
            shadow_share=number("FRAUD_SHADOW_SHARE", defaults.shadow_share),
            canary_share=number("FRAUD_CANARY_SHARE", defaults.canary_share),
            score_log=flag("FRAUD_SCORE_LOG", defaults.score_log),
            db_url=environ.get("FRAUD_DB_URL") or defaults.db_url,
            score_log_durability=environ.get("FRAUD_SCORE_LOG_DURABILITY")
            or defaults.score_log_durability,
            score_log_max_pending=integer(
                "FRAUD_SCORE_LOG_MAX_PENDING", defaults.score_log_max_pending
            ),
            score_journal_max_mb=integer(
                "FRAUD_SCORE_JOURNAL_MAX_MB", defaults.score_journal_max_mb
            ),
            feedback_max_items=integer("FRAUD_FEEDBACK_MAX_ITEMS", defaults.feedback_max_items),
            performance=performance_config(),
            performance_every_seconds=number(
                "FRAUD_PERFORMANCE_EVERY_SECONDS", defaults.performance_every_seconds
            ),
            review=review_config(),
            max_batch_size=integer("FRAUD_MAX_BATCH_SIZE", defaults.max_batch_size),
            max_latency_ms=integer("FRAUD_MAX_LATENCY_MS", defaults.max_latency_ms),
            max_rows=integer("FRAUD_MAX_ROWS", defaults.max_rows),
            monitor_log_path=environ.get("FRAUD_MONITOR_LOG_PATH", defaults.monitor_log_path),
            drift_log=flag("FRAUD_DRIFT_LOG", defaults.drift_log),
            drift_log_keep_days=integer("FRAUD_DRIFT_LOG_KEEP_DAYS", defaults.drift_log_keep_days),
            batching=flag("FRAUD_BATCHING", defaults.batching),
            workers=integer("FRAUD_WORKERS", defaults.workers),
            ort_threads=integer("FRAUD_ORT_THREADS", defaults.ort_threads),
            access_log=flag("FRAUD_ACCESS_LOG", defaults.access_log),
            tracing=flag("FRAUD_TRACING", defaults.tracing),
            drift_detection=flag("FRAUD_DRIFT_DETECTION", defaults.drift_detection),
            drift=drift_config(),
            explain_max_rows=integer("FRAUD_EXPLAIN_MAX_ROWS", defaults.explain_max_rows),
            explain=explain_config(),
            max_body_bytes=integer("FRAUD_MAX_BODY_BYTES", defaults.max_body_bytes),
            max_in_flight=integer("FRAUD_MAX_IN_FLIGHT", defaults.max_in_flight),
            request_timeout_s=number("FRAUD_REQUEST_TIMEOUT_S", defaults.request_timeout_s),
            api_token=api_token(),
            public_paths=frozenset(
                p.strip() for p in environ["FRAUD_PUBLIC_PATHS"].split(",") if p.strip()
            )
            if "FRAUD_PUBLIC_PATHS" in environ
            else defaults.public_paths,
            drain_seconds=number("FRAUD_DRAIN_SECONDS", defaults.drain_seconds),
        )
