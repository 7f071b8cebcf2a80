"""Every domain error of ``core/errors.py`` the data plane raises, through all three data-plane
edges — the seed gRPC service (ModelServing), the V2 gRPC service (inference.
GRPCInferenceService) and V2 REST (the serving REST port) — on both stores (API-GUIDE rule 7).

Each row provokes the error the way a client would, against a live control plane and serving
plane. The gRPC status must be ``core.errors.RPC_CODE`` of the error's code (with ErrorInfo
naming the code), the V2 REST status ``core.problems.http_status`` (KServe's 400 for
INVALID_ARGUMENT) with a problem document that carries ``request_id`` (equal to the
X-Request-ID header), so the adapters, the renderer and the tables cannot drift.
"""

from __future__ import annotations

import pickle
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ml_platform.core import errors
from ml_platform.core.errors import RPC_CODE, ErrorCode, PlatformError
from ml_platform.core.problems import PROBLEM_BASE, http_status
from ml_platform.serving.proto import inference_pb2, serving_pb2
from tests.deployments.test_deployments import plane, trained  # noqa: F401  (fixtures)
from tests.serving._live import (
    World,
    deploy_artifact,
    good_features,
    world_fixture,  # noqa: F401  (fixture: world)
)

pytestmark = pytest.mark.slow

Outcome = grpc.RpcError | httpx.Response
Provoke = Callable[[World], Outcome]


class _SlowLoad:
    """Unpickles by sleeping (then is no model): the deployment stays 'loading' meanwhile."""

    def __reduce__(self) -> tuple[Any, tuple[float]]:
        return time.sleep, (6.0,)


# ------------------------------------------------------------------- requests


def _predict(
    model: str, features: list[serving_pb2.Feature] | None = None, version: str = ""
) -> serving_pb2.PredictRequest:
    return serving_pb2.PredictRequest(
        model_id=model, version=version, features=good_features() if features is None else features
    )


def _infer(
    model: str, shape: tuple[int, int] = (1, 4), value: float = 0.1, version: str = ""
) -> inference_pb2.ModelInferRequest:
    return inference_pb2.ModelInferRequest(
        model_name=model,
        model_version=version,
        inputs=[
            inference_pb2.ModelInferRequest.InferInputTensor(
                name="input",
                datatype="FP64",
                shape=list(shape),
                contents=inference_pb2.InferTensorContents(
                    fp64_contents=[value] * (shape[0] * shape[1])
                ),
            )
        ],
    )


def _infer_json(shape: tuple[int, int] = (1, 4)) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP64",
                "shape": list(shape),
                "data": [0.1] * (shape[0] * shape[1]),
            }
        ]
    }


def _seed(w: World, request: Any, metadata: Any = None, method: str = "Predict") -> Outcome:
    call = getattr(w.seed, method)
    try:
        call(request, metadata=w.key() if metadata is None else metadata, timeout=60)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{method} succeeded")


def _v2(w: World, request: Any, metadata: Any = None, method: str = "ModelInfer") -> Outcome:
    try:
        w.v2(method)(request, metadata=w.key() if metadata is None else metadata, timeout=60)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{method} succeeded")


def _rest(
    w: World,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    sent = {"x-api-key": w.owner.api_key, "x-request-id": f"req-{secrets.token_hex(6)}"}
    sent.update(headers or {})
    with httpx.Client(base_url=w.rest_url, timeout=60) as client:
        if body is None and content is None:
            return client.get(path, headers={k: v for k, v in sent.items() if v})
        return client.post(
            path, json=body, content=content, headers={k: v for k, v in sent.items() if v}
        )


def _first_answer_past(
    provoke: Callable[[], Outcome], transient: tuple[object, ...] = (404, grpc.StatusCode.NOT_FOUND)
) -> Outcome:
    """The first answer whose status is not ``transient``. Each worker process learns and
    loads deployments on its own: a new one is NOT_FOUND on a worker that has not polled the
    store yet, and 'loading' (UNAVAILABLE) on one still loading it after another failed."""
    deadline = time.monotonic() + 30
    while True:
        outcome = provoke()
        status = outcome.status_code if isinstance(outcome, httpx.Response) else outcome.code()
        if status not in transient or time.monotonic() > deadline:
            return outcome
        time.sleep(0.05)


_SETTLING = (404, 503, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)


# ------------------------------------------------------------------- provocations


def _missing_feature_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment, good_features()[:1]))


