"""BentoML service: ``POST /predict`` scores card transactions with an ONNX fraud model.

Thin by design: request shape, batching and wiring. Scoring lives in `fraud_detection.scorer`,
validation in `fraud_detection.api_models` (and, on the hot path, its msgspec twin in
`fraud_detection.request_codec`, served by `fraud_detection.predict_route.FastPredictRoute`),
batching in `fraud_detection.batching.ZeroDelayBatcher`, drift logging in
`fraud_detection.drift_log`, online drift detection in `fraud_detection.drift` (results at
``GET /drift/summary`` and ``GET /drift/report``), the analysts' review queue in
`fraud_detection.review` (``GET /review``). Settings come from ``FRAUD_*``
environment variables (see `fraud_detection.settings.ServingSettings`). ``GET /model/info`` says
which model is served and its decision threshold's rule and value.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import Field

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.api_models import FEATURE_LIMIT
from fraud_detection.api_models import Explanation
from fraud_detection.api_models import Prediction
from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transaction_ids
from fraud_detection.api_models import transactions_to_array
from fraud_detection.batching import QueueTimeoutError
from fraud_detection.batching import ZeroDelayBatcher
from fraud_detection.console import ConsoleLimits
from fraud_detection.console import ConsoleRoutes
from fraud_detection.console import console_app
from fraud_detection.console.app import CONSOLE_PATH
from fraud_detection.draining import Draining
from fraud_detection.drift import ResultsDirectory
from fraud_detection.drift import drift_app
from fraud_detection.drift_log import CompositeDriftHook
from fraud_detection.drift_log import DriftHook
from fraud_detection.drift_log import DriftLogFiles
from fraud_detection.drift_log import DriftLogWriter
from fraud_detection.drift_log import NoDriftLog
from fraud_detection.drift_log import current_worker
from fraud_detection.explanations import ExplanationsUnavailable
from fraud_detection.explanations import ModelExplainers
from fraud_detection.http_guards import BearerAuth
from fraud_detection.http_guards import BodySizeLimit
from fraud_detection.http_guards import InFlightLimit
from fraud_detection.http_guards import JsonBodyOnly
from fraud_detection.http_guards import OpenAPICorrection
from fraud_detection.http_guards import RetryAfterOn503
from fraud_detection.http_guards import correct_openapi
from fraud_detection.http_guards import install_request_timeout
from fraud_detection.model_info import model_info_app
from fraud_detection.performance.metrics import PerformanceMonitor
from fraud_detection.performance.metrics import performance_metrics
from fraud_detection.performance.online import JudgedModel
from fraud_detection.performance.online import OnlinePerformance
from fraud_detection.performance.routes import OutcomeRoutes
from fraud_detection.performance.routes import Outcomes
from fraud_detection.performance.routes import OutcomesSlot
from fraud_detection.performance.routes import document_outcome_routes
from fraud_detection.predict_route import FastPredictRoute
from fraud_detection.predict_route import PredictHandler
from fraud_detection.predict_route import PredictHandlerSlot
from fraud_detection.request_codec import PredictionEncoder
from fraud_detection.request_codec import TransactionDecoder
from fraud_detection.review.queue import ReviewQueue
from fraud_detection.review.routes import ReviewRoutes
from fraud_detection.review.routes import ReviewSlot
from fraud_detection.review.routes import document_review_routes
from fraud_detection.review.store import ReviewStore
from fraud_detection.routing.router import ChampionChallenger
from fraud_detection.routing.router import ServedModel
from fraud_detection.routing.router import TrafficShares
from fraud_detection.routing.shadow import ShadowScorer
from fraud_detection.score_log.database import open_database
from fraud_detection.score_log.durable_writer import DurableScoreLogWriter
from fraud_detection.score_log.durable_writer import journal_folder
from fraud_detection.score_log.writer import ScoreLogWriter
from fraud_detection.scorer import OnnxScorer
from fraud_detection.settings import ServingSettings
from fraud_detection.stored_models import stored_model

if TYPE_CHECKING:
    from fraud_detection.drift.detector import DriftDetector

logger = logging.getLogger(__name__)
settings = ServingSettings.from_env()


fraud_model = stored_model(settings.model_tag)
challenger_model = (
    None if settings.challenger_tag is None else stored_model(settings.challenger_tag)
)


#: The worker's service instance puts its scorer here for `FastPredictRoute` to use.
predict_slot = PredictHandlerSlot()
#: ... and its score log and performance monitor here for ``/feedback`` and ``/performance``.
outcomes_slot = OutcomesSlot()
#: ... and its review queue here for ``/review``.
review_slot = ReviewSlot()


@bentoml.service(name="fraud_detector", **settings.service_config())
class FraudDetector:
    """Credit-card fraud scoring; concurrent requests share model calls (zero-delay batching)."""

    model = fraud_model
    # A class attribute, so `bentoml build` packs the challenger into the bento too.
    if challenger_model is not None:
        challenger = challenger_model

    def __init__(self) -> None:
        # Inside the service, the BentoModel class attribute resolves to the stored model.
        self.scorer = OnnxScorer.from_directory(
            self.model.path, intra_op_threads=settings.ort_threads
        )
        self.model_name = self.model.tag.name
        self.model_version = str(self.model.tag.version)
        self.champion_tag = f"{self.model_name}:{self.model_version}"
        self.drift_hook: DriftHook = CompositeDriftHook(self._drift_log(), self._drift_monitor())
        self.batcher = self._batcher(self._score_batch)
        champion = ServedModel(
            self.model_name, self.model_version, self.scorer.threshold, self.batcher.submit
        )
        self.challenger_scorer: OnnxScorer | None = None
        self.challenger_batcher: ZeroDelayBatcher | None = None
        served_challenger = None
        if challenger_model is not None:
            self.challenger_scorer = OnnxScorer.from_directory(
                challenger_model.stored.path, intra_op_threads=settings.ort_threads
            )
            self.challenger_batcher = self._batcher(self.challenger_scorer.predict_proba)
            served_challenger = ServedModel(
                challenger_model.stored.tag.name,
                str(challenger_model.stored.tag.version),
                self.challenger_scorer.threshold,
                self.challenger_batcher.submit,
            )
        models = {self.champion_tag: (self.scorer, self.model.path)}
        if challenger_model is not None and self.challenger_scorer is not None:
            models[str(challenger_model.stored.tag)] = (
                self.challenger_scorer,
                challenger_model.stored.path,
            )
        self.explainers = ModelExplainers(models, settings.explain)
        self.review_store: ReviewStore | None = None
        self.outcomes = self._outcomes(champion, served_challenger)
        outcomes_slot.outcomes = self.outcomes
        self.router = ChampionChallenger(
            champion,
            challenger=served_challenger,
            shares=TrafficShares(canary=settings.canary_share, shadow=settings.shadow_share),
            score_log=None if self.outcomes is None else self.outcomes.score_log,
            shadow=None if self.outcomes is None else self.outcomes.shadow,
            review_floor=None if self.review_store is None else settings.review.min_probability,
        )
        if self.review_store is not None:
            review_slot.queue = ReviewQueue(self.review_store, self.explainers.records)
        else:
            review_slot.off = (
                "the review queue is off (FRAUD_REVIEW=0)"
                if settings.score_log
                else "the review queue needs the score log (FRAUD_SCORE_LOG=0)"
            )
        self.encoder = PredictionEncoder(
            self.model_name,
            self.model_version,
            None if served_challenger is None else served_challenger.name,
            None if served_challenger is None else served_challenger.version,
        )
        predict_slot.attach(
            PredictHandler(
                decoder=TransactionDecoder(settings.max_rows),
                score=self.router.score,
                encoder=self.encoder,
                server_header=b"BentoML Service/fraud_detector",
            )
        )
        # Everything loaded so far (BentoML, pandas, Evidently, the model) lives as long as
        # the worker. Frozen, the collector stops rescanning it: each full collection took
        # 60-250 ms under load, and set the p99 (README Performance).
        gc.freeze()

    @staticmethod
    def _batcher(infer: Callable[[np.ndarray], np.ndarray]) -> ZeroDelayBatcher:
        return ZeroDelayBatcher(
            infer,
            # Batching off: every request is its own model call.
            max_batch_rows=settings.max_batch_size if settings.batching else 1,
            queue_timeout_s=settings.max_latency_ms / 1000,
        )

    def _outcomes(self, champion: ServedModel, challenger: ServedModel | None) -> Outcomes | None:
        """The score log, shadow scorer and performance monitor (None: FRAUD_SCORE_LOG=0)."""
        if not settings.score_log:
            return None
        database = open_database(settings.score_db_url)
        champion_tag = f"{champion.name}:{champion.version}"
        challenger_tag = None if challenger is None else f"{challenger.name}:{challenger.version}"
        durability = settings.resolved_durability
        housekeeping = None
        if settings.review.enabled:
            self.review_store = ReviewStore(
                database,
                lease_s=settings.review.lease_seconds,
                retention_s=settings.review.retention_s,
            )
            housekeeping = self.review_store.purge
        writer: ScoreLogWriter | None = None
        if durability != "async":
            try:
                writer = DurableScoreLogWriter(
                    database,
                    champion_tag,
                    challenger_tag,
                    journal_path=journal_folder(settings.monitor_log_path),
                    wait_for_commit=durability == "commit",
                    max_journal_bytes=settings.score_journal_max_mb << 20,
                    counters=performance_metrics(),
                    housekeeping=housekeeping,
                )
            except OSError as e:  # an unwritable monitoring folder must not stop serving
                logger.error(
                    "Score journal unavailable (%s): FRAUD_SCORE_LOG_DURABILITY=%s falls back "
                    "to async, and a killed worker loses its queued rows",
                    e,
                    durability,
                )
                performance_metrics().failures.inc()
        if writer is None:
            writer = ScoreLogWriter(
                database,
                champion_tag,
                challenger_tag,
                max_pending_rows=settings.score_log_max_pending,
                counters=performance_metrics(),
                housekeeping=housekeeping,
            )
        judged_challenger = None
        shadow = None
        if challenger is not None and self.challenger_scorer is not None:
            judged_challenger = JudgedModel.of_card(
                "challenger", challenger.name, challenger.version, self.challenger_scorer.card
            )
            if settings.shadow_share > 0:
                shadow = ShadowScorer(
                    self.challenger_scorer.predict_proba,
                    writer.submit_challenger if writer.durable else writer.submit,
                )
        performance = OnlinePerformance(
            database,
            JudgedModel.of_card("champion", champion.name, champion.version, self.scorer.card),
            judged_challenger,
            settings.performance,
        )
        return Outcomes(
            database=database,
            score_log=writer,
            monitor=PerformanceMonitor(performance, settings.performance_every_seconds),
            shadow=shadow,
            max_feedback_items=settings.feedback_max_items,
        )

    def _drift_log(self) -> DriftHook:
        if not settings.drift_log:
            return NoDriftLog()
        return DriftLogWriter(
            DriftLogFiles.under(settings.monitor_log_path),
            worker=current_worker(),
            keep_days=settings.drift_log_keep_days,
        )

    def _drift_monitor(self) -> DriftHook:
        if not settings.drift_detection:
            return NoDriftLog()
        from fraud_detection.drift.monitor import DriftMonitor  # loads scipy

        return DriftMonitor.for_model(
            self.model.path, str(self.model.tag), settings.drift, settings.drift_results_path
        )

    def _score_batch(self, features: np.ndarray) -> np.ndarray:
        """One model call for a merged batch (on the batcher's thread), then the drift hook."""
        scores = self.scorer.predict_proba(features)
        self.drift_hook.observe(features, scores)
        return scores

    @bentoml.on_shutdown
    def flush_drift_log(self) -> None:
        """Finish the running batches, write the drift and score rows still queued, stop the
        detector and the performance monitor."""
        predict_slot.detach()
        review_slot.queue = None
        self.batcher.close()
        if self.challenger_batcher is not None:
            self.challenger_batcher.close()
        if self.outcomes is not None:
            outcomes_slot.outcomes = None
            if self.outcomes.shadow is not None:
                self.outcomes.shadow.close()
            self.outcomes.score_log.close()
            self.outcomes.monitor.close()
        self.drift_hook.close()

    # Valid JSON bodies are answered by `FastPredictRoute` with the same batcher and the same
    # response; this method defines the API (OpenAPI, clients), answers bodies the fast
    # decoder refuses (pydantic names each bad field) and serves in-process callers.
    # The return type's explicit content type spares BentoML 1.4 from rebuilding the output's
    # JSON schema on every response to find it (12% of a worker's CPU, measured).
    @bentoml.api(route="/predict")
    async def predict(
        self,
        transactions: Annotated[
            list[Transaction],
            Field(min_length=1, max_length=settings.max_rows, examples=[[EXAMPLE_TRANSACTION]]),
        ],
    ) -> Annotated[list[Prediction], ContentType("application/json")]:
        """Fraud probability and decision for each transaction, in request order."""
        try:
            scored = await self.router.score(
                transactions_to_array(transactions), transaction_ids(transactions)
            )
        except QueueTimeoutError as e:
            raise bentoml.exceptions.ServiceUnavailable(str(e)) from e
        return [Prediction(**record) for record in self.encoder.records(scored)]

    # Sync: BentoML runs it in its thread pool, off the event loop that answers /predict, and
    # queues concurrent calls there (the explainer runs one request at a time anyway).
    @bentoml.api(route="/explain")
    def explain(
        self,
        transactions: Annotated[
            list[Transaction],
            Field(
                min_length=1,
                max_length=settings.explain_max_rows,
                examples=[[EXAMPLE_TRANSACTION]],
            ),
        ],
    ) -> Annotated[list[Explanation], ContentType("application/json")]:
        """Score, decision and Shapley attributions of the logit for each transaction."""
        features = transactions_to_array(transactions)
        ids = self.router.ids.complete(transaction_ids(transactions))
        try:  # the explainer is made at the first call (imports shap)
            records = self.explainers.records(self.champion_tag, features, ids)
        except ExplanationsUnavailable as e:
            raise bentoml.exceptions.BentoMLException(
                str(e), error_code=HTTPStatus(e.http_status)
            ) from e
        return [Explanation(**record) for record in records]


def report_detector() -> DriftDetector:
    """The detector behind ``/drift/report``, made at the first report (loads Evidently)."""
    from fraud_detection.drift.detector import DriftDetector

    return DriftDetector.for_model(
        fraud_model.stored.path, settings.drift, model=str(fraud_model.stored.tag)
    )


FraudDetector.mount_asgi_app(
    model_info_app(str(fraud_model.stored.tag), fraud_model.stored.path), path="/model"
)
FraudDetector.mount_asgi_app(
    drift_app(
        ResultsDirectory(settings.drift_results_path),
        settings.workers,
        str(fraud_model.stored.tag),
        detector=report_detector,
        enabled=settings.drift_detection,
    ),
    path="/drift",
)
FraudDetector.mount_asgi_app(
    console_app(
        ConsoleLimits(
            max_rows=settings.max_rows,
            explain_max_rows=settings.explain_max_rows,
            max_body_bytes=settings.max_body_bytes,
            feature_limit=FEATURE_LIMIT,
        ),
        example=EXAMPLE_TRANSACTION,
    ),
    path=CONSOLE_PATH,
)


def served_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document as ``/docs.json`` serves it (and the docs site renders it)."""
    return document_review_routes(document_outcome_routes(correct_openapi(document)))


install_request_timeout()  # BentoML's own leaks a timer per request
# Outermost first: ``GET /`` leads to the console; refuse unauthenticated callers before
# reading their bodies (the console's files are public: they hold no data).
FraudDetector.add_asgi_middleware(ConsoleRoutes)
if settings.api_token:
    FraudDetector.add_asgi_middleware(
        BearerAuth,
        token=settings.api_token,
        public_paths=settings.public_paths,
        public_prefixes=(f"{CONSOLE_PATH}/",),
    )
FraudDetector.add_asgi_middleware(InFlightLimit, max_in_flight=settings.max_in_flight)
FraudDetector.add_asgi_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
FraudDetector.add_asgi_middleware(JsonBodyOnly, paths=frozenset({"/predict", "/explain"}))
FraudDetector.add_asgi_middleware(RetryAfterOn503)
FraudDetector.add_asgi_middleware(OpenAPICorrection, correct=served_openapi)
FraudDetector.add_asgi_middleware(FastPredictRoute, slot=predict_slot)
FraudDetector.add_asgi_middleware(OutcomeRoutes, slot=outcomes_slot)
FraudDetector.add_asgi_middleware(ReviewRoutes, slot=review_slot)
# Innermost, where ``/readyz`` arrives (the routes above pass it on): after SIGTERM it answers
# 503 for FRAUD_DRAIN_SECONDS while requests are still served, so balancers let go first.
FraudDetector.add_asgi_middleware(Draining, seconds=settings.drain_seconds)
