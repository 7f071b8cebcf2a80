"""gRPC adapter for the Open Inference Protocol, served as ``inference.GRPCInferenceService``.

Registered through a generic handler because our message classes live in our own proto
package (see ``protos/ml_platform/serving/proto/inference.proto``); method paths and wire
format are those of KServe V2 / Triton, so tritonclient works unmodified.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
import numpy as np
from google.protobuf import json_format

from ml_platform.core.errors import FieldViolation, InvalidArgument, PlatformError
from ml_platform.serving.adapters.grpc_errors import (
    INTERNAL_MESSAGE,
    MAX_MESSAGE_BYTES,
    bounded,
    credentials,
    rpc_errors,
)
from ml_platform.serving.adapters.v2_wire import (
    infer_response,
    passthrough,
    raw_rows,
    stream_response,
)
from ml_platform.serving.plane import v2
from ml_platform.serving.plane.dataplane import (
    SERVER_NAME,
    SERVER_VERSION,
    DataPlane,
    InferRequest,
    deadline_after,
)
from ml_platform.serving.plane.ordered_stream import ordered_map
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.proto import inference_pb2 as pb
from ml_platform.serving.runtimes.base import FloatArray, Prediction

logger = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type information)

_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


class InferenceService:
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._plane.repository.ready_once.is_set())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=[])

    @rpc_errors
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        principal = await self._plane.authenticate(*credentials(context))
        return pb.ModelReadyResponse(
            ready=self._plane.model_ready(principal, request.name, request.version)
        )

    @rpc_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        principal = await self._plane.authenticate(*credentials(context))
        meta = v2.model_metadata(self._plane.resolve(principal, request.name, request.version))
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    @rpc_errors
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        principal = await self._plane.authenticate(*credentials(context))
        model = self._plane.resolve(principal, request.name, request.version)
        config = json_format.ParseDict(v2.model_config(model), pb.ModelConfig())
        return pb.ModelConfigResponse(config=config)

    async def _infer(
        self, request: pb.ModelInferRequest, context: Context, deadline: float | None
    ) -> bytes:
        principal = await self._plane.authenticate(*credentials(context))
        return await self._plane.infer(
            principal,
            InferRequest(
                request.model_name,
                request.model_version,
                lambda model: _decode(model, request),
                lambda model, pred: _encode(model, pred, request),
                deadline,
            ),
        )

    @rpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> bytes:
        return await self._infer(request, context, deadline_after(context.time_remaining()))

    @rpc_errors
    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[bytes]:
        """Errors are in-band (``error_message``) and the stream stays open, as in Triton."""

        async def handle(req: pb.ModelInferRequest) -> bytes:
            try:
                return stream_response(await self._infer(req, context, None))
            except PlatformError as exc:
                message = exc.message
            except Exception:
                logger.exception("unexpected error in a V2 stream message")
                message = INTERNAL_MESSAGE
            return pb.ModelStreamInferResponse(
                error_message=bounded(message, MAX_MESSAGE_BYTES),
                infer_response=pb.ModelInferResponse(id=req.id),
            ).SerializeToString()

        async for resp in ordered_map(request_iterator, handle):
            yield resp


def _decode(model: LoadedModel, request: pb.ModelInferRequest) -> FloatArray:
    rows = raw_rows(model, request)
    if rows is not None:
        return rows
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs",
            [FieldViolation("raw_input_contents", "one entry per input")],
        )
    tensors = []
    for i, inp in enumerate(request.inputs):
        dt = v2.numpy_dtype(model, inp.name, inp.datatype)
        shape = tuple(inp.shape)
        if raw:
            buf = raw[i]
            if len(buf) % dt.itemsize:
                raise InvalidArgument(
                    f"input {inp.name}: {len(buf)} bytes is not a whole number of {inp.datatype}"
                )
            data = np.frombuffer(buf, dtype=dt)
        else:
            field = _CONTENTS_FIELD.get(inp.datatype, "fp64_contents")
            data = np.asarray(getattr(inp.contents, field), dtype=dt)
        v2.check_shape(model, inp.name, shape, data.size)
        tensors.append(v2.Tensor(inp.name, inp.datatype, shape, data))
    return v2.tensors_to_rows(model, tensors)


def _encode(model: LoadedModel, pred: Prediction, request: pb.ModelInferRequest) -> bytes:
    requested = [o.name for o in request.outputs] if request.outputs else []
    return infer_response(model, request.id, v2.prediction_tensors(model, pred, requested))


def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
    """A unary method handler for ``fn`` with the message classes' own (de)serializers."""
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
    )


def generic_handler(plane: DataPlane) -> grpc.GenericRpcHandler:
    svc = InferenceService(plane)
    handlers = {
        "ServerLive": unary(svc.ServerLive, pb.ServerLiveRequest, pb.ServerLiveResponse),
        "ServerReady": unary(svc.ServerReady, pb.ServerReadyRequest, pb.ServerReadyResponse),
        "ServerMetadata": unary(
            svc.ServerMetadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse
        ),
        "ModelReady": unary(svc.ModelReady, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ModelMetadata": unary(
            svc.ModelMetadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse
        ),
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            svc.ModelInfer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=passthrough,
        ),
        "ModelConfig": unary(svc.ModelConfig, pb.ModelConfigRequest, pb.ModelConfigResponse),
        "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
            svc.ModelStreamInfer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=passthrough,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