def _wrong_shape_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment, shape=(1, 2)))


def _wrong_shape_rest(w: World) -> Outcome:
    return _rest(w, f"/v2/models/{w.deployment}/infer", _infer_json(shape=(1, 2)))


def _infinity_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment, good_features((float("inf"), 0.0, 0.0, 0.0))))


def _infinity_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment, value=float("inf")))


def _infinity_rest(w: World) -> Outcome:
    body = b'{"inputs":[{"name":"input","datatype":"FP64","shape":[1,4],"data":[Infinity,0,0,0]}]}'
    return _rest(w, f"/v2/models/{w.deployment}/infer", content=body)


# a float64 just beyond float32's range: the forest computes in float32 (value_dtype), where it
# would be Infinity; refused before batching, never the model's own ValueError (INTERNAL)
BEYOND_FLOAT32 = 3.4028235677973366e38


def _beyond_float32_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment, good_features((BEYOND_FLOAT32, 0.0, 0.0, 0.0))))


def _beyond_float32_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment, value=BEYOND_FLOAT32))


def _beyond_float32_rest(w: World) -> Outcome:
    tensor = {"name": "input", "datatype": "FP64", "shape": [1, 4]}
    body = {"inputs": [tensor | {"data": [BEYOND_FLOAT32, 0, 0, 0]}]}
    return _rest(w, f"/v2/models/{w.deployment}/infer", body)


def _no_key_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment), metadata=())


def _no_key_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment), metadata=())


def _no_key_rest(w: World) -> Outcome:
    return _rest(w, f"/v2/models/{w.deployment}/infer", _infer_json(), headers={"x-api-key": ""})


def _bad_key_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment), metadata=(("x-api-key", "mlp_nope"),))


def _bad_key_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment), metadata=(("authorization", "Bearer not.a.token"),))


def _bad_key_rest(w: World) -> Outcome:
    return _rest(w, f"/v2/models/{w.deployment}", headers={"x-api-key": "mlp_nope"})


def _missing_model_seed(w: World) -> Outcome:
    return _seed(w, serving_pb2.GetModelRequest(model_id="no-such-model"), method="GetModel")


def _missing_model_v2(w: World) -> Outcome:
    return _v2(w, inference_pb2.ModelMetadataRequest(name="no-such-model"), method="ModelMetadata")


def _missing_model_rest(w: World) -> Outcome:
    return _rest(w, "/v2/models/no-such-model/infer", _infer_json())


def _other_tenant_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment), metadata=w.key(w.other))


def _other_tenant_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment), metadata=w.key(w.other))


def _other_tenant_rest(w: World) -> Outcome:
    return _rest(w, f"/v2/models/{w.deployment}/config", headers={"x-api-key": w.other.api_key})


def _undeployed_version_seed(w: World) -> Outcome:
    return _seed(w, _predict(w.deployment, version="9"))


def _undeployed_version_v2(w: World) -> Outcome:
    return _v2(w, _infer(w.deployment, version="9"))


def _undeployed_version_rest(w: World) -> Outcome:
    return _rest(w, f"/v2/models/{w.deployment}/versions/9/infer", _infer_json())


def _unknown_route_rest(w: World) -> Outcome:
    return _rest(w, "/v2/no/such/route")


def _failed_load_seed(w: World) -> Outcome:
    return _first_answer_past(lambda: _seed(w, _predict(w.broken)), _SETTLING)


def _failed_load_v2(w: World) -> Outcome:
    return _first_answer_past(lambda: _v2(w, _infer(w.broken)), _SETTLING)


def _failed_load_rest(w: World) -> Outcome:
    return _first_answer_past(
        lambda: _rest(w, f"/v2/models/{w.broken}/infer", _infer_json()), _SETTLING
    )


def _missing_artifact(w: World) -> str:
    name = deploy_artifact(w.platform, w.owner, None)
    _await_state(w, name, "failed")
    return name


def _missing_artifact_seed(w: World) -> Outcome:
    name = _missing_artifact(w)
    return _first_answer_past(lambda: _seed(w, _predict(name)), _SETTLING)


