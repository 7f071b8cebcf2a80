"""gRPC adapter for ``ml_platform.features.FeatureServing``: converts, authenticates as the
ModelServing adapter does (the data plane's credentials, cache and budgets), and delegates to
the transport-neutral ``features.OnlineFeatures``."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

from ml_platform.core.errors import FieldViolation, InvalidArgument, Unavailable
from ml_platform.features.lookup import LookupValue, OnlineFeatures
from ml_platform.features.types import ValueStatus
from ml_platform.serving.adapters.grpc_errors import credentials, rpc_errors
from ml_platform.serving.plane.dataplane import DataPlane
from ml_platform.serving.proto import features_pb2, features_pb2_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type information)

FEATURE_SERVING = features_pb2.DESCRIPTOR.services_by_name["FeatureServing"].full_name
MAX_ENTITY_ROWS = 10_000
MAX_FEATURES = 1_000

_STATUS = {
    ValueStatus.PRESENT: features_pb2.PRESENT,
    ValueStatus.MISSING: features_pb2.MISSING,
    ValueStatus.OUTSIDE_TTL: features_pb2.OUTSIDE_TTL,
}


def _scalar(value: features_pb2.Value, field: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(
            f"{field}: set one of int64_value, double_value, string_value, bool_value",
            [FieldViolation(field, "no value set")],
        )
    return getattr(value, kind)


def _value(value: Any) -> features_pb2.Value:
    if value is None:
        return features_pb2.Value()
    if isinstance(value, bool):
        return features_pb2.Value(bool_value=value)
    if isinstance(value, int):
        return features_pb2.Value(int64_value=value)
    if isinstance(value, float):
        return features_pb2.Value(double_value=value)
    return features_pb2.Value(string_value=str(value))


def _feature_value(found: LookupValue) -> features_pb2.FeatureValue:
    out = features_pb2.FeatureValue(value=_value(found.value), status=_STATUS[found.status])
    if found.event_ts is not None:
        out.event_timestamp.FromDatetime(found.event_ts)
    return out


class FeatureServingService(features_pb2_grpc.FeatureServingServicer):
    def __init__(self, plane: DataPlane, online: OnlineFeatures | None) -> None:
        self._plane = plane
        self._online = online

    @rpc_errors
    async def GetOnlineFeatures(
        self, request: features_pb2.GetOnlineFeaturesRequest, context: Context
    ) -> features_pb2.GetOnlineFeaturesResponse:
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
        found = await asyncio.to_thread(self._online.lookup, principal.tenant_id, features, rows)
        return features_pb2.GetOnlineFeaturesResponse(
            features=features,
            results=[
                features_pb2.FeatureVector(values=[_feature_value(v) for v in values])
                for values in found
            ],
        )
