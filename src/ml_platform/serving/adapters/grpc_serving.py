"""gRPC adapter for the seed's ``ml_platform.serving.ModelServing`` service."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import numpy as np
from google.rpc import error_details_pb2

from ml_platform.core.errors import FieldViolation, InvalidArgument, PlatformError
from ml_platform.features.lookup import OnlineFeatures
from ml_platform.serving.adapters.batch_wire import (
    WireBatchRequest,
    encode_batch_response,
    uniform_rows,
)
from ml_platform.serving.adapters.grpc_converters import (
    features_to_row,
    features_to_values,
    to_response,
)
from ml_platform.serving.adapters.grpc_errors import (
    MAX_DESCRIPTION_BYTES,
    MAX_VIOLATIONS,
    bounded,
    credentials,
    rpc_errors,
)
from ml_platform.serving.adapters.grpc_feature_inputs import (
    entity_key_feature,
    with_feature_inputs,
)
from ml_platform.serving.models import Principal
from ml_platform.serving.plane import metrics
from ml_platform.serving.plane.dataplane import DataPlane, InferRequest, deadline_after
from ml_platform.serving.plane.ordered_stream import ordered_map
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from ml_platform.serving.runtimes.base import FloatArray, Prediction

Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type information)

ITEM_ERRORS_KEY = "ml-platform-item-errors-bin"
"""Trailing metadata of PredictBatch: a google.rpc.BadRequest naming each failed item."""


class ModelServingService(serving_pb2_grpc.ModelServingServicer):
    """Converts the seed's messages to ``DataPlane.infer`` requests and back; nothing else."""

    def __init__(self, plane: DataPlane, features: OnlineFeatures | None = None) -> None:
        self._plane = plane
        self._features = features  # inputs of deployments with feature refs (None: no store)

    async def _principal(self, context: Context) -> Principal:
        api_key, bearer = credentials(context)
        return await self._plane.authenticate(api_key, bearer)

    @rpc_errors
    async def GetModel(
        self, request: serving_pb2.GetModelRequest, context: Context
    ) -> serving_pb2.ModelInfo:
        model = self._plane.resolve(
            await self._principal(context), request.model_id, request.version
        )
        served = model.served
        metadata = {
            "model": served.model,
            "aliases": ",".join(served.aliases),
            "artifact_format": served.artifact_format.value,
            "signature": served.signature.describe(),
            "max_batch_size": str(served.max_batch_size),
        }
        if served.feature_refs:  # a Predict may send just this key
            metadata["feature_refs"] = ",".join(served.feature_refs)
            metadata["entity_key"] = served.entity_key
        return serving_pb2.ModelInfo(
            model_id=served.deployment,
            version=model.version_str,
            framework=served.framework or served.artifact_format.value,
            input_features=served.signature.input_names,
            output_labels=served.signature.outputs,
            metadata=metadata,
        )

    def _predict_request(
        self, request: serving_pb2.PredictRequest, deadline: float | None
    ) -> InferRequest[serving_pb2.PredictResponse]:
        started = time.perf_counter_ns()
        return InferRequest(
            request.model_id,
            request.version,
            lambda model: features_to_row(model, request.features),
            lambda model, pred: to_response(model, pred, 0, started),
            deadline,
        )

    async def _predict(
        self, principal: Principal, request: serving_pb2.PredictRequest, deadline: float | None
    ) -> serving_pb2.PredictResponse:
        """Predict as today, unless the deployment (as resolved in memory) has feature refs
        and the request carries its entity key: then its inputs are looked up first."""
        try:
            served = self._plane.resolve(principal, request.model_id, request.version).served
        except PlatformError:  # answered (and counted) by infer, as for any request
            served = None
        key = entity_key_feature(served, request) if served is not None else None
        if served is None or key is None:
            return await self._plane.infer(principal, self._predict_request(request, deadline))
        try:
            request, used = await with_feature_inputs(
                self._features, principal, served, request, key
            )
        except PlatformError as exc:  # counted as infer counts its refusals
            metrics.count_prediction(principal.tenant_id, served.deployment, exc.code.value)
            raise
        response = await self._plane.infer(principal, self._predict_request(request, deadline))
        response.features_used.extend(used)
        return response

    @rpc_errors
    async def Predict(
        self, request: serving_pb2.PredictRequest, context: Context
    ) -> serving_pb2.PredictResponse:
        principal = await self._principal(context)
        return await self._predict(principal, request, deadline_after(context.time_remaining()))

    @rpc_errors
    async def PredictBatch(  # type: ignore[override]
        self, received: serving_pb2.PredictBatchRequest | WireBatchRequest, context: Context
    ) -> serving_pb2.PredictBatchResponse | bytes:
        """One vectorized call; bytes when every item was answered (see ``batch_wire``)."""
        if isinstance(received, WireBatchRequest):  # registered with parse_batch_request
            request, wire = received.message, received.data
        else:
            request, wire = received, None
        principal = await self._principal(context)
        batch = _BatchCodec(self._plane, request, wire, context)
        return await self._plane.infer(
            principal,
            InferRequest(
                request.model_id,
                request.version,
                batch.decode,
                batch.encode,
                deadline_after(context.time_remaining()),
            ),
        )

    @rpc_errors
    async def PredictStream(
        self, request_iterator: AsyncIterator[serving_pb2.PredictRequest], context: Context
    ) -> AsyncIterator[serving_pb2.PredictResponse]:
        """Answers in order, messages predicted concurrently (so they batch). The first
        message that fails ends the stream with its status (a domain error's mapped code,
        INTERNAL with a generic message otherwise); the answers before it were delivered."""
        principal = await self._principal(context)
        deadline = deadline_after(context.time_remaining())  # the whole stream's

        async def handle(req: serving_pb2.PredictRequest) -> serving_pb2.PredictResponse:
            return await self._predict(principal, req, deadline)

        async for resp in ordered_map(request_iterator, handle):
            yield resp

    @rpc_errors
    async def HealthCheck(
        self, request: serving_pb2.HealthCheckRequest, context: Context
    ) -> serving_pb2.HealthCheckResponse:
        report = self._plane.health(await self._principal(context), request.model_id)
        return serving_pb2.HealthCheckResponse(
            healthy=report.healthy, status=report.status, details=report.details
        )


