"""Seed ``PredictRequest`` <-> ``plane.feature_inputs``: a request to a deployment served with
feature refs that carries its entity key as a ``Feature`` gets the looked-up inputs (named by
model input) in place of the key; the response lists them as ``features_used``."""

from __future__ import annotations

from typing import Any

from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.features.lookup import OnlineFeatures
from ml_platform.serving.models import Principal, ServedModel
from ml_platform.serving.plane.feature_inputs import look_up_inputs
from ml_platform.serving.proto import serving_pb2

__all__ = ["entity_key_feature", "with_feature_inputs"]


def entity_key_feature(
    served: ServedModel, request: serving_pb2.PredictRequest
) -> serving_pb2.Feature | None:
    """The request's entity key feature when ``served`` looks its inputs up, else None (a
    deployment without refs, or one sent its inputs explicitly: predicted as any other)."""
    if not served.feature_refs:
        return None
    return next((f for f in request.features if f.name == served.entity_key), None)


def _key_value(feature: serving_pb2.Feature) -> Any:
    kind = feature.WhichOneof("value")
    if kind in ("int_value", "string_value", "bool_value"):
        return getattr(feature, kind)
    if kind == "float_value" and feature.float_value.is_integer():
        return int(feature.float_value)
    why = "an entity key is an int_value or string_value"
    raise InvalidArgument(
        f"features.{feature.name}: {why}", [FieldViolation(f"features.{feature.name}", why)]
    )


def _feature(name: str, value: Any) -> serving_pb2.Feature:
    if isinstance(value, bool):
        return serving_pb2.Feature(name=name, bool_value=value)
    if isinstance(value, int):
        return serving_pb2.Feature(name=name, int_value=value)
    if isinstance(value, float):
        return serving_pb2.Feature(name=name, float_value=value)
    return serving_pb2.Feature(name=name, string_value=str(value))


async def with_feature_inputs(
    online: OnlineFeatures | None,
    principal: Principal,
    served: ServedModel,
    request: serving_pb2.PredictRequest,
    key: serving_pb2.Feature,
) -> tuple[serving_pb2.PredictRequest, list[serving_pb2.Feature]]:
    """``request`` with its entity key ``key`` replaced by the looked-up features (its other
    features kept), and those features as the response reports them (``view:feature``)."""
    used = await look_up_inputs(online, principal.tenant_id, served, _key_value(key))
    features = [f for f in request.features if f.name != served.entity_key]
    features.extend(_feature(u.name, u.value) for u in used)
    looked_up = serving_pb2.PredictRequest(
        model_id=request.model_id,
        version=request.version,
        features=features,
        metadata=request.metadata,
    )
    return looked_up, [_feature(u.ref, u.value) for u in used]
