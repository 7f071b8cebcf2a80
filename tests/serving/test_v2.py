"""Open Inference Protocol (V2) through unmodified tritonclient, over gRPC and REST."""

from __future__ import annotations

import queue

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import KEY_T1, KEY_T2, Serving
from tests.serving.models_fixture import FEATURES

HEADERS = {"x-api-key": KEY_T1}


def _expected(serving: Serving, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est = serving.models["rf"].estimator
    return est.predict(X), est.predict_proba(X)


def test_tritonclient_grpc_infer_metadata_and_readiness(serving: Serving) -> None:
    client = tgrpc.InferenceServerClient(serving.server.grpc_target)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("rf-skops", headers=HEADERS)
    meta = client.get_model_metadata("rf-skops", headers=HEADERS, as_json=True)
    assert meta["inputs"][0]["shape"] == ["-1", str(len(FEATURES))]
    X = serving.models["rf"].X[:64]
    inp = tgrpc.InferInput("input", list(X.shape), "FP64")
    inp.set_data_from_numpy(X)
    result = client.infer("rf-skops", [inp], headers=HEADERS)
    want, proba = _expected(serving, X)
    assert np.array_equal(result.as_numpy("predictions"), want)
    assert np.allclose(result.as_numpy("probabilities"), proba)
    # only the requested output comes back
    only = client.infer(
        "rf-skops", [inp], outputs=[tgrpc.InferRequestedOutput("predictions")], headers=HEADERS
    )
    assert only.as_numpy("probabilities") is None
    client.close()


def test_tritonclient_grpc_per_feature_tensors(serving: Serving) -> None:
    client = tgrpc.InferenceServerClient(serving.server.grpc_target)
    X = serving.models["rf"].X[:10].astype(np.float32)
    inputs = []
    for i, name in reversed(list(enumerate(FEATURES))):
        t = tgrpc.InferInput(name, [10], "FP32")
        t.set_data_from_numpy(np.ascontiguousarray(X[:, i]))
        inputs.append(t)
    result = client.infer("rf-onnx", inputs, headers=HEADERS)
    assert np.array_equal(result.as_numpy("predictions"), serving.models["rf"].estimator.predict(X))
    client.close()


def test_tritonclient_grpc_streaming(serving: Serving) -> None:
    client = tgrpc.InferenceServerClient(serving.server.grpc_target)
    results: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(
        callback=lambda result, error: results.put((result, error)), headers=HEADERS
    )
    X = serving.models["rf"].X[:8]
    for i, row in enumerate(X):
        inp = tgrpc.InferInput("input", [1, len(FEATURES)], "FP64")
        inp.set_data_from_numpy(row[None])
        client.async_stream_infer("rf-joblib", [inp], request_id=str(i))
    bad = tgrpc.InferInput("input", [1, 2], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 2)))
    client.async_stream_infer("rf-joblib", [bad], request_id="bad")
    got: dict[str, float] = {}
    errors = []
    for _ in range(9):
        result, error = results.get(timeout=30)
        if error is not None:
            errors.append(error)
        else:
            got[result.get_response().id] = float(result.as_numpy("predictions")[0])  # type: ignore[attr-defined]
    client.stop_stream()
    client.close()
    want = serving.models["rf"].estimator.predict(X)
    assert got == {str(i): float(w) for i, w in enumerate(want)}
    assert len(errors) == 1 and "expects 6 features" in str(errors[0])


def test_tritonclient_grpc_errors(serving: Serving) -> None:
    client = tgrpc.InferenceServerClient(serving.server.grpc_target)
    inp = tgrpc.InferInput("input", [1, len(FEATURES)], "FP64")
    inp.set_data_from_numpy(np.zeros((1, len(FEATURES))))
    with pytest.raises(InferenceServerException) as info:
        client.infer("rf-skops", [inp], headers={"x-api-key": KEY_T2})
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as info:
        client.infer("rf-skops", [inp])
    assert info.value.status() == "StatusCode.UNAUTHENTICATED"
    client.close()


