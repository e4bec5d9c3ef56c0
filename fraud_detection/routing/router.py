"""`ChampionChallenger`: scores a request with the champion, the canary share with the
challenger, and records every transaction in the score log (the shadow share via the
challenger's thread), with the features of the rows kept for the review queue."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fraud_detection.routing.shadow import ShadowScorer
from fraud_detection.routing.transaction_ids import TransactionIdAssigner
from fraud_detection.routing.transaction_ids import traffic_buckets
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.score_log.writer import ReviewRows
from fraud_detection.score_log.writer import ScoredBatch
from fraud_detection.score_log.writer import ScoreLogWriter

AMOUNT_COLUMN = FEATURE_NAMES.index("Amount")

Score = Callable[[np.ndarray], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class ServedModel:
    """A model as the router sees it: store name, version, decision threshold, batched scorer."""

    name: str
    version: str
    threshold: float
    score: Score


@dataclass(frozen=True)
class RoutedScores:
    """What a request's transactions were answered with, in request order."""

    transaction_ids: list[str]
    probabilities: np.ndarray
    is_fraud: np.ndarray
    by_challenger: np.ndarray | None  # None: the champion answered every row


@dataclass(frozen=True)
class TrafficShares:
    """Shares of transactions the challenger decides (canary) or only scores (shadow)."""

    canary: float = 0.0
    shadow: float = 0.0


#: The rows of a one-row batch kept for review (read only).
ONE_ROW = np.zeros(1, dtype=np.intp)
ONE_ROW.flags.writeable = False


class ChampionChallenger:
    """Routes each request's rows; with no challenger and no log, it is the champion alone.

    With `review_floor` set, a logged row decided fraud or served a probability at or above
    it keeps its features for the review queue (`ScoredBatch.review`).
    """

    def __init__(
        self,
        champion: ServedModel,
        *,
        challenger: ServedModel | None = None,
        shares: TrafficShares = TrafficShares(),
        score_log: ScoreLogWriter | None = None,
        shadow: ShadowScorer | None = None,
        review_floor: float | None = None,
    ) -> None:
        self.champion = champion
        self.review_floor = review_floor
        self.challenger = challenger
        self.shares = shares
        self.score_log = score_log
        self.shadow = shadow
        self.ids = TransactionIdAssigner()

    async def score(
        self, features: np.ndarray, transaction_ids: Sequence[str | None] | None = None
    ) -> RoutedScores:
        """Score `features`; ids missing from `transaction_ids` (or all, when None) are made."""
        ids = (
            self.ids.new(len(features))
            if transaction_ids is None
            else self.ids.complete(transaction_ids)
        )
        champion_p = await self.champion.score(features)
        is_fraud = champion_p >= self.champion.threshold
        if self.challenger is None:
            receipt = self._record(
                ids, features, champion_p, champion_p, is_fraud, None, None, None
            )
            if receipt is not None:
                await receipt
            return RoutedScores(ids, champion_p, is_fraud, None)
        buckets = traffic_buckets(ids)
        canary = buckets < self.shares.canary
        challenger_p = None
        probabilities = champion_p
        if canary.any():
            canary_p = await self.challenger.score(features[canary])
            challenger_p = np.full(len(ids), np.nan)
            challenger_p[canary] = canary_p
            probabilities = champion_p.copy()
            probabilities[canary] = canary_p
            is_fraud = is_fraud.copy()
            is_fraud[canary] = canary_p >= self.challenger.threshold
        shadow_rows = np.flatnonzero((buckets < self.shares.shadow) & ~canary)
        receipt = self._record(
            ids, features, champion_p, probabilities, is_fraud, canary, challenger_p, shadow_rows
        )
        if receipt is not None:
            await receipt
        return RoutedScores(ids, probabilities, is_fraud, canary)

    def _record(
        self,
        ids: list[str],
        features: np.ndarray,
        champion_p: np.ndarray,
        served_p: np.ndarray,
        is_fraud: np.ndarray,
        by_challenger: np.ndarray | None,
        challenger_p: np.ndarray | None,
        shadow_rows: np.ndarray | None,
    ) -> Awaitable[None] | None:
        """Hand the rows to the score log; returns what the answer must wait for, if any."""
        if self.score_log is None:
            return None
        batch = ScoredBatch(
            ids,
            time.time(),
            champion_p,
            is_fraud,
            by_challenger,
            features[:, AMOUNT_COLUMN],
            challenger_p,
            self._kept_for_review(features, served_p, is_fraud),
        )
        if self.shadow is None or shadow_rows is None or not len(shadow_rows):
            return self.score_log.submit(batch)
        if not self.score_log.durable:  # the shadow's thread logs the batch with its scores
            self.shadow.submit(batch, shadow_rows, features[shadow_rows])
            return None
        receipt = self.score_log.submit(batch)  # the decision now, the shadow's scores later
        self.shadow.submit(batch, shadow_rows, features[shadow_rows])
        return receipt

    def _kept_for_review(
        self, features: np.ndarray, served_p: np.ndarray, is_fraud: np.ndarray
    ) -> ReviewRows | None:
        """The rows to keep for review: one vectorised comparison per batch, and nothing
        more when none is kept (most batches, at the real fraud rate)."""
        if self.review_floor is None:
            return None
        if len(served_p) == 1:
            # Most requests hold one row: plain scalar tests, no numpy call (three ufunc
            # calls on one-element arrays cost ~4% of a one-row request, py-spy).
            if served_p[0] < self.review_floor and not is_fraud[0]:
                return None
            return ReviewRows(ONE_ROW, features)
        kept = served_p >= self.review_floor
        kept |= is_fraud  # (a threshold under the floor decides fraud below it)
        if not kept.any():
            return None
        rows = kept.nonzero()[0]
        return ReviewRows(rows, features[rows])
