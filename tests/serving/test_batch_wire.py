"""The byte-level PredictBatch paths agree with the protobuf library on every layout."""

from __future__ import annotations

import numpy as np
import pytest

from ml_platform.serving.adapters.batch_wire import (
    encode_batch_response,
    parse_batch_request,
    serialize_batch_response,
    uniform_rows,
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


def per_value(
    rows: np.ndarray, names: list[str] | None, **batch: str
) -> serving_pb2.PredictBatchRequest:
    """The seed's encoding: one float_value Feature per value, named or positional."""
    return serving_pb2.PredictBatchRequest(
        requests=[
            serving_pb2.PredictRequest(
                features=[
                    serving_pb2.Feature(name=names[j] if names else "", float_value=float(v))
                    for j, v in enumerate(r)
                ]
            )
            for r in rows
        ],
        **batch,
    )


def signature(n: int) -> dict[str, int]:
    return {f"feature_{i}": i for i in range(n)}


def sample(n: int) -> np.ndarray:
    rows = np.random.default_rng(n).normal(0, 1e3, size=(37, n)).astype(np.float32)
    rows[0, 0] = np.nan
    rows[1, -1] = -0.0
    return rows


def read(request: serving_pb2.PredictBatchRequest, n: int) -> np.ndarray | None:
    """Through the gRPC deserializer (bytes kept), checked against re-serializing."""
    received = parse_batch_request(request.SerializeToString())
    assert received.message == request
    got = uniform_rows(received.message, signature(n), received.data)
    again = uniform_rows(received.message, signature(n))
    assert (got is None) == (again is None)
    assert got is None or again is None or np.array_equal(got, again, equal_nan=True)
    return got


@pytest.mark.parametrize("n", [1, 3, 20, 40, 300])  # 40 and 300: multi-byte length varints
@pytest.mark.parametrize("batch", [{}, {"model_id": "rf", "version": "prod"}])
def test_compact_rows_are_read_exactly_from_the_wire(n: int, batch: dict[str, str]) -> None:
    rows = sample(n)
    got = read(compact(rows, **batch), n)
    assert got is not None and got.dtype == np.float32 and got.shape == (37, n)
    assert np.array_equal(got, rows, equal_nan=True)
    assert np.signbit(got[1, -1])


@pytest.mark.parametrize("n", [1, 3, 20, 300])
@pytest.mark.parametrize("batch", [{}, {"model_id": "rf", "version": "prod"}])
def test_seed_per_value_rows_are_read_exactly_named_in_any_order_or_positional(
    n: int, batch: dict[str, str]
) -> None:
    rows = sample(n)
    got = read(per_value(rows, None, **batch), n)
    assert got is not None and np.array_equal(got, rows, equal_nan=True)
    order = np.random.default_rng(7).permutation(n)  # every item sends this order
    names = [f"feature_{i}" for i in order]
    got = read(per_value(rows[:, order], names, **batch), n)
    assert got is not None and np.array_equal(got, rows, equal_nan=True)
    assert np.signbit(got[1, -1])


def test_other_layouts_take_the_per_item_path() -> None:
    rows = np.ones((4, 3), dtype=np.float32)
    good = compact(rows, model_id="m")
    assert read(good, 3) is not None
    assert read(good, 4) is None  # wrong width
    assert read(serving_pb2.PredictBatchRequest(model_id="m"), 3) is None  # empty

    def edited(base: serving_pb2.PredictBatchRequest) -> serving_pb2.PredictBatchRequest:
        copy = serving_pb2.PredictBatchRequest()
        copy.CopyFrom(base)
        return copy

    named = edited(good)
    named.requests[0].features[0].name = "x"
    assert read(named, 3) is None
    later_named = edited(good)
    later_named.requests[2].features[0].name = "x"  # only the bytes show it
    assert read(later_named, 3) is None
    with_model = edited(good)
    with_model.requests[3].model_id = "m"
    assert read(with_model, 3) is None
    short = edited(good)
    short.requests[1].features[0].float_array.values.pop()
    short.requests[2].features[0].float_array.values.append(1.0)  # same total size
    assert read(short, 3) is None
    extra = edited(good)
    extra.requests[1].features.add(float_value=1.0)
    assert read(extra, 3) is None

    names = ["feature_0", "feature_1", "feature_2"]
    seed = per_value(rows, names)
    assert read(seed, 3) is not None
    swapped = edited(seed)  # another order in one item: same size, other bytes
    swapped.requests[2].features[0].name = "feature_1"
    swapped.requests[2].features[1].name = "feature_0"
    assert read(swapped, 3) is None
    as_int = edited(seed)
    as_int.requests[3].features[1].int_value = 1
    assert read(as_int, 3) is None
    unknown = per_value(rows, ["feature_0", "feature_1", "nope"])
    assert read(unknown, 3) is None
    twice = per_value(rows, ["feature_0", "feature_1", "feature_1"])
    assert read(twice, 3) is None
    mixed = per_value(rows, None)
    mixed.requests[0].features[2].name = "feature_2"  # partly named: the per-item path says so
    assert read(mixed, 3) is None
    assert read(per_value(rows[:, :2], None), 3) is None  # too few values


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


def test_bytes_in_another_field_order_take_the_per_item_path() -> None:
    rows = np.ones((2, 3), dtype=np.float32)
    data = (
        compact(rows).SerializeToString()
        + serving_pb2.PredictBatchRequest(model_id="m").SerializeToString()
    )
    received = parse_batch_request(data)  # valid protobuf, model_id after the items
    assert received.message.model_id == "m" and len(received.message.requests) == 2
    assert uniform_rows(received.message, signature(3), received.data) is None
    assert uniform_rows(received.message, signature(3)) is not None  # re-serialized: canonical