def _missing_artifact_v2(w: World) -> Outcome:
    name = _missing_artifact(w)
    return _first_answer_past(lambda: _v2(w, _infer(name)), _SETTLING)


def _missing_artifact_rest(w: World) -> Outcome:
    name = _missing_artifact(w)
    return _first_answer_past(
        lambda: _rest(w, f"/v2/models/{name}/infer", _infer_json()), _SETTLING
    )


def _loading_seed(w: World) -> Outcome:
    name = deploy_artifact(w.platform, w.owner, pickle.dumps(_SlowLoad()))
    return _first_answer_past(lambda: _seed(w, _predict(name)))


def _loading_v2(w: World) -> Outcome:
    name = deploy_artifact(w.platform, w.owner, pickle.dumps(_SlowLoad()))
    return _first_answer_past(lambda: _v2(w, _infer(name)))


def _loading_rest(w: World) -> Outcome:
    name = deploy_artifact(w.platform, w.owner, pickle.dumps(_SlowLoad()))
    return _first_answer_past(lambda: _rest(w, f"/v2/models/{name}/infer", _infer_json()))


def _oversized_seed(w: World) -> Outcome:
    limit = w.platform.settings.grpc_max_message_bytes
    return _seed(w, serving_pb2.PredictRequest(model_id="x" * limit))


def _oversized_v2(w: World) -> Outcome:
    limit = w.platform.settings.grpc_max_message_bytes
    request = _infer(w.deployment)
    request.raw_input_contents.append(bytes(limit))
    return _v2(w, request)


def _oversized_rest(w: World) -> Outcome:
    limit = w.platform.settings.grpc_max_message_bytes
    return _rest(w, f"/v2/models/{w.deployment}/infer", content=bytes(limit + 1))


def _await_state(w: World, name: str, state: str) -> None:
    client = w.platform.client(w.owner)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.get(f"/v1/deployments/{name}").json()["status"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"deployment {name} never reached {state}")


# ------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    error: type[PlatformError]
    code: ErrorCode
    seed: Provoke | None
    v2: Provoke | None
    rest: Provoke | None
    transport: bool = False  # refused by gRPC itself (message size), not by a handler

    @property
    def provoke_kind(self) -> str:
        return "no-key" if self.rest is _no_key_rest else ""


TABLE = [
    Row(
        errors.InvalidArgument,
        ErrorCode.INVALID_ARGUMENT,
        _missing_feature_seed,
        _wrong_shape_v2,
        _wrong_shape_rest,
    ),
    Row(
        errors.InvalidArgument,
        ErrorCode.INVALID_ARGUMENT,
        _infinity_seed,
        _infinity_v2,
        _infinity_rest,
    ),
    Row(
        errors.InvalidArgument,
        ErrorCode.INVALID_ARGUMENT,
        _beyond_float32_seed,
        _beyond_float32_v2,
        _beyond_float32_rest,
    ),
    Row(errors.Unauthenticated, ErrorCode.UNAUTHENTICATED, _no_key_seed, _no_key_v2, _no_key_rest),
    Row(
        errors.Unauthenticated,
        ErrorCode.UNAUTHENTICATED,
        _bad_key_seed,
        _bad_key_v2,
        _bad_key_rest,
    ),
    Row(
        errors.NotFound,
        ErrorCode.NOT_FOUND,
        _missing_model_seed,
        _missing_model_v2,
        _missing_model_rest,
    ),
    Row(
        errors.NotFound,
        ErrorCode.NOT_FOUND,
        _other_tenant_seed,
        _other_tenant_v2,
        _other_tenant_rest,
    ),
    Row(
        errors.NotFound,
        ErrorCode.NOT_FOUND,
        _undeployed_version_seed,
        _undeployed_version_v2,
        _undeployed_version_rest,
    ),
    Row(errors.NotFound, ErrorCode.NOT_FOUND, None, None, _unknown_route_rest),
    Row(
        errors.PreconditionFailed,
        ErrorCode.PRECONDITION_FAILED,
        _failed_load_seed,
        _failed_load_v2,
        _failed_load_rest,
    ),
    Row(
        errors.PreconditionFailed,
        ErrorCode.PRECONDITION_FAILED,
        _missing_artifact_seed,
        _missing_artifact_v2,
        _missing_artifact_rest,
    ),
    Row(errors.Unavailable, ErrorCode.UNAVAILABLE, _loading_seed, _loading_v2, _loading_rest),
    Row(
        errors.PayloadTooLarge,
        ErrorCode.PAYLOAD_TOO_LARGE,
        _oversized_seed,
        _oversized_v2,
        _oversized_rest,
        transport=True,
    ),
]

