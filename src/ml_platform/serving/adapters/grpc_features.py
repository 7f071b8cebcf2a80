"""gRPC adapter for ``ml_platform.features.FeatureServing``: converts, authenticates as the
ModelServing adapter does (the data plane's credentials, cache and budgets), and delegates to
the transport-neutral ``features.OnlineFeatures``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

from google.protobuf import timestamp_pb2

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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


def _encode(found: list[list[LookupValue]]) -> list[features_pb2.FeatureVector]:
    """The values as messages; one Timestamp per distinct event time (a row's features share
    theirs), built from integers (``FromDatetime`` is slow)."""
    stamps: dict[datetime, timestamp_pb2.Timestamp] = {}
    vectors = []
    for values in found:
        out = []
        for v in values:
            kwargs: dict[str, Any] = {"value": _value(v.value), "status": _STATUS[v.status]}
            if v.event_ts is not None:
                stamp = stamps.get(v.event_ts)
                if stamp is None:
                    delta = v.event_ts - _EPOCH
                    stamp = stamps[v.event_ts] = timestamp_pb2.Timestamp(
                        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
                    )
                kwargs["event_timestamp"] = stamp
            out.append(features_pb2.FeatureValue(**kwargs))
        vectors.append(features_pb2.FeatureVector(values=out))
    return vectors


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
        found = await self._online.lookup_async(principal.tenant_id, features, rows)
        return features_pb2.GetOnlineFeaturesResponse(
            features=features,
            results=_encode(found),
        )
