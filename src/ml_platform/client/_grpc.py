"""Predictions over gRPC (the seed's ``ModelServing``), with grpc imported only when used.

``grpcio`` is the SDK's optional extra (``pip install 'ml-platform[grpc]'``). Each client owns
one channel to its ``grpc_target``, created on the first prediction and closed with the
client. gRPC statuses map onto the same exception classes as HTTP statuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ml_platform.client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    MLPlatformError,
    PermissionDeniedError,
    RateLimitError,
    ResourceNotFoundError,
    ServerError,
    ValidationError,
)
from ml_platform.client._models import Prediction

if TYPE_CHECKING:
    import grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "FeatureValue",
    "batch_predictions",
    "error_from_rpc",
    "import_grpc",
    "open_channel",
    "predict_batch_call",
    "predict_batch_request",
    "predict_call",
    "predict_request",
    "prediction_from_reply",
    "proto_modules",
    "retryable_rpc",
]

MAX_MESSAGE_BYTES = 100 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)

FeatureValue = float | int | str | bool | Sequence[float]


def import_grpc() -> Any:
    try:
        import grpc
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MLPlatformError("predictions need grpcio: pip install 'ml-platform[grpc]'") from exc
    return grpc


def proto_modules() -> tuple[Any, Any]:
    """(serving_pb2, serving_pb2_grpc), imported on first use."""
    import_grpc()
    from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc

    return serving_pb2, serving_pb2_grpc


def _feature(pb2: Any, name: str, value: FeatureValue) -> Any:
    if isinstance(value, bool):
        return pb2.Feature(name=name, bool_value=value)
    if isinstance(value, int):
        return pb2.Feature(name=name, int_value=value)
    if isinstance(value, float):
        return pb2.Feature(name=name, float_value=value)
    if isinstance(value, str):
        return pb2.Feature(name=name, string_value=value)
    if isinstance(value, Sequence):
        return pb2.Feature(name=name, float_array=pb2.FloatArray(values=[float(v) for v in value]))
    try:  # numpy scalars and other number-likes
        return pb2.Feature(name=name, float_value=float(value))
    except (TypeError, ValueError):
        raise ValidationError(
            f"feature {name!r}: {type(value).__name__} is not a number, string, bool or list",
            status_code=422,
        ) from None


def predict_request(
    pb2: Any, model_id: str, features: Mapping[str, FeatureValue], version: str = ""
) -> Any:
    if not isinstance(features, Mapping):
        raise ValidationError(
            "features must be a mapping of feature name to value, e.g. {'f0': 0.1}",
            status_code=422,
        )
    return pb2.PredictRequest(
        model_id=model_id,
        version=version,
        features=[_feature(pb2, str(name), value) for name, value in features.items()],
    )


def predict_batch_request(
    pb2: Any, model_id: str, rows: Sequence[Mapping[str, FeatureValue]], version: str = ""
) -> Any:
    return pb2.PredictBatchRequest(
        model_id=model_id,
        version=version,
        requests=[predict_request(pb2, model_id, row, version) for row in rows],
    )


def open_channel(target: str, secure: bool, aio: bool) -> tuple[Any, Any]:
    """(channel, ModelServingStub) to ``target``: TLS when ``secure``, grpc.aio when ``aio``."""
    grpc = import_grpc()
    _, pb2_grpc = proto_modules()
    factory = grpc.aio if aio else grpc
    if secure:
        channel = factory.secure_channel(
            target, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS
        )
    else:
        channel = factory.insecure_channel(target, options=CHANNEL_OPTIONS)
    return channel, pb2_grpc.ModelServingStub(channel)


def predict_call(model_id: str, features: Mapping[str, FeatureValue]) -> tuple[str, Any]:
    """(RPC method name, request) of one prediction."""
    pb2, _ = proto_modules()
    return "Predict", predict_request(pb2, model_id, features)


def predict_batch_call(
    model_id: str, rows: Sequence[Mapping[str, FeatureValue]]
) -> tuple[str, Any]:
    pb2, _ = proto_modules()
    return "PredictBatch", predict_batch_request(pb2, model_id, rows)


def batch_predictions(reply: Any) -> list[Prediction]:
    return [prediction_from_reply(r) for r in reply.responses]


def prediction_from_reply(reply: Any) -> Prediction:
    prediction: Prediction = Prediction.parse(
        {
            "predictions": list(reply.predictions),
            "confidence_scores": dict(reply.confidence_scores),
            "model_version_used": reply.model_version_used,
            "latency_microseconds": int(reply.latency_microseconds),
        }
    )
    return prediction


_HTTP_FOR_CODE: dict[str, tuple[type[APIStatusError], int]] = {
    "INVALID_ARGUMENT": (ValidationError, 422),
    "FAILED_PRECONDITION": (ValidationError, 422),
    "OUT_OF_RANGE": (ValidationError, 422),
    "UNAUTHENTICATED": (AuthenticationError, 401),
    "PERMISSION_DENIED": (PermissionDeniedError, 403),
    "NOT_FOUND": (ResourceNotFoundError, 404),
    "ALREADY_EXISTS": (ConflictError, 409),
    "ABORTED": (ConflictError, 409),
    "RESOURCE_EXHAUSTED": (RateLimitError, 429),
    "UNIMPLEMENTED": (APIStatusError, 501),
}


def retryable_rpc(exc: grpc.RpcError) -> bool:
    code = exc.code() if hasattr(exc, "code") else None
    return getattr(code, "name", "") == "UNAVAILABLE"


def _rich_status(exc: Any) -> tuple[str | None, list[dict[str, str]]]:
    """(the platform's error code, field violations) from ``grpc-status-details-bin``.

    The server sends a ``google.rpc.Status`` with an ``ErrorInfo`` (reason: the same code a
    REST problem carries) and a ``BadRequest`` (one violation per invalid field). Decoding
    needs googleapis-common-protos; without it the status code and message still map.
    """
    try:
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:  # pragma: no cover - depends on the install
        return None, []
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    raw = next((v for k, v in (trailing or ()) if k == "grpc-status-details-bin"), None)
    if not isinstance(raw, bytes):
        return None, []
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception:  # a malformed trailer is no reason to hide the status itself
        return None, []
    reason: str | None = None
    errors: list[dict[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason or None
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            errors.extend({"path": v.field, "message": v.description} for v in bad.field_violations)
    return reason, errors


def error_from_rpc(exc: grpc.RpcError, target: str) -> MLPlatformError:
    """The SDK exception for a failed RPC: the class an HTTP response with the same meaning
    gets; ``code`` and ``errors`` (field violations) as a REST problem would carry them."""
    code = exc.code() if hasattr(exc, "code") else None
    name = getattr(code, "name", "UNKNOWN")
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if name == "UNAVAILABLE":
        return APIConnectionError(f"serving plane at {target} unavailable: {details}")
    if name == "DEADLINE_EXCEEDED":
        return APITimeoutError(f"prediction at {target} timed out: {details}")
    reason, errors = _rich_status(exc)
    cls, status = _HTTP_FOR_CODE.get(name, (ServerError, 500))
    body: dict[str, Any] = {
        "code": reason or name,
        "grpc_code": name,
        "detail": details,
        "status": status,
    }
    if errors:
        body["errors"] = errors
    return cls(details, status_code=status, body=body)
