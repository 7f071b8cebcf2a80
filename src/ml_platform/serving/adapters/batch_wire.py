"""PredictBatch on the wire: rows in and answers out without per-value Python work.

The seed's ``PredictBatch`` carries each row as a nested ``PredictRequest``. Reading 1,000 of
them through the protobuf API costs a few microseconds per item, more than a vectorized model
call. Two layouts are regular enough to handle as bytes with numpy instead:

* Requests whose items all share one layout serialize to identical bytes except for the
  floats: one unnamed ``Feature`` holding a ``FloatArray`` of the model's width (the compact
  encoding: one feature per row, not one per value), or one ``float_value`` feature per value
  with the same names in the same order in every item (the seed's encoding, as clients
  build it). ``uniform_rows`` checks every non-float byte of every item against that
  template and reads the floats with numpy; anything else returns ``None`` and the caller
  takes the per-item path.
* Answers for a batch with no failed item all have one layout (one prediction, one score per
  label, the same latency and version), so ``encode_batch_response`` writes the whole
  ``PredictBatchResponse`` as a byte template with the floats filled in by numpy.

Both are checked against the protobuf library in ``tests/serving/test_batch_wire.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ml_platform.serving.adapters.proto_wire import delimited, varint
from ml_platform.serving.proto import serving_pb2
from ml_platform.serving.runtimes.base import Prediction

_F32 = np.dtype("<f4")


_FLOAT32_TAG = b"\x15"  # Feature.float_value = 2, wire type 5 (fixed32)


@dataclass(frozen=True, slots=True)
class _ItemLayout:
    """One ``requests`` entry with zeroed floats, and where each float sits in it."""

    template: npt.NDArray[np.uint8]
    mask: npt.NDArray[np.uint8]  # 0xFF on the bytes every item must repeat, 0 on the floats
    floats: npt.NDArray[np.intp]  # byte positions of the floats, 4 per value, in item order
    columns: npt.NDArray[np.intp]  # signature column of each value, in item order
    tail: int  # where the floats start when they fill the rest of the item, else -1


def _item_layout(kind: str, names: tuple[str, ...], columns: tuple[int, ...]) -> _ItemLayout:
    item = bytearray()
    float_at: list[int] = []
    if kind == "float_array":
        n = len(columns)
        feature = delimited(6, delimited(1, bytes(4 * n)))  # float_array = 6 > values = 1 (packed)
        head = len(delimited(3, feature)) - 4 * n
        item += delimited(3, feature)
        float_at = [head + 4 * j for j in range(n)]
    else:
        for name in names:
            feature = (delimited(1, name.encode()) if name else b"") + _FLOAT32_TAG + bytes(4)
            item += delimited(3, feature)  # PredictRequest.features = 3
            float_at.append(len(item) - 4)
    entry = delimited(3, bytes(item))  # PredictBatchRequest.requests = 3
    shift = len(entry) - len(item)
    floats = (np.asarray(float_at, dtype=np.intp)[:, None] + shift + np.arange(4)).ravel()
    mask = np.full(len(entry), 0xFF, dtype=np.uint8)
    mask[floats] = 0
    first = int(floats[0])
    tail = first if np.array_equal(floats, np.arange(first, len(entry))) else -1
    return _ItemLayout(
        np.frombuffer(entry, dtype=np.uint8),
        mask,
        floats,
        np.asarray(columns, dtype=np.intp),
        tail,
    )


_cached_layout = lru_cache(maxsize=256)(_item_layout)


@dataclass(frozen=True, slots=True)
class WireBatchRequest:
    """A parsed PredictBatchRequest with the bytes it came from (no re-serialization)."""

    message: serving_pb2.PredictBatchRequest
    data: bytes


def parse_batch_request(data: bytes) -> WireBatchRequest:
    """The gRPC request deserializer of PredictBatch."""
    return WireBatchRequest(serving_pb2.PredictBatchRequest.FromString(data), data)


def uniform_rows(
    request: serving_pb2.PredictBatchRequest, index: dict[str, int], data: bytes | None = None
) -> npt.NDArray[np.float32] | None:
    """The batch as a (k, n) float32 array in signature order, or None for the per-item path.

    ``data`` is the request as received (serialized again when not given).

    Applies when every item repeats the first item's layout byte for byte except for the
    values: one unnamed ``float_array`` of n floats, or n ``float_value`` features, either
    all named (each signature name once, in any order the items share) or all positional.
    """
    items = request.requests
    k = len(items)
    n = len(index)
    if k == 0 or n == 0:
        return None
    first = items[0]  # the first item proposes the layout; the bytes of all items confirm it
    if first.model_id or first.version:
        return None
    features = first.features
    if len(features) == 1 and features[0].WhichOneof("value") == "float_array":
        if features[0].name:
            return None
        layout = _cached_layout("float_array", (), tuple(range(n)))
    elif len(features) == n:  # kinds other than float_value show up in the bytes
        names = tuple(f.name for f in features)
        if names[0]:
            columns = tuple(index.get(name, -1) for name in names)
            if -1 in columns or len(set(columns)) != n:
                return None
        elif any(names):
            return None
        else:
            columns = tuple(range(n))
        layout = _cached_layout("float_value", names, columns)
    else:
        return None
    prefix = serving_pb2.PredictBatchRequest(
        model_id=request.model_id, version=request.version
    ).SerializeToString()
    if data is None:
        data = request.SerializeToString()
    stride = layout.template.shape[0]
    if len(data) != len(prefix) + k * stride or not data.startswith(prefix):
        return None
    entries = np.frombuffer(data, dtype=np.uint8, offset=len(prefix)).reshape(k, stride)
    if layout.tail >= 0:  # float_array: the item's bytes before its floats, then the floats
        head = layout.template[: layout.tail]
        if not np.array_equal(entries[:, : layout.tail], np.broadcast_to(head, (k, head.size))):
            return None
        values = np.ascontiguousarray(entries[:, layout.tail :]).view(_F32)
    else:
        if not np.array_equal(
            entries & layout.mask, np.broadcast_to(layout.template, entries.shape)
        ):
            return None
        values = np.ascontiguousarray(entries[:, layout.floats]).view(_F32)  # item order
    if np.array_equal(layout.columns, np.arange(n)):
        return values
    rows = np.empty_like(values)
    rows[:, layout.columns] = values
    return rows


@lru_cache(maxsize=256)
def _response_template(
    labels: tuple[str, ...], version: str, latency_us: int
) -> tuple[bytes, int, tuple[int, ...]]:
    """(one ``responses`` entry with zero floats, offset of the prediction, score offsets)."""
    body = bytearray(delimited(1, bytes(4)))  # predictions: packed, one float
    prediction_at = len(body) - 4
    score_at = []
    for label in labels:  # confidence_scores: one map entry per label
        entry = delimited(1, label.encode()) + b"\x15" + bytes(4)  # key = 1, value = 2 (fixed32)
        body += delimited(2, entry)
        score_at.append(len(body) - 4)
    if latency_us:
        body += b"\x18" + varint(latency_us)  # latency_microseconds = 3
    if version:
        body += delimited(4, version.encode())  # model_version_used = 4
    entry = delimited(1, bytes(body))  # PredictBatchResponse.responses = 1
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
    tail = b"\x10" + varint(total_latency_us) if total_latency_us > 0 else b""
    return out.tobytes() + tail


def serialize_batch_response(response: serving_pb2.PredictBatchResponse | bytes) -> bytes:
    """The gRPC response serializer of PredictBatch: pre-encoded bytes pass through."""
    if isinstance(response, bytes):
        return response
    return response.SerializeToString()