_NOT_RAISED = {
    "PermissionDenied": "another tenant's deployment answers NOT_FOUND (no existence oracle)",
    "AlreadyExists": "the data plane creates nothing",
    "Conflict": "the data plane changes no state",
    "QuotaExceeded": "no per-tenant serving quota exists",
    "ResourceExhausted": (
        "the data-plane rate limit needs a plane started with a tight budget: "
        "tests/api/test_rate_limits.py::test_data_plane_over_budget_is_resource_exhausted_with_"
        "retry_info; gRPC's own size limit is the PayloadTooLarge row"
    ),
    "UnsupportedMediaType": "V2 REST reads JSON (+ binary tensors) whatever the type says",
    "DeadlineExceeded": (
        "the batcher drops rows whose caller's deadline passed, but the caller's own deadline "
        "fires first with the same code (tests/serving/test_batching.py covers the batcher)"
    ),
    "InternalError": "only unexpected failures (tests/serving/test_grpc_errors.py)",
    "MalformedRequest": "REST syntax errors (headers, page tokens); V2 REST answers 400 anyway",
}
NOT_RAISED_BY_THE_DATA_PLANE = {
    getattr(errors, name): why for name, why in _NOT_RAISED.items() if hasattr(errors, name)
}

TRANSPORTS = ("seed", "v2", "rest")
CASES = [
    pytest.param(row, transport, id=f"{row.error.__name__}-{getattr(row, transport).__name__}")
    for row in TABLE
    for transport in TRANSPORTS
    if getattr(row, transport) is not None
]


def test_the_table_covers_every_domain_error() -> None:
    declared = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, PlatformError) and cls is not PlatformError
    }
    covered = {row.error for row in TABLE} | set(NOT_RAISED_BY_THE_DATA_PLANE)
    assert covered == declared, declared ^ covered
    assert not {row.error for row in TABLE} & set(NOT_RAISED_BY_THE_DATA_PLANE)
    for row in TABLE:
        assert row.error.__init__ is not PlatformError.__init__
        assert RPC_CODE[row.code] and http_status(row.code)


@pytest.mark.parametrize(("row", "transport"), CASES)
def test_domain_error_through_the_data_plane(world: World, row: Row, transport: str) -> None:
    provoke = getattr(row, transport)
    outcome = provoke(world)
    if transport == "rest":
        assert isinstance(outcome, httpx.Response)
        _check_rest(world, row, outcome)
    else:
        assert isinstance(outcome, grpc.RpcError), outcome
        _check_grpc(world, row, outcome)
    world.still_usable()


def _check_grpc(world: World, row: Row, exc: grpc.RpcError) -> None:
    details = exc.details() or ""
    assert exc.code() == grpc.StatusCode[RPC_CODE[row.code]], (exc.code(), details[:300])
    assert details and len(details.encode()) <= 1024
    world.assert_safe_message(details)
    if row.transport:
        return
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details) and info.reason == row.code.value


def _check_rest(world: World, row: Row, response: httpx.Response) -> None:
    want = http_status(row.code, invalid_argument_status=400)
    assert response.status_code == want, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == want
    assert body["code"] == row.code.value
    assert body["type"] == PROBLEM_BASE + row.code.value.lower().replace("_", "-")
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"] == response.request.headers["x-request-id"]
    assert body["detail"] and body["error"] == body["detail"]
    if row.provoke_kind == "no-key":  # a REST client is told about headers, not gRPC metadata
        assert "header" in body["detail"] and "metadata x-api-key" not in body["detail"]
    world.assert_safe_message(response.text)
    if want == 401:
        assert "www-authenticate" in response.headers


def test_a_request_id_is_made_when_the_caller_sends_none(world: World) -> None:
    response = _rest(world, "/v2/models/no-such-model", headers={"x-request-id": ""})
    assert response.status_code == 404
    assert response.json()["request_id"] == response.headers["x-request-id"] != ""
