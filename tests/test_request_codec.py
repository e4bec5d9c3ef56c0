"""The hot path's msgspec decoder accepts exactly what the pydantic request model accepts."""

from __future__ import annotations

import json
from typing import Annotated
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic import Field
from pydantic import TypeAdapter
from pydantic import ValidationError

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.api_models import FEATURE_LIMIT
from fraud_detection.api_models import Prediction
from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transaction_ids
from fraud_detection.api_models import transactions_to_array
from fraud_detection.request_codec import PredictionEncoder
from fraud_detection.request_codec import TransactionDecoder
from fraud_detection.routing.router import RoutedScores
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES

MAX_ROWS = 5
#: Names to break, weighted towards the features with a different range (>= 0).
BREAKABLE = (*FEATURE_NAMES, *sorted(NON_NEGATIVE_FEATURES) * 10)


class PydanticRequest(BaseModel):
    """The body model BentoML builds from `service.FraudDetector.predict`'s signature."""

    transactions: Annotated[list[Transaction], Field(min_length=1, max_length=MAX_ROWS)]


def pydantic_features(body: bytes) -> tuple[np.ndarray, list[str | None]] | None:
    try:
        request = PydanticRequest.model_validate_json(body)
    except ValidationError:
        return None
    return transactions_to_array(request.transactions), transaction_ids(request.transactions)


#: Ids on both sides of the rule (1-64 visible ASCII characters), and ones of the wrong type.
IDS = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=66),
    st.sampled_from(["", " ", "a b", "tab\t", "é", "x" * 64, "x" * 65, "ok-1:2/3"]),
    st.integers(),
    st.none(),
    st.booleans(),
)


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2 * FEATURE_LIMIT, max_value=2 * FEATURE_LIMIT),
    st.sampled_from([0.0, -0.0, FEATURE_LIMIT, -FEATURE_LIMIT, 1e300, -1e-300, 5e-324]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.floats(allow_nan=False), max_size=2),
)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {
        name: draw(st.floats(min_value=0, max_value=1e6)) for name in FEATURE_NAMES
    }
    for name in draw(st.lists(st.sampled_from(BREAKABLE), max_size=3)):
        row[name] = draw(values)
    if draw(st.booleans()):
        row.pop(draw(st.sampled_from(FEATURE_NAMES)))
    if draw(st.integers(0, 9)) == 0:
        row[draw(st.sampled_from(["merchant", "v1", "Class"]))] = 1.0
    if draw(st.booleans()):
        row["transaction_id"] = draw(IDS)
    return row


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:
        return json.dumps({"rows": [EXAMPLE_TRANSACTION]}).encode()
    if kind == 2:
        return json.dumps({"transactions": EXAMPLE_TRANSACTION}).encode()
    body: dict[str, Any] = {"transactions": draw(st.lists(rows(), max_size=MAX_ROWS + 1))}
    if draw(st.integers(0, 9)) == 0:
        body["note"] = "top-level extras are ignored by both"
    return json.dumps(body).encode()


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_fast_decoder_accepts_and_reads_exactly_what_pydantic_does(body: bytes) -> None:
    fast = TransactionDecoder(MAX_ROWS).decode(body)
    reference = pydantic_features(body)
    assert (fast is None) == (reference is None), body
    if fast is not None:
        assert reference is not None
        np.testing.assert_array_equal(fast.features, reference[0])
        assert fast.transaction_ids == reference[1]
        assert fast.features.dtype == np.float32 and fast.features.shape[1] == len(FEATURE_NAMES)


@pytest.mark.parametrize(
    "body",
    [
        b'{"transactions": [{"Time": NaN}]}',
        b'{"transactions": []}',
        b"",
        b"{}",
        json.dumps({"transactions": [EXAMPLE_TRANSACTION] * (MAX_ROWS + 1)}).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "Amount": -0.01}]}).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "V7": "1.0"}]}).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "V7": True}]}).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "extra": 1.0}]}).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "transaction_id": ""}]}).encode(),
        json.dumps(
            {"transactions": [{**EXAMPLE_TRANSACTION, "transaction_id": "a" * 65}]}
        ).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "transaction_id": "a b"}]}).encode(),
        json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "transaction_id": 7}]}).encode(),
    ],
)
def test_bodies_broken_in_known_ways_are_refused(body: bytes) -> None:
    assert TransactionDecoder(MAX_ROWS).decode(body) is None
    assert pydantic_features(body) is None


def test_rows_come_out_in_schema_order_whatever_the_key_order() -> None:
    row = {name: float(i) for i, name in reversed(list(enumerate(FEATURE_NAMES)))}
    decoded = TransactionDecoder(MAX_ROWS).decode(json.dumps({"transactions": [row]}).encode())
    assert decoded is not None
    np.testing.assert_array_equal(decoded.features[0], np.arange(len(FEATURE_NAMES)))


def test_encoded_answer_is_the_prediction_list_in_order_with_ids() -> None:
    scores = np.array([0.1, 0.5, 0.50001, 0.99], dtype=np.float32)
    routed = RoutedScores(["a", "b", "c", "d"], scores, scores >= 0.5, None)
    encoded = PredictionEncoder("fraud-mlp", "v1").encode(routed)
    parsed = TypeAdapter(list[Prediction]).validate_json(encoded)
    assert [p.transaction_id for p in parsed] == ["a", "b", "c", "d"]
    assert [p.is_fraud for p in parsed] == [False, True, True, True]
    assert [p.fraud_probability for p in parsed] == scores.tolist()
    assert {(p.model, p.model_version) for p in parsed} == {("fraud-mlp", "v1")}


def test_canary_rows_name_the_challenger_that_decided_them() -> None:
    scores = np.array([0.1, 0.9, 0.2], dtype=np.float32)
    by_challenger = np.array([False, True, False])
    routed = RoutedScores(["a", "b", "c"], scores, scores >= 0.5, by_challenger)
    parsed = PredictionEncoder("fraud-mlp", "v1", "fraud-distilbert", "v9").records(routed)
    assert [(p["model"], p["model_version"]) for p in parsed] == [
        ("fraud-mlp", "v1"),
        ("fraud-distilbert", "v9"),
        ("fraud-mlp", "v1"),
    ]