def test_tritonclient_http_infer_binary_and_json(serving: Serving) -> None:
    host = serving.server.rest_url.removeprefix("http://")
    client = thttp.InferenceServerClient(host)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("xgb-json", headers=HEADERS)
    assert client.get_model_metadata("xgb-json", headers=HEADERS)["versions"] == ["1"]
    X = serving.models["xgb"].X[:32].astype(np.float32)
    booster = serving.models["xgb"].estimator
    for binary in (True, False):
        inp = thttp.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        outs = [
            thttp.InferRequestedOutput(n, binary_data=binary)
            for n in ("predictions", "probabilities")
        ]
        result = client.infer(
            "xgb-json", [inp], outputs=outs, headers=dict(HEADERS)
        )  # it mutates headers
        assert np.array_equal(result.as_numpy("predictions"), booster.predict(X))
        assert np.allclose(result.as_numpy("probabilities"), booster.predict_proba(X), atol=1e-6)
    client.close()


@pytest.mark.parametrize("layout", ["flat", "nested", "ragged"])
def test_v2_rest_json_tensors_give_the_models_predictions_in_any_nesting(
    serving: Serving, layout: str
) -> None:
    """Nested data is read in row-major order at any depth (as Triton reads it); the element
    count must match the shape."""
    X = serving.models["rf"].X[:300].astype(np.float32)
    flat = X.ravel().tolist()
    data = {"flat": flat, "nested": X.tolist(), "ragged": [flat[:7], [flat[7:50]], flat[50:]]}
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(X.shape)}]}
    body["inputs"][0]["data"] = data[layout]
    with httpx.Client(base_url=serving.server.rest_url, headers=HEADERS) as http:
        resp = http.post("/v2/models/rf-skops/infer", content=orjson.dumps(body))
        assert resp.status_code == 200, resp.text
        outputs = {o["name"]: o for o in resp.json()["outputs"]}
        labels, probabilities = _expected(serving, X)
        assert np.array_equal(outputs["predictions"]["data"], labels)
        assert np.allclose(np.reshape(outputs["probabilities"]["data"], (300, -1)), probabilities)
        body["inputs"][0]["shape"] = [301, X.shape[1]]  # one row more than the data holds
        short = http.post("/v2/models/rf-skops/infer", content=orjson.dumps(body))
        assert short.status_code == 400 and "elements" in short.json()["detail"]


def test_rest_errors_are_problem_documents(serving: Serving) -> None:
    base = serving.server.rest_url
    with httpx.Client(base_url=base, headers=HEADERS) as http:
        missing = http.get("/v2/models/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        body = missing.json()
        assert (
            body["status"] == 404
            and body["code"] == "NOT_FOUND"
            and body["error"] == body["detail"]
        )
        malformed = http.post("/v2/models/rf-skops/infer", content=b"{not json")
        assert malformed.status_code == 400
        assert malformed.json()["code"] == "INVALID_ARGUMENT"
        wrong = http.post(
            "/v2/models/rf-skops/infer",
            json={
                "inputs": [
                    {"name": "input", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0]}
                ]
            },
        )
        assert wrong.status_code == 400 and "expects 6 features" in wrong.json()["detail"]
        nan = http.post(
            "/v2/models/rf-skops/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [1, 6],
                        "data": [1, 2, 3, 4, 5, None],
                    }
                ]
            },
        )
        assert nan.status_code == 400
        unauth = httpx.post(f"{base}/v2/models/rf-skops/infer", json={"inputs": []})
        assert unauth.status_code == 401 and "www-authenticate" in unauth.headers
        other_tenant = httpx.get(f"{base}/v2/models/rf-skops", headers={"x-api-key": KEY_T2})
        assert other_tenant.status_code == 404
        assert http.get("/v2/unknown/route").status_code == 404
        ok = http.post(
            "/v2/models/rf-skops/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [1, 6],
                        "data": [0, 0, 0, 0, 0, 0],
                    }
                ]
            },
        )
        assert ok.status_code == 200 and ok.json()["outputs"][0]["name"] == "predictions"


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])  # FP32 rows are read as float32
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_v2_infinity_is_invalid_argument_on_grpc(
    serving: Serving, datatype: str, bad: float
) -> None:
    client = tgrpc.InferenceServerClient(serving.server.grpc_target)
    X = serving.models["rf"].X[:2].astype(np.float64 if datatype == "FP64" else np.float32)
    X[1, 0] = bad
    inp = tgrpc.InferInput("input", list(X.shape), datatype)
    inp.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as info:
        client.infer("rf-skops", [inp], headers=HEADERS)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT", info.value.message()