class _BatchCodec:
    """PredictBatch's conversions: items -> the valid rows (failures kept per item), and the
    prediction -> one response per item (bad items empty, named in trailing metadata)."""

    def __init__(
        self,
        plane: DataPlane,
        request: serving_pb2.PredictBatchRequest,
        wire: bytes | None,
        context: Context,
    ) -> None:
        self._plane = plane
        self._request = request
        self._wire = wire
        self._context = context
        self._started = time.perf_counter_ns()
        self._errors: dict[int, PlatformError] = {}
        self._positions: list[int] = []

    def decode(self, model: LoadedModel) -> FloatArray:
        request, errors = self._request, self._errors
        if not request.requests:
            raise InvalidArgument(
                "empty batch: send at least one request",
                [FieldViolation("requests", "must not be empty")],
            )
        uniform = uniform_rows(request, model.index, self._wire)
        if uniform is not None:  # every item laid out alike: read from the wire with numpy
            matrix: FloatArray = uniform.astype(np.float64)
            positions = list(range(matrix.shape[0]))
        else:
            matrix, positions = _items_to_rows(model, request, errors)
        bad = self._plane.nan_rows(model, matrix)
        if bad is not None:
            for j in np.flatnonzero(bad).tolist():
                errors[positions[j]] = self._plane.nan_error(model, matrix[j])
            keep = ~bad
            matrix = matrix[keep]
            positions = [p for p, k in zip(positions, keep.tolist(), strict=True) if k]
        if not positions:
            first = min(errors)
            raise InvalidArgument(
                f"every item of the batch is invalid; item {first}: {errors[first].message}",
                [FieldViolation(f"requests[{i}]", e.message) for i, e in sorted(errors.items())],
            )
        self._positions = positions
        return matrix

    def encode(
        self, model: LoadedModel, pred: Prediction
    ) -> serving_pb2.PredictBatchResponse | bytes:
        started, errors = self._started, self._errors
        if not errors:  # every item answered: the whole response as one byte template
            elapsed = (time.perf_counter_ns() - started) // 1000
            return encode_batch_response(pred, model.version_str, elapsed, elapsed)
        responses = [serving_pb2.PredictResponse() for _ in self._request.requests]
        for j, pos in enumerate(self._positions):
            responses[pos] = to_response(model, pred, j, started)
        self._context.set_trailing_metadata(((ITEM_ERRORS_KEY, item_errors(errors)),))
        return serving_pb2.PredictBatchResponse(
            responses=responses,
            total_latency_microseconds=(time.perf_counter_ns() - started) // 1000,
        )


def item_errors(errors: dict[int, PlatformError]) -> bytes:
    """The BadRequest of a partly failed batch, bounded like a status (trailing metadata
    travels under the client's 16 KiB header limit): the first MAX_VIOLATIONS items with
    bounded descriptions, then how many more failed (a failed item's response is empty)."""
    failed = sorted(errors.items())
    shown = [
        error_details_pb2.BadRequest.FieldViolation(
            field=f"requests[{i}]", description=bounded(e.message, MAX_DESCRIPTION_BYTES)
        )
        for i, e in failed[:MAX_VIOLATIONS]
    ]
    if len(failed) > len(shown):
        shown.append(
            error_details_pb2.BadRequest.FieldViolation(
                field="requests[...]",
                description=f"{len(failed)} items failed in all, {len(failed) - len(shown)} "
                "more are not listed; a failed item's response is empty",
            )
        )
    report: bytes = error_details_pb2.BadRequest(field_violations=shown).SerializeToString()
    return report


def _items_to_rows(
    model: LoadedModel,
    request: serving_pb2.PredictBatchRequest,
    errors: dict[int, PlatformError],
) -> tuple[FloatArray, list[int]]:
    """Rows of the valid items (any encoding) and their positions; failures into ``errors``."""
    rows: list[list[float]] = []
    positions: list[int] = []
    for i, item in enumerate(request.requests):
        try:
            if item.model_id and item.model_id != request.model_id:
                raise InvalidArgument(
                    f"item targets model '{item.model_id}', the batch targets '{request.model_id}'"
                )
            rows.append(features_to_values(model, item.features))
            positions.append(i)
        except PlatformError as exc:
            errors[i] = exc
    return np.array(rows, dtype=np.float64).reshape(len(rows), model.n_features), positions
