"""V2 ModelInfer wire helpers, checked against the protobuf library itself."""

from __future__ import annotations

import numpy as np
import pytest

from ml_platform.core.errors import InvalidArgument
from ml_platform.serving import ArtifactFormat, FeatureSpec, ModelSignature, ServedModel
from ml_platform.serving.adapters import v2_wire
from ml_platform.serving.adapters.grpc_v2 import _decode, _encode
from ml_platform.serving.plane import v2
from ml_platform.serving.plane.batching import Batcher
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.proto import inference_pb2 as pb
from ml_platform.serving.runtimes.base import Prediction

N = 3


async def _never(rows: np.ndarray) -> Prediction:
    raise AssertionError("not called")


def _model(deployment: str = "iris", version: int = 7) -> LoadedModel:
    served = ServedModel(
        tenant_id="t",
        deployment=deployment,
        model="m",
        version=version,
        artifact_format=ArtifactFormat.SKOPS,
        artifact_path="/nonexistent",
        signature=ModelSignature(tuple(FeatureSpec(f"x{i}") for i in range(N)), ("a", "b")),
        framework="sklearn",
        max_batch_size=8,
        max_batch_delay_ms=0,
        revision="1",
    )
    index = {f"x{i}": i for i in range(N)}
    return LoadedModel(
        served,
        Batcher(_never, max_batch_size=8, max_batch_delay_ms=0),
        index,
        np.dtype(np.float64),
        1,
        np.dtype(np.float64),
    )


def _request(
    rows: np.ndarray,
    datatype: str,
    *,
    name: str = "input",
    raw: bytes | None = None,
    shape: list[int] | None = None,
) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="iris",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=name, datatype=datatype, shape=list(rows.shape) if shape is None else shape
            )
        ],
        raw_input_contents=[rows.tobytes() if raw is None else raw],
    )


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("k", [0, 1, 5])
def test_raw_rows_read_the_buffer_as_the_general_path_does(datatype: str, k: int) -> None:
    model = _model()
    rows = np.arange(k * N, dtype=v2.DTYPES[datatype]).reshape(k, N) / 7
    request = _request(rows, datatype)
    fast = v2_wire.raw_rows(model, request)
    assert fast is not None and fast.dtype == rows.dtype
    assert np.array_equal(fast, rows)
    assert np.array_equal(_decode(model, request), rows)


@pytest.mark.parametrize(
    ("shape", "extra"),
    [([1, N], b"\0"), ([2, N], b""), ([1, N + 1], b""), ([-1, N], b""), ([1, N], b"\0" * 8)],
)
def test_raw_rows_whose_sizes_disagree_are_invalid_argument(shape: list[int], extra: bytes) -> None:
    model = _model()
    rows = np.ones((1, N), dtype=np.float32)
    request = _request(rows, "FP32", raw=rows.tobytes() + extra, shape=shape)
    assert v2_wire.raw_rows(model, request) is None  # left to the general path, which refuses
    with pytest.raises(InvalidArgument) as info:
        _decode(model, request)
    assert info.value.code.value == "INVALID_ARGUMENT"


def test_other_layouts_take_the_general_path() -> None:
    model = _model()
    rows = np.ones((2, N), dtype=np.float32)
    assert (
        v2_wire.raw_rows(model, _request(rows, "INT32", raw=rows.astype(np.int32).tobytes()))
        is None
    )
    assert v2_wire.raw_rows(model, _request(rows, "FP32", name="x0")) is None  # a feature's name
    two = _request(rows, "FP32")
    two.inputs.add(name="other", datatype="FP32", shape=[2, N])
    two.raw_input_contents.append(rows.tobytes())
    assert v2_wire.raw_rows(model, two) is None
    no_raw = pb.ModelInferRequest(
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64", shape=[1, N])]
    )
    no_raw.inputs[0].contents.fp64_contents.extend([1.0, 2.0, 3.0])
    assert v2_wire.raw_rows(model, no_raw) is None
    assert _decode(model, no_raw).tolist() == [[1.0, 2.0, 3.0]]


def _expected(model: LoadedModel, pred: Prediction, request_id: str, requested: list[str]) -> bytes:
    outs = v2.prediction_tensors(model, pred, requested)
    return pb.ModelInferResponse(
        model_name=model.served.deployment,
        model_version=model.version_str,
        id=request_id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in outs
        ],
        raw_output_contents=[t.data.tobytes() for t in outs],
    ).SerializeToString()


@pytest.mark.parametrize("k", [0, 1, 3, 1000])
@pytest.mark.parametrize("request_id", ["", "r-1", "é" * 200])
@pytest.mark.parametrize(
    "requested", [[], ["predictions"], ["probabilities"], ["probabilities", "predictions"]]
)
def test_response_bytes_equal_the_protobuf_serialization(
    k: int, request_id: str, requested: list[str]
) -> None:
    model = _model("d" * 300)
    probs = np.random.default_rng(k).random((k + 2, 2))[1:-1]  # a slice, as batches answer
    pred = Prediction(probs.argmax(axis=1).astype(np.float64), probs, ("a", "b"))
    request = pb.ModelInferRequest(id=request_id)
    for name in requested:
        request.outputs.add(name=name)
    data = _encode(model, pred, request)
    assert data == _expected(model, pred, request_id, requested)
    parsed = pb.ModelInferResponse.FromString(data)
    want = [n for n in requested] or ["predictions", "probabilities"]
    assert [o.name for o in parsed.outputs] == want
    stream = pb.ModelStreamInferResponse.FromString(v2_wire.stream_response(data))
    assert stream.infer_response == parsed and not stream.error_message


def test_a_regressor_answers_predictions_only_and_unknown_outputs_are_refused() -> None:
    model = _model()
    pred = Prediction(np.array([0.5, 1.5]))
    assert _encode(model, pred, pb.ModelInferRequest()) == _expected(model, pred, "", [])
    request = pb.ModelInferRequest()
    request.outputs.add(name="probabilities")
    with pytest.raises(InvalidArgument) as info:
        _encode(model, pred, request)
    assert info.value.code.value == "INVALID_ARGUMENT"
    assert "unknown output(s) probabilities" in str(info.value)
