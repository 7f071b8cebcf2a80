"""``/metrics`` on the serving REST port: one scrape sums every worker (multi-process mode).

A real two-worker serving plane; predictions go over gRPC on fresh channels (SO_REUSEPORT
spreads connections over the workers) until both workers have counted some, then scrapes on
fresh connections (answered by either worker) must all show the exact totals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ml_platform.serving import ArtifactFormat, ServedModel, ServingServer
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.serving.conftest import KEY_T1, authenticator, settings
from tests.serving.doubles import InMemoryDeploymentSource, InMemoryStatusSink
from tests.serving.models_fixture import FEATURES, Built, served

AUTH = (("x-api-key", KEY_T1),)
WORKERS = 2


class Plane:
    def __init__(self, server: ServingServer, data_dir: Path, rows: np.ndarray) -> None:
        self.server = server
        self.data_dir = data_dir
        self.rows = rows

    def scrape(self) -> dict[str, list[Sample]]:
        # a new connection each time: any worker may answer
        response = httpx.get(self.server.rest_url + "/metrics", timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-request-id"]
        return {f.name: list(f.samples) for f in text_string_to_metric_families(response.text)}

    def predict(self, deployment: str, features: list[serving_pb2.Feature]) -> grpc.StatusCode:
        with grpc.insecure_channel(self.server.grpc_target) as channel:  # a fresh connection
            stub = serving_pb2_grpc.ModelServingStub(channel)
            try:
                stub.Predict(
                    serving_pb2.PredictRequest(model_id=deployment, features=features),
                    metadata=AUTH,
                    timeout=30,
                )
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    def row(self, i: int) -> list[serving_pb2.Feature]:
        values = self.rows[i % len(self.rows)]
        return [
            serving_pb2.Feature(name=n, float_value=float(v))
            for n, v in zip(FEATURES, values, strict=True)
        ]

    def workers_with_counts(self) -> set[int]:
        """Worker pids that wrote prediction counts into the shared multi-process dir."""
        files = self.data_dir.glob("serving-metrics/*/counter_*.db")
        pids = {int(p.stem.removeprefix("counter_")) for p in files}
        return pids & set(self.server.worker_pids())


@pytest.fixture(scope="module")
def plane(built: dict[str, Built], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    data_dir = tmp_path_factory.mktemp("serving-metrics-data")
    rf = built["rf"].paths[ArtifactFormat.ONNX]
    deployments: list[ServedModel] = [
        served("t1", "rf-onnx", rf, ArtifactFormat.ONNX),
        served("t1", "missing", data_dir / "no-such-model.onnx", ArtifactFormat.ONNX),
    ]
    sink = InMemoryStatusSink()
    with ServingServer(
        settings(serving_workers=WORKERS, data_dir=data_dir),
        InMemoryDeploymentSource(deployments),
        sink,
        authenticator(),
    ) as server:
        assert sink.wait_for("t1", "rf-onnx", timeout=120).state.value == "ready"
        assert sink.wait_for("t1", "missing", timeout=120).state.value == "failed"
        yield Plane(server, data_dir, built["rf"].X.astype(np.float32))


def value(families: dict[str, list[Sample]], sample_name: str, **labels: str) -> float:
    family = sample_name
    for suffix in ("_total", "_count", "_sum", "_bucket"):
        family = family.removesuffix(suffix)
    return sum(
        s.value
        for s in families.get(family, [])
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_predictions_are_counted_over_every_worker(plane: Plane) -> None:
    ok = {"tenant": "t1", "deployment": "rf-onnx", "status": "OK"}
    before = plane.scrape()
    made = 0
    # at least 5, and until both workers counted some (a bound guards against a hang)
    while made < 5 or len(plane.workers_with_counts()) < WORKERS:
        assert made < 400, f"connections never reached worker {plane.server.worker_pids()}"
        assert plane.predict("rf-onnx", plane.row(made)) is grpc.StatusCode.OK
        made += 1
    for _ in range(4):  # whichever worker answers the scrape sees every worker's counts
        after = plane.scrape()
        assert (
            value(after, "mlp_serving_predictions_total", **ok)
            - value(before, "mlp_serving_predictions_total", **ok)
            == made
        )
        # one row per request: the model calls carried exactly that many rows, however batched
        rows = {"tenant": "t1", "deployment": "rf-onnx"}
        assert (
            value(after, "mlp_serving_batch_rows_sum", **rows)
            - value(before, "mlp_serving_batch_rows_sum", **rows)
            == made
        )
        calls = value(after, "mlp_serving_batch_rows_count", **rows) - value(
            before, "mlp_serving_batch_rows_count", **rows
        )
        assert 1 <= calls <= made


def test_failures_are_counted_by_code_and_unknown_names_never_become_labels(
    plane: Plane,
) -> None:
    before = plane.scrape()
    wrong = [serving_pb2.Feature(name=FEATURES[0], float_value=1.0)]  # missing features
    assert plane.predict("rf-onnx", wrong) is grpc.StatusCode.INVALID_ARGUMENT
    for i in range(2):
        assert plane.predict(f"nope-{i}-zz9", plane.row(0)) is grpc.StatusCode.NOT_FOUND
    after = plane.scrape()
    name = "mlp_serving_predictions_total"
    invalid = {"tenant": "t1", "deployment": "rf-onnx", "status": "INVALID_ARGUMENT"}
    assert value(after, name, **invalid) - value(before, name, **invalid) == 1
    unknown = {"tenant": "t1", "deployment": "unresolved", "status": "NOT_FOUND"}
    assert value(after, name, **unknown) - value(before, name, **unknown) == 2
    labels = {v for samples in after.values() for s in samples for v in s.labels.values()}
    assert not any("zz9" in v for v in labels)


def test_refused_credentials_are_counted_as_rejections(plane: Plane) -> None:
    before = plane.scrape()
    with grpc.insecure_channel(plane.server.grpc_target) as channel:
        stub = serving_pb2_grpc.ModelServingStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(
                    serving_pb2.PredictRequest(model_id="rf-onnx", features=plane.row(0)),
                    metadata=(("x-api-key", "mlp_not_a_key"),),
                    timeout=30,
                )
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    after = plane.scrape()
    name = "mlp_serving_rejections_total"
    assert (
        value(after, name, code="UNAUTHENTICATED") - value(before, name, code="UNAUTHENTICATED")
        == 3
    )
    # refused calls are not predictions
    ok = {"tenant": "t1", "deployment": "rf-onnx"}
    predictions = "mlp_serving_predictions_total"
    assert value(after, predictions, **ok) == value(before, predictions, **ok)


def test_model_load_times_per_worker_and_outcome(plane: Plane) -> None:
    families = plane.scrape()
    name = "mlp_serving_model_load_seconds_count"
    ready = {"tenant": "t1", "deployment": "rf-onnx", "format": "onnx", "outcome": "ready"}
    failed = {"tenant": "t1", "deployment": "missing", "format": "onnx", "outcome": "failed"}
    assert value(families, name, **ready) == WORKERS  # each worker loaded it once
    assert value(families, name, **failed) == WORKERS
    assert value(families, "mlp_serving_model_load_seconds_sum", **ready) > 0


def test_every_v2_rest_response_carries_a_request_id(plane: Plane) -> None:
    base = plane.server.rest_url
    with httpx.Client(base_url=base, timeout=30) as client:
        live = client.get("/v2/health/live")
        assert live.status_code == 200
        assert live.headers["x-request-id"].startswith("req_")
        echoed = client.get("/v2", headers={"X-Request-ID": "trace-v2-7"})
        assert echoed.status_code == 200
        assert echoed.headers["x-request-id"] == "trace-v2-7"
        infer = client.post(
            "/v2/models/rf-onnx/infer",
            headers={"X-API-Key": KEY_T1, "X-Request-ID": "trace-v2-8"},
            json={
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, len(FEATURES)],
                        "data": [float(v) for v in plane.rows[0]],
                    }
                ]
            },
        )
        assert infer.headers["x-request-id"] == "trace-v2-8", infer.text
        missing = client.get("/v2/models/nope", headers={"X-API-Key": KEY_T1})
        assert missing.status_code == 404
        assert missing.json()["request_id"] == missing.headers["x-request-id"]


def test_the_multiprocess_dir_is_under_the_data_dir_and_private(plane: Plane) -> None:
    dirs = list(plane.data_dir.glob("serving-metrics/*"))
    assert len(dirs) == 1
    assert dirs[0].stat().st_mode & 0o077 == 0
    assert any(dirs[0].glob("*.db")), "the workers wrote no metric files there"


def test_cached_children_count_into_their_own_labelled_series() -> None:
    """count_prediction/count_rejection reuse one child per label set: every call still
    counts, each into the series of its own labels."""
    from ml_platform.serving.plane import metrics

    def value(name: str, labels: dict[str, str]) -> float:
        got = metrics.REGISTRY.get_sample_value(name, labels)
        return 0.0 if got is None else got

    ok = {"tenant": "t-cache", "deployment": "d-cache", "status": "OK"}
    bad = dict(ok, status="INVALID_ARGUMENT")
    unresolved = dict(ok, deployment=metrics.UNRESOLVED)
    before = [value("mlp_serving_predictions_total", s) for s in (ok, bad, unresolved)]
    for _ in range(3):
        metrics.count_prediction("t-cache", "d-cache", "OK")
    metrics.count_prediction("t-cache", "d-cache", "INVALID_ARGUMENT")
    metrics.count_prediction("t-cache", None, "OK")
    after = [value("mlp_serving_predictions_total", s) for s in (ok, bad, unresolved)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3.0, 1.0, 1.0]
    code = {"code": "UNAUTHENTICATED"}
    rejected = value("mlp_serving_rejections_total", code)
    metrics.count_rejection("UNAUTHENTICATED")
    metrics.count_rejection("UNAUTHENTICATED")
    assert value("mlp_serving_rejections_total", code) - rejected == 2.0
