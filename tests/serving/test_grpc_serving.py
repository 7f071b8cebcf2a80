"""The seed's ModelServing over real sockets against a multi-process serving plane."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ml_platform.serving.adapters.grpc_serving import ITEM_ERRORS_KEY
from ml_platform.serving.proto import serving_pb2
from tests.serving.conftest import KEY_T1, KEY_T2, MAX_MESSAGE_BYTES, Serving
from tests.serving.models_fixture import FEATURES

AUTH = (("x-api-key", KEY_T1),)
AUTH2 = (("authorization", f"Bearer {KEY_T2}"),)


def features(row: np.ndarray, *, shuffle: bool = True) -> list[serving_pb2.Feature]:
    items = [
        serving_pb2.Feature(name=n, float_value=float(v))
        for n, v in zip(FEATURES, row, strict=True)
    ]
    return items[::-1] if shuffle else items


def expected_proba(serving: Serving, deployment: str, X: np.ndarray) -> np.ndarray:
    name = {"rf": "rf", "logreg": "logreg", "xgb": "xgb", "t2": "logreg"}[deployment.split("-")[0]]
    return serving.models[name].estimator.predict_proba(X.astype(np.float32))


def error_of(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return exc.code(), exc.details()


@pytest.mark.parametrize(
    "deployment", ["rf-skops", "rf-joblib", "rf-onnx", "logreg-onnx", "xgb-json", "xgb-ubj"]
)
def test_predict_matches_the_model_called_directly(serving: Serving, deployment: str) -> None:
    X = serving.models["rf"].X[:5].astype(np.float32)
    proba = expected_proba(serving, deployment, X)
    for row, p in zip(X, proba, strict=True):
        resp = serving.stub.Predict(
            serving_pb2.PredictRequest(model_id=deployment, features=features(row)), metadata=AUTH
        )
        assert resp.predictions == [float(np.argmax(p))]
        assert resp.model_version_used == "1"
        assert resp.latency_microseconds > 0
        scores = [resp.confidence_scores["0"], resp.confidence_scores["1"]]
        assert np.allclose(scores, p, atol=1e-5)


def test_versions_aliases_positional_and_float_array(serving: Serving) -> None:
    row = serving.models["rf"].X[0]
    want = serving.models["rf"].estimator.predict(row.astype(np.float32)[None])[0]
    for version in ("", "latest", "1", "prod"):
        resp = serving.stub.Predict(
            serving_pb2.PredictRequest(
                model_id="rf-skops", version=version, features=features(row)
            ),
            metadata=AUTH,
        )
        assert resp.predictions == [want]
    by_model_name = serving.stub.Predict(
        serving_pb2.PredictRequest(model_id="rf", features=features(row)), metadata=AUTH
    )
    assert by_model_name.predictions == [want]
    positional = [serving_pb2.Feature(float_value=float(v)) for v in row]
    assert serving.stub.Predict(
        serving_pb2.PredictRequest(model_id="rf-skops", features=positional), metadata=AUTH
    ).predictions == [want]
    arr = [serving_pb2.Feature(float_array=serving_pb2.FloatArray(values=row.tolist()))]
    assert serving.stub.Predict(
        serving_pb2.PredictRequest(model_id="rf-skops", features=arr), metadata=AUTH
    ).predictions == [want]


def test_get_model_and_health_check(serving: Serving) -> None:
    info = serving.stub.GetModel(
        serving_pb2.GetModelRequest(model_id="rf-skops", version="latest"), metadata=AUTH
    )
    assert info.model_id == "rf-skops" and info.version == "1"
    assert list(info.input_features) == list(FEATURES)
    assert list(info.output_labels) == ["0", "1"]
    assert info.metadata["aliases"] == "prod"
    health = serving.stub.HealthCheck(
        serving_pb2.HealthCheckRequest(model_id="rf-onnx"), metadata=AUTH
    )
    assert health.healthy and health.details["state"] == "ready"
    assert health.details["isolation"] == "shared-worker"


def test_predict_batch_is_one_call_and_reports_bad_items(serving: Serving) -> None:
    X = serving.models["rf"].X[:40].astype(np.float32)
    want = serving.models["rf"].estimator.predict(X)
    items = [serving_pb2.PredictRequest(features=features(r)) for r in X]
    bad = serving_pb2.PredictRequest(features=[serving_pb2.Feature(name="nope", float_value=1.0)])
    items.insert(7, bad)
    nan_row = X[0].copy()
    nan_row[2] = np.nan
    items.insert(20, serving_pb2.PredictRequest(features=features(nan_row)))
    resp, call = serving.stub.PredictBatch.with_call(
        serving_pb2.PredictBatchRequest(model_id="rf-skops", requests=items), metadata=AUTH
    )
    assert len(resp.responses) == 42
    assert not resp.responses[7].predictions and not resp.responses[20].predictions
    good = [r.predictions[0] for i, r in enumerate(resp.responses) if i not in (7, 20)]
    assert good == want.tolist()
    trailing = dict(call.trailing_metadata())
    report = error_details_pb2.BadRequest.FromString(trailing[ITEM_ERRORS_KEY])
    fields = {v.field: v.description for v in report.field_violations}
    assert set(fields) == {"requests[7]", "requests[20]"}
    assert "unknown feature(s) nope" in fields["requests[7]"] and "NaN" in fields["requests[20]"]


def test_predict_batch_of_compact_float_arrays_matches_the_model(serving: Serving) -> None:
    X = serving.models["rf"].X[:300].astype(np.float32)
    proba = expected_proba(serving, "rf-skops", X)

    def item(row: np.ndarray) -> serving_pb2.PredictRequest:
        return serving_pb2.PredictRequest(
            features=[serving_pb2.Feature(float_array=serving_pb2.FloatArray(values=row.tolist()))]
        )

    items = [item(r) for r in X]
    resp, call = serving.stub.PredictBatch.with_call(
        serving_pb2.PredictBatchRequest(model_id="rf-skops", version="prod", requests=items),
        metadata=AUTH,
    )
    assert len(resp.responses) == 300 and resp.total_latency_microseconds > 0
    assert [r.predictions[0] for r in resp.responses] == np.argmax(proba, axis=1).tolist()
    scores = np.array(
        [[r.confidence_scores["0"], r.confidence_scores["1"]] for r in resp.responses]
    )
    assert np.allclose(scores, proba, atol=1e-6)
    assert {r.model_version_used for r in resp.responses} == {"1"}
    assert ITEM_ERRORS_KEY not in dict(call.trailing_metadata() or ())

    # a short row among compact ones: that item is reported, the others are answered
    items[3] = item(X[3][:-1])
    resp, call = serving.stub.PredictBatch.with_call(
        serving_pb2.PredictBatchRequest(model_id="rf-skops", requests=items), metadata=AUTH
    )
    assert not resp.responses[3].predictions
    good = [r.predictions[0] for i, r in enumerate(resp.responses) if i != 3]
    assert good == np.delete(np.argmax(proba, axis=1), 3).tolist()
    report = error_details_pb2.BadRequest.FromString(
        dict(call.trailing_metadata())[ITEM_ERRORS_KEY]
    )
    assert [v.field for v in report.field_violations] == ["requests[3]"]


def test_predict_stream_answers_in_order(serving: Serving) -> None:
    X = serving.models["rf"].X[:15].astype(np.float32)
    want = serving.models["rf"].estimator.predict(X).tolist()
    msgs = [serving_pb2.PredictRequest(model_id="rf-joblib", features=features(r)) for r in X]
    out = list(serving.stub.PredictStream(iter(msgs), metadata=AUTH))
    assert [r.predictions[0] for r in out] == want


def _stream_error(
    serving: Serving,
    msgs: list[serving_pb2.PredictRequest],
    metadata: tuple[tuple[str, str], ...] = AUTH,
) -> tuple[list[serving_pb2.PredictResponse], grpc.RpcError]:
    got: list[serving_pb2.PredictResponse] = []
    with pytest.raises(grpc.RpcError) as info:
        for resp in serving.stub.PredictStream(iter(msgs), metadata=metadata):
            got.append(resp)
    return got, info.value


def test_predict_stream_ends_with_the_status_of_a_bad_or_foreign_message(
    serving: Serving,
) -> None:
    """Issue 9, item 10: a bad or foreign message got an empty OK response."""
    X = serving.models["rf"].X[:4]
    good = [serving_pb2.PredictRequest(model_id="rf-joblib", features=features(r)) for r in X]
    cases = {
        "bad": (
            serving_pb2.PredictRequest(
                model_id="rf-joblib", features=[serving_pb2.Feature(name="f0")]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "foreign": (  # tenant two's deployment, asked for by tenant one
            serving_pb2.PredictRequest(model_id="t2-joblib", features=features(X[0])),
            grpc.StatusCode.NOT_FOUND,
        ),
        "no model": (
            serving_pb2.PredictRequest(features=features(X[0])),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    }
    for case, (msg, code) in cases.items():
        got, err = _stream_error(serving, [*good[:2], msg, *good[2:]])
        assert err.code() == code, (case, err.details())
        assert all(r.predictions for r in got), case  # never an empty answer
        assert len(got) <= 2, case
    _, err = _stream_error(serving, good, metadata=())
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_predict_stream_model_failure_is_internal_with_a_generic_message(
    serving: Serving,
) -> None:
    """Issue 9, item 10: an unexpected error ended the stream as UNKNOWN with its raw text."""
    row = serving.models["rf"].X[0].copy()
    row[0] = 1e7  # RaiseOnPredict raises RuntimeError("secret internal detail: ...")
    msgs = [serving_pb2.PredictRequest(model_id="raises", features=features(row))]
    _, err = _stream_error(serving, msgs)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.details() and "/etc" not in err.details()
    assert "Traceback" not in err.details()


def _bad(
    serving: Serving,
    request: serving_pb2.PredictRequest,
    metadata: tuple[tuple[str, str], ...] = AUTH,
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        serving.stub.Predict(request, metadata=metadata)
    return info.value


def test_invalid_features_are_invalid_argument_with_the_signature(serving: Serving) -> None:
    row = serving.models["rf"].X[0]
    cases = {
        "missing": features(row)[:-1],
        "unknown": [*features(row), serving_pb2.Feature(name="extra", float_value=1.0)],
        "type": [*features(row)[:-1], serving_pb2.Feature(name="f0", string_value="high")],
        "nan": [serving_pb2.Feature(name=n, float_value=float("nan")) for n in FEATURES],
        "empty": [],
        "count": [serving_pb2.Feature(float_value=1.0)],
    }
    for case, feats in cases.items():
        err = _bad(serving, serving_pb2.PredictRequest(model_id="rf-skops", features=feats))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, case
        assert "f0: float64" in err.details(), case  # the expected signature is in the message
    status = rpc_status.from_call(
        _bad(serving, serving_pb2.PredictRequest(model_id="rf-skops", features=cases["missing"]))
    )
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details)
    assert [v.field for v in bad_request.field_violations] == ["features.f0"]


def test_empty_batch_is_invalid_argument(serving: Serving) -> None:
    with pytest.raises(grpc.RpcError) as info:
        serving.stub.PredictBatch(
            serving_pb2.PredictBatchRequest(model_id="rf-skops"), metadata=AUTH
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_not_found_unauthenticated_and_tenant_isolation(serving: Serving) -> None:
    row = serving.models["rf"].X[0]
    assert (
        _bad(serving, serving_pb2.PredictRequest(model_id="nope", features=features(row))).code()
        == grpc.StatusCode.NOT_FOUND
    )
    err = _bad(
        serving,
        serving_pb2.PredictRequest(model_id="rf-skops", version="9", features=features(row)),
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert _bad(
        serving, serving_pb2.PredictRequest(model_id="rf-skops", features=features(row)), ()
    ).code() == (grpc.StatusCode.UNAUTHENTICATED)
    wrong = (("x-api-key", "mlp_wrong"),)
    assert _bad(
        serving, serving_pb2.PredictRequest(model_id="rf-skops", features=features(row)), wrong
    ).code() == (grpc.StatusCode.UNAUTHENTICATED)
    # tenant two cannot see tenant one's deployment, and gets the same answer as for a missing one
    other = _bad(
        serving, serving_pb2.PredictRequest(model_id="rf-skops", features=features(row)), AUTH2
    )
    missing = _bad(
        serving,
        serving_pb2.PredictRequest(model_id="does-not-exist", features=features(row)),
        AUTH2,
    )
    assert other.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert "rf-skops" in other.details()


def test_model_that_raises_is_internal_with_a_safe_message(serving: Serving) -> None:
    row = serving.models["rf"].X[0].copy()
    fine = serving.stub.Predict(
        serving_pb2.PredictRequest(model_id="raises", features=features(row)), metadata=AUTH
    )
    assert fine.predictions == [1.0]
    row[0] = 1e7
    err = _bad(serving, serving_pb2.PredictRequest(model_id="raises", features=features(row)))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.details() and "Traceback" not in err.details()
    ok = serving.stub.Predict(
        serving_pb2.PredictRequest(model_id="rf-joblib", features=features(row)), metadata=AUTH
    )
    assert len(ok.predictions) == 1


def test_over_the_message_limit_is_resource_exhausted(serving: Serving) -> None:
    big = serving_pb2.FloatArray(values=[0.5] * (MAX_MESSAGE_BYTES // 4 + 10))
    err = _bad(
        serving,
        serving_pb2.PredictRequest(
            model_id="rf-skops", features=[serving_pb2.Feature(float_array=big)]
        ),
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_pickle_models_of_two_tenants_run_in_different_processes(serving: Serving) -> None:
    h1 = serving.stub.HealthCheck(
        serving_pb2.HealthCheckRequest(model_id="rf-joblib"), metadata=AUTH
    )
    h2 = serving.stub.HealthCheck(
        serving_pb2.HealthCheckRequest(model_id="t2-joblib"), metadata=AUTH2
    )
    assert h1.details["isolation"] == h2.details["isolation"] == "tenant-sandbox"
    # the pids are internal state (the status sink), never in a response
    (pid1,) = serving.sink.wait_for("t1", "rf-joblib", timeout=30).pids
    (pid2,) = serving.sink.wait_for("t2", "t2-joblib", timeout=30).pids
    assert pid1 != pid2
    workers = set(serving.server.worker_pids())
    assert pid1 not in workers and pid2 not in workers
    assert serving.server.sandbox_pids() == {"t1": pid1, "t2": pid2}
    # and the safe-format model of tenant one is served inside the front workers themselves
    assert set(serving.sink.wait_for("t1", "xgb-json", timeout=30).pids) == workers


def test_responses_expose_no_process_ids(serving: Serving) -> None:
    """Issue 9, item 4: GetModel and HealthCheck details said worker_pid / model_pid."""
    info = serving.stub.GetModel(serving_pb2.GetModelRequest(model_id="rf-joblib"), metadata=AUTH)
    healths = [
        serving.stub.HealthCheck(serving_pb2.HealthCheckRequest(model_id=m), metadata=AUTH)
        for m in ("", "rf-joblib", "xgb-json")
    ]
    pids = {str(p) for p in serving.server.worker_pids()} | {
        str(p) for p in serving.server.sandbox_pids().values()
    }
    for details in [info.metadata, *(h.details for h in healths)]:
        assert not any("pid" in key for key in details), dict(details)
        assert not pids & set(details.values()), dict(details)


def test_grpc_health_and_reflection(serving: Serving) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(serving.channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(service="")).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    refl = reflection_pb2_grpc.ServerReflectionStub(serving.channel)
    answers = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert "ml_platform.serving.ModelServing" in names
    assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 1e300])
def test_infinity_and_overflow_are_invalid_argument_like_nan(
    serving: Serving, value: float
) -> None:
    row = serving.models["rf"].X[0].astype(np.float64).copy()
    row[1] = value
    err = _bad(serving, serving_pb2.PredictRequest(model_id="rf-skops", features=features(row)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert FEATURES[1] in err.details() and "Infinity" in err.details()


def test_errors_about_huge_inputs_stay_within_the_metadata_limit(serving: Serving) -> None:
    """Issue 9, item 4: the echoed value pushed the status past the client's 16 KiB limit."""
    row = serving.models["rf"].X[0]
    huge_id = "m" * 10_000
    err = _bad(serving, serving_pb2.PredictRequest(model_id=huge_id, features=features(row)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert len(err.details().encode()) <= 512
    unknown = [serving_pb2.Feature(name=f"x{i}", float_value=1.0) for i in range(60_000)]
    err = _bad(serving, serving_pb2.PredictRequest(model_id="rf-skops", features=unknown))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details)
    assert 1 <= len(bad_request.field_violations) <= 11
