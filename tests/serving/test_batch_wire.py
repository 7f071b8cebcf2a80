"""The byte-level PredictBatch paths agree with the protobuf library on every layout."""

from __future__ import annotations

import numpy as np
import pytest

from ml_platform.serving.batch_wire import (
    encode_batch_response,
    float_array_rows,
    serialize_batch_response,
)
from ml_platform.serving.proto import serving_pb2
from ml_platform.serving.runtimes.base import Prediction


def compact(rows: np.ndarray, **batch: str) -> serving_pb2.PredictBatchRequest:
    return serving_pb2.PredictBatchRequest(
        requests=[
            serving_pb2.PredictRequest(
                features=[serving_pb2.Feature(float_array=serving_pb2.FloatArray(values=r))]
            )
            for r in rows
        ],
        **batch,
    )


@pytest.mark.parametrize("n", [1, 3, 20, 40, 300])  # 40 and 300: multi-byte length varints
@pytest.mark.parametrize("batch", [{}, {"model_id": "rf", "version": "prod"}])
def test_compact_rows_are_read_exactly_from_the_wire(n: int, batch: dict[str, str]) -> None:
    rows = np.random.default_rng(n).normal(0, 1e3, size=(37, n)).astype(np.float32)
    rows[0, 0] = np.nan
    rows[1, -1] = -0.0
    request = serving_pb2.PredictBatchRequest.FromString(compact(rows, **batch).SerializeToString())
    got = float_array_rows(request, n)
    assert got is not None and got.dtype == np.float32 and got.shape == (37, n)
    assert np.array_equal(got, rows, equal_nan=True)
    assert np.signbit(got[1, -1])


def test_other_layouts_take_the_per_item_path() -> None:
    rows = np.ones((4, 3), dtype=np.float32)
    good = compact(rows, model_id="m")
    assert float_array_rows(good, 3) is not None
    assert float_array_rows(good, 4) is None  # wrong width
    assert float_array_rows(serving_pb2.PredictBatchRequest(model_id="m"), 3) is None  # empty

    named = serving_pb2.PredictBatchRequest()
    named.CopyFrom(good)
    named.requests[0].features[0].name = "x"
    assert float_array_rows(named, 3) is None

    later_named = serving_pb2.PredictBatchRequest()
    later_named.CopyFrom(good)
    later_named.requests[2].features[0].name = "x"  # only the bytes show it
    assert float_array_rows(later_named, 3) is None

    with_model = serving_pb2.PredictBatchRequest()
    with_model.CopyFrom(good)
    with_model.requests[3].model_id = "m"
    assert float_array_rows(with_model, 3) is None

    short = serving_pb2.PredictBatchRequest()
    short.CopyFrom(good)
    short.requests[1].features[0].float_array.values.pop()
    short.requests[2].features[0].float_array.values.append(1.0)  # same total size
    assert float_array_rows(short, 3) is None

    extra = serving_pb2.PredictBatchRequest()
    extra.CopyFrom(good)
    extra.requests[1].features.add(float_value=1.0)
    assert float_array_rows(extra, 3) is None

    scalars = serving_pb2.PredictBatchRequest(
        requests=[serving_pb2.PredictRequest(features=[serving_pb2.Feature(float_value=1.0)])]
    )
    assert float_array_rows(scalars, 1) is None


def message_path(pred: Prediction, version: str, latency: int) -> serving_pb2.PredictBatchResponse:
    responses = []
    for i in range(len(pred)):
        resp = serving_pb2.PredictResponse(
            predictions=[float(pred.values[i])],
            latency_microseconds=latency,
            model_version_used=version,
        )
        if pred.probabilities is not None:
            for label, p in zip(pred.labels, pred.probabilities[i].tolist(), strict=True):
                resp.confidence_scores[label] = p
        responses.append(resp)
    return serving_pb2.PredictBatchResponse(responses=responses, total_latency_microseconds=latency)


@pytest.mark.parametrize("latency", [0, 5, 300, 10**9])
@pytest.mark.parametrize("version", ["", "1", "12345678901"])
def test_batch_response_bytes_parse_as_the_message_path(latency: int, version: str) -> None:
    rng = np.random.default_rng(latency)
    probs = rng.dirichlet(np.ones(3), size=50)
    pred = Prediction(probs.argmax(axis=1).astype(np.float64), probs, ("a", "b", "long-label"))
    raw = encode_batch_response(pred, version, latency, latency)
    assert serving_pb2.PredictBatchResponse.FromString(raw) == message_path(pred, version, latency)
    assert serialize_batch_response(raw) is raw

    regression = Prediction(rng.normal(size=7))
    raw = encode_batch_response(regression, version, latency, latency)
    want = message_path(regression, version, latency)
    assert serving_pb2.PredictBatchResponse.FromString(raw) == want
    assert serialize_batch_response(want) == want.SerializeToString()
