"""gRPC adapter for the seed's ``ml_platform.serving.ModelServing`` service."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import numpy as np
from google.rpc import error_details_pb2

from ml_platform.core.errors import FieldViolation, InvalidArgument, PlatformError
from ml_platform.serving.batch_wire import (
    WireBatchRequest,
    encode_batch_response,
    uniform_rows,
)
from ml_platform.serving.dataplane import DataPlane
from ml_platform.serving.grpc_converters import features_to_row, features_to_values, to_response
from ml_platform.serving.grpc_errors import abort, credentials
from ml_platform.serving.models import Principal
from ml_platform.serving.ordered_stream import ordered_map
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from ml_platform.serving.repository import LoadedModel
from ml_platform.serving.runtimes.base import FloatArray

logger = logging.getLogger(__name__)

Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type information)

ITEM_ERRORS_KEY = "ml-platform-item-errors-bin"
"""Trailing metadata of PredictBatch: a google.rpc.BadRequest naming each failed item."""


class ModelServingService(serving_pb2_grpc.ModelServingServicer):
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def _principal(self, context: Context) -> Principal:
        api_key, bearer = credentials(context)
        return await self._plane.authenticate(api_key, bearer)

    async def GetModel(
        self, request: serving_pb2.GetModelRequest, context: Context
    ) -> serving_pb2.ModelInfo:
        try:
            model = self._plane.resolve(
                await self._principal(context), request.model_id, request.version
            )
            served = model.served
            return serving_pb2.ModelInfo(
                model_id=served.deployment,
                version=model.version_str,
                framework=served.framework or served.artifact_format.value,
                input_features=served.signature.input_names,
                output_labels=served.signature.outputs,
                metadata={
                    "model": served.model,
                    "aliases": ",".join(served.aliases),
                    "artifact_format": served.artifact_format.value,
                    "signature": served.signature.describe(),
                    "max_batch_size": str(served.max_batch_size),
                },
            )
        except Exception as exc:
            err: BaseException = exc
        await abort(context, err)
        raise AssertionError("unreachable")

    async def _predict_one(
        self, request: serving_pb2.PredictRequest, principal: Principal
    ) -> serving_pb2.PredictResponse:
        started = time.perf_counter_ns()
        model = self._plane.resolve(principal, request.model_id, request.version)
        row = features_to_row(model, request.features)
        self._plane.check_rows(model, row)
        pred = await self._plane.predict(model, row)
        return to_response(model, pred, 0, started)

    async def Predict(
        self, request: serving_pb2.PredictRequest, context: Context
    ) -> serving_pb2.PredictResponse:
        try:
            return await self._predict_one(request, await self._principal(context))
        except Exception as exc:
            err: BaseException = exc
        await abort(context, err)
        raise AssertionError("unreachable")

    async def PredictBatch(  # type: ignore[override]
        self, received: serving_pb2.PredictBatchRequest | WireBatchRequest, context: Context
    ) -> serving_pb2.PredictBatchResponse | bytes:
        """One vectorized call; bytes when every item was answered (see ``batch_wire``)."""
        started = time.perf_counter_ns()
        if isinstance(received, WireBatchRequest):  # registered with parse_batch_request
            request, wire = received.message, received.data
        else:
            request, wire = received, None
        try:
            principal = await self._principal(context)
            model = self._plane.resolve(principal, request.model_id, request.version)
            if not request.requests:
                raise InvalidArgument(
                    "empty batch: send at least one request",
                    [FieldViolation("requests", "must not be empty")],
                )
            errors: dict[int, PlatformError] = {}
            uniform = uniform_rows(request, model.index, wire)
            if uniform is not None:  # every item laid out alike: read from the wire with numpy
                matrix: FloatArray = uniform.astype(np.float64)
                positions = list(range(matrix.shape[0]))
            else:
                matrix, positions = self._items_to_rows(model, request, errors)
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
                    [
                        FieldViolation(f"requests[{i}]", e.message)
                        for i, e in sorted(errors.items())
                    ],
                )
            pred = await self._plane.predict(model, matrix)
            if not errors:  # every item answered: the whole response as one byte template
                elapsed = (time.perf_counter_ns() - started) // 1000
                return encode_batch_response(pred, model.version_str, elapsed, elapsed)
            responses = [serving_pb2.PredictResponse() for _ in request.requests]
            for j, pos in enumerate(positions):
                responses[pos] = to_response(model, pred, j, started)
            if errors:
                report = error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=f"requests[{i}]", description=e.message
                        )
                        for i, e in sorted(errors.items())
                    ]
                )
                context.set_trailing_metadata(((ITEM_ERRORS_KEY, report.SerializeToString()),))
            return serving_pb2.PredictBatchResponse(
                responses=responses,
                total_latency_microseconds=(time.perf_counter_ns() - started) // 1000,
            )
        except Exception as exc:
            err: BaseException = exc
        await abort(context, err)
        raise AssertionError("unreachable")

    @staticmethod
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
                        f"item targets model '{item.model_id}', "
                        f"the batch targets '{request.model_id}'"
                    )
                rows.append(features_to_values(model, item.features))
                positions.append(i)
            except PlatformError as exc:
                errors[i] = exc
        return np.array(rows, dtype=np.float64).reshape(len(rows), model.n_features), positions

    async def PredictStream(
        self, request_iterator: AsyncIterator[serving_pb2.PredictRequest], context: Context
    ) -> AsyncIterator[serving_pb2.PredictResponse]:
        """Answers in order; a bad message gets an empty response and the stream stays open."""
        try:
            principal = await self._principal(context)
        except Exception as exc:
            await abort(context, exc)
            return

        async def handle(req: serving_pb2.PredictRequest) -> serving_pb2.PredictResponse:
            try:
                return await self._predict_one(req, principal)
            except PlatformError as exc:
                logger.debug("stream message rejected: %s", exc.message)
                return serving_pb2.PredictResponse(model_version_used="")

        async for resp in ordered_map(request_iterator, handle):
            yield resp

    async def HealthCheck(
        self, request: serving_pb2.HealthCheckRequest, context: Context
    ) -> serving_pb2.HealthCheckResponse:
        try:
            report = self._plane.health(await self._principal(context), request.model_id)
            return serving_pb2.HealthCheckResponse(
                healthy=report.healthy, status=report.status, details=report.details
            )
        except Exception as exc:
            err: BaseException = exc
        await abort(context, err)
        raise AssertionError("unreachable")