_ONE_ROW = (
    b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 6], "data": [0,0,0,0,0,0]}]'
)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"inference-header-content-length": "abc"}, b'{"inputs": []}'),
        ({"inference-header-content-length": b"\xb2"}, b'{"inputs": []}'),
        ({"inference-header-content-length": "999999"}, b'{"inputs": []}'),
        ({}, b'{"inputs": [1, 2]}'),
        ({}, b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": "ab", "data": []}]}'),
        ({}, b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1.5], "data": [1]}]}'),
        ({}, b'{"inputs": [{"name": "input", "datatype": "FP64", "parameters": [1]}]}'),
        (
            {},
            b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 6],'
            b' "parameters": {"binary_data_size": "x"}}]}',
        ),
        ({}, _ONE_ROW + b', "outputs": [1]}'),
        ({}, _ONE_ROW + b', "outputs": [{"name": "predictions", "parameters": "x"}]}'),
        ({}, _ONE_ROW + b', "parameters": 3}'),
    ],
)
def test_v2_rest_malformed_but_json_bodies_are_400(
    serving: Serving, headers: dict[str, str], body: bytes
) -> None:
    with httpx.Client(base_url=serving.server.rest_url) as http:
        resp = http.post("/v2/models/rf-skops/infer", content=body, headers={**HEADERS, **headers})
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["code"] == "INVALID_ARGUMENT" and problem["error"] == problem["detail"]
        # rendered by core.problems: a request_id, echoed in X-Request-ID
        assert problem["request_id"] and problem["request_id"] == resp.headers["x-request-id"]
        assert problem["type"].startswith("https://")
        # the connection survives: the next request on it is answered
        assert http.get("/v2/health/live").status_code == 200


def test_v2_rest_problems_carry_the_callers_request_id(serving: Serving) -> None:
    with httpx.Client(base_url=serving.server.rest_url) as http:
        resp = http.get("/v2/models/nope", headers={**HEADERS, "x-request-id": "req-abc-1"})
        assert resp.status_code == 404
        assert resp.json()["request_id"] == "req-abc-1" == resp.headers["x-request-id"]
        assert resp.json()["instance"] == "/v2/models/nope"


def _check_config(config: dict[str, object], n_labels: int = 2) -> None:
    assert config["name"] == "rf-skops"
    assert config["platform"] == "sklearn" and config["backend"] == "skops"
    assert config["max_batch_size"] == 32
    (inp,) = config["input"]  # type: ignore[misc]
    assert inp["name"] == "input" and inp["data_type"] == "TYPE_FP64"
    assert [int(d) for d in inp["dims"]] == [len(FEATURES)]
    outputs = {o["name"]: o for o in config["output"]}  # type: ignore[attr-defined]
    assert set(outputs) == {"predictions", "probabilities"}
    assert outputs["probabilities"]["data_type"] == "TYPE_FP64"
    assert [int(d) for d in outputs["probabilities"]["dims"]] == [n_labels]
    assert [int(d) for d in outputs["predictions"]["dims"]] == [1]


def test_tritonclient_get_model_config_over_grpc_and_http(serving: Serving) -> None:
    """Issue 9, item 10: get_model_config answered UNIMPLEMENTED (gRPC) / 404 (HTTP)."""
    gclient = tgrpc.InferenceServerClient(serving.server.grpc_target)
    got = gclient.get_model_config("rf-skops", headers=HEADERS, as_json=True)
    _check_config(got["config"])
    typed = gclient.get_model_config("rf-skops", model_version="1", headers=HEADERS).config
    assert typed.max_batch_size == 32 and list(typed.input[0].dims) == [len(FEATURES)]
    with pytest.raises(InferenceServerException) as info:
        gclient.get_model_config("rf-skops", headers={"x-api-key": KEY_T2})
    assert info.value.status() == "StatusCode.NOT_FOUND"
    gclient.close()
    hclient = thttp.InferenceServerClient(serving.server.rest_url.removeprefix("http://"))
    _check_config(hclient.get_model_config("rf-skops", headers=HEADERS))
    assert hclient.get_model_config("rf-skops", "1", headers=HEADERS)["name"] == "rf-skops"
    with pytest.raises(InferenceServerException):
        hclient.get_model_config("nope", headers=HEADERS)
    hclient.close()
