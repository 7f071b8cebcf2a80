"""PredictBatch on the wire: rows in and answers out without per-value Python work.

The seed's ``PredictBatch`` carries each row as a nested ``PredictRequest``. Reading 1,000 of
them through the protobuf API costs a few microseconds per item, more than a vectorized model
call. Two layouts are regular enough to handle as bytes with numpy instead:

* Requests whose every item is exactly one unnamed ``Feature`` holding a ``FloatArray`` of the
  model's width (the compact encoding: one feature per row, not one per value) serialize to
  identical bytes except for the floats. ``float_array_rows`` checks every non-float byte
  against that template and reads the floats with ``np.frombuffer``; anything else returns
  ``None`` and the caller takes the per-item path.
* Answers for a batch with no failed item all have one layout (one prediction, one score per
  label, the same latency and version), so ``encode_batch_response`` writes the whole
  ``PredictBatchResponse`` as a byte template with the floats filled in by numpy.

Both are checked against the protobuf library in ``tests/serving/test_batch_wire.py``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ml_platform.serving.proto import serving_pb2
from ml_platform.serving.runtimes.base import Prediction

_F32 = np.dtype("<f4")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@lru_cache(maxsize=64)
def _float_array_item(n: int) -> tuple[bytes, int]:
    """(bytes before the floats, total size) of one ``requests`` entry holding n floats."""
    item = serving_pb2.PredictRequest(
        features=[serving_pb2.Feature(float_array=serving_pb2.FloatArray(values=[0.0] * n))]
    ).SerializeToString()
    entry = _field(3, item)  # PredictBatchRequest.requests = 3
    return entry[: len(entry) - 4 * n], len(entry)


def float_array_rows(
    request: serving_pb2.PredictBatchRequest, n: int
) -> npt.NDArray[np.float32] | None:
    """The batch as a (k, n) float32 array when it uses the compact layout, else None."""
    items = request.requests
    k = len(items)
    if k == 0 or n == 0:
        return None
    first = items[0]  # cheap rejection before touching the bytes
    if first.model_id or first.version or len(first.features) != 1:
        return None
    feature = first.features[0]
    if feature.name or feature.WhichOneof("value") != "float_array":
        return None
    head, stride = _float_array_item(n)
    prefix = serving_pb2.PredictBatchRequest(
        model_id=request.model_id, version=request.version
    ).SerializeToString()
    data = request.SerializeToString()
    if len(data) != len(prefix) + k * stride or not data.startswith(prefix):
        return None
    entries = np.frombuffer(data, dtype=np.uint8, offset=len(prefix)).reshape(k, stride)
    if not np.array_equal(
        entries[:, : len(head)], np.broadcast_to(np.frombuffer(head, np.uint8), (k, len(head)))
    ):
        return None
    return np.ascontiguousarray(entries[:, len(head) :]).view(_F32).reshape(k, n)


@lru_cache(maxsize=256)
def _response_template(
    labels: tuple[str, ...], version: str, latency_us: int
) -> tuple[bytes, int, tuple[int, ...]]:
    """(one ``responses`` entry with zero floats, offset of the prediction, score offsets)."""
    body = bytearray(_field(1, bytes(4)))  # predictions: packed, one float
    prediction_at = len(body) - 4
    score_at = []
    for label in labels:  # confidence_scores: one map entry per label
        entry = _field(1, label.encode()) + b"\x15" + bytes(4)  # key = 1, value = 2 (fixed32)
        body += _field(2, entry)
        score_at.append(len(body) - 4)
    if latency_us:
        body += b"\x18" + _varint(latency_us)  # latency_microseconds = 3
    if version:
        body += _field(4, version.encode())  # model_version_used = 4
    entry = _field(1, bytes(body))  # PredictBatchResponse.responses = 1
    shift = len(entry) - len(body)
    return entry, prediction_at + shift, tuple(at + shift for at in score_at)


def encode_batch_response(
    pred: Prediction, version: str, latency_us: int, total_latency_us: int
) -> bytes:
    """A serialized ``PredictBatchResponse`` with one answer per row of ``pred``."""
    k = len(pred)
    probs = pred.probabilities
    labels = pred.labels if probs is not None else ()
    template, prediction_at, score_at = _response_template(labels, version, max(0, latency_us))
    out = np.empty((k, len(template)), dtype=np.uint8)
    out[:] = np.frombuffer(template, dtype=np.uint8)
    values = np.ascontiguousarray(pred.values, dtype=_F32)
    out[:, prediction_at : prediction_at + 4] = values.view(np.uint8).reshape(k, 4)
    if probs is not None:
        scores = np.asarray(probs, dtype=_F32)
        for j, at in enumerate(score_at):
            column = np.ascontiguousarray(scores[:, j])
            out[:, at : at + 4] = column.view(np.uint8).reshape(k, 4)
    tail = b"\x10" + _varint(total_latency_us) if total_latency_us > 0 else b""
    return out.tobytes() + tail


def serialize_batch_response(response: serving_pb2.PredictBatchResponse | bytes) -> bytes:
    """The gRPC response serializer of PredictBatch: pre-encoded bytes pass through."""
    if isinstance(response, bytes):
        return response
    return response.SerializeToString()
