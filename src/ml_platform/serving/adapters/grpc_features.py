"""gRPC adapter for ``ml_platform.features.FeatureServing``: converts, authenticates as the
ModelServing adapter does (the data plane's credentials, cache and budgets), and delegates to
the transport-neutral ``features.OnlineFeatures``; the answer is written as bytes by
``features_wire``."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from ml_platform.core.errors import FieldViolation, InvalidArgument, Unavailable
from ml_platform.features.lookup import OnlineFeatures
from ml_platform.serving.adapters.features_wire import encode_response
from ml_platform.serving.adapters.grpc_errors import credentials, rpc_errors
from ml_platform.serving.plane.dataplane import DataPlane
from ml_platform.serving.proto import features_pb2

Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type information)

FEATURE_SERVING = features_pb2.DESCRIPTOR.services_by_name["FeatureServing"].full_name
MAX_ENTITY_ROWS = 10_000
MAX_FEATURES = 1_000


def _scalar(value: features_pb2.Value, field: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(
            f"{field}: set one of int64_value, double_value, string_value, bool_value",
            [FieldViolation(field, "no value set")],
        )
    return getattr(value, kind)


class FeatureServingService:
    def __init__(self, plane: DataPlane, online: OnlineFeatures | None) -> None:
        self._plane = plane
        self._online = online

    @rpc_errors
    async def GetOnlineFeatures(
        self, request: features_pb2.GetOnlineFeaturesRequest, context: Context
    ) -> bytes:
        api_key, bearer = credentials(context)
        principal = await self._plane.authenticate(api_key, bearer)
        if self._online is None:
            raise Unavailable("feature serving is not enabled on this serving plane")
        if len(request.entity_rows) > MAX_ENTITY_ROWS or len(request.features) > MAX_FEATURES:
            raise InvalidArgument(
                f"at most {MAX_ENTITY_ROWS} entity rows and {MAX_FEATURES} features per call",
                [FieldViolation("entity_rows", f"at most {MAX_ENTITY_ROWS}")],
            )
        rows = [
            {
                name: _scalar(v, f"entity_rows[{i}].join_keys[{name}]")
                for name, v in row.join_keys.items()
            }
            for i, row in enumerate(request.entity_rows)
        ]
        features = list(request.features)
        found = await self._online.lookup_async(principal.tenant_id, features, rows)
        return encode_response(features, found)  # the response, serialized (features_wire)


def add_feature_serving(service: FeatureServingService, server: Any) -> None:
    """Register ``FeatureServing`` on ``server``: requests parsed by protobuf, the answer
    already bytes (``features_wire``), so its serializer passes them through."""
    handlers = {
        "GetOnlineFeatures": grpc.unary_unary_rpc_method_handler(
            service.GetOnlineFeatures,
            request_deserializer=features_pb2.GetOnlineFeaturesRequest.FromString,
            response_serializer=_already_serialized,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(FEATURE_SERVING, handlers),)
    )


def _already_serialized(answer: bytes) -> bytes:
    return answer
