"""V2 ``ModelInfer`` on the wire: the common request read with numpy, answers written as bytes.

* A request with one 2-D tensor ``[rows, n_features]`` of FP32 or FP64 in
  ``raw_input_contents`` (what tritonclient and the benchmarks send) is read with one
  ``np.frombuffer`` over the received bytes, in the sender's dtype: the runtime converts
  once, if its own dtype differs. The buffer must hold exactly ``rows x n x itemsize`` bytes;
  anything else goes through the general decoder, which names the problem.
* The response is written as protobuf bytes: the model name and version, and each output's
  metadata, are encoded once and reused; the arrays' memory goes into the message as it is.
  The bytes equal ``ModelInferResponse.SerializeToString()`` of the same message (checked in
  ``tests/serving/test_v2_wire.py``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ml_platform.serving.adapters.proto_wire import delimited, varint
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.plane.v2 import Tensor
from ml_platform.serving.proto import inference_pb2 as pb
from ml_platform.serving.runtimes.base import FloatArray

_RAW_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_RAW_OUTPUT_TAG = b"\x32"  # ModelInferResponse.raw_output_contents = 6, length-delimited
_STREAM_RESPONSE_TAG = b"\x12"  # ModelStreamInferResponse.infer_response = 2
_SHORT_RAW_PREFIX = [_RAW_OUTPUT_TAG + bytes((n,)) for n in range(0x80)]  # one-byte lengths


def raw_rows(model: LoadedModel, request: pb.ModelInferRequest) -> FloatArray | None:
    """The rows of a single raw FP32/FP64 ``[rows, n_features]`` tensor, or None when the
    request is laid out otherwise (or its sizes disagree: the general path says how)."""
    inputs = request.inputs
    if len(inputs) != 1:
        return None
    raw = request.raw_input_contents
    if len(raw) != 1:
        return None
    tensor = inputs[0]
    dt = _RAW_DTYPES.get(tensor.datatype)
    shape = tensor.shape
    if dt is None or len(shape) != 2 or tensor.name in model.index:
        return None
    rows, width = shape
    buf = raw[0]
    if width != model.n_features or rows < 0 or rows * width * dt.itemsize != len(buf):
        return None
    return np.frombuffer(buf, dtype=dt).reshape(rows, width)


@lru_cache(maxsize=64)
def _head(model_name: str, model_version: str) -> bytes:
    """Fields 1 and 2 (proto3 leaves empty strings out)."""
    out = delimited(1, model_name.encode()) if model_name else b""
    return out + (delimited(2, model_version.encode()) if model_version else b"")


@lru_cache(maxsize=256)
def _output(name: str, datatype: str, shape: tuple[int, ...]) -> bytes:
    """One ``outputs`` entry (field 5): name, datatype, packed shape."""
    body = delimited(1, name.encode()) if name else b""
    body += delimited(2, datatype.encode()) if datatype else b""
    if shape:
        body += delimited(3, b"".join(varint(d) for d in shape))
    return delimited(5, body)


def infer_response(model: LoadedModel, request_id: str, outputs: list[Tensor]) -> bytes:
    """A serialized ``ModelInferResponse`` carrying ``outputs`` as raw contents."""
    parts: list[Any] = [_head(model.served.deployment, model.version_str)]
    if request_id:
        parts.append(delimited(3, request_id.encode()))
    parts.extend(_output(t.name, t.datatype, t.shape) for t in outputs)
    for t in outputs:
        n = t.data.nbytes
        parts.append(_SHORT_RAW_PREFIX[n] if n < 0x80 else _RAW_OUTPUT_TAG + varint(n))
        parts.append(t.data.data)  # the array's own memory (C-contiguous: prediction_tensors)
    return b"".join(parts)


def stream_response(infer_response: bytes) -> bytes:
    """A serialized ``ModelStreamInferResponse`` around an already serialized answer."""
    return _STREAM_RESPONSE_TAG + varint(len(infer_response)) + infer_response


def passthrough(data: bytes) -> bytes:
    """The response serializer of methods that answer pre-serialized bytes."""
    return data
