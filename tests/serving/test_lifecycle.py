"""Deployment lifecycle on a real multi-process plane: pickle policy, hostile artifacts,
rolling version swaps under load, and worker replacement after SIGKILL."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from ml_platform.serving import (
    ArtifactFormat,
    LoadState,
    ServingServer,
)
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.serving.conftest import KEY_T1, authenticator, settings
from tests.serving.doubles import InMemoryDeploymentSource, InMemoryStatusSink
from tests.serving.models_fixture import Built, CrashOnLoad, HangOnLoad, served
from tests.serving.test_grpc_serving import AUTH, features

pytestmark = pytest.mark.slow


def _predict(
    stub: serving_pb2_grpc.ModelServingStub, model_id: str, row: np.ndarray
) -> serving_pb2.PredictResponse:
    return stub.Predict(
        serving_pb2.PredictRequest(model_id=model_id, features=features(row)),
        metadata=(("x-api-key", KEY_T1),),
        timeout=30,
        wait_for_ready=True,
    )


def test_pickle_formats_switched_off_fail_with_a_clear_reason(built: dict[str, Built]) -> None:
    rf = built["rf"].paths
    source = InMemoryDeploymentSource(
        [
            served("t1", "pickled", rf[ArtifactFormat.JOBLIB], ArtifactFormat.JOBLIB),
            served("t1", "safe", rf[ArtifactFormat.SKOPS], ArtifactFormat.SKOPS),
        ]
    )
    sink = InMemoryStatusSink()
    with ServingServer(
        settings(allow_pickle=False, serving_workers=1), source, sink, authenticator()
    ) as server:
        failed = sink.wait_for("t1", "pickled", timeout=60)
        assert failed.state is LoadState.FAILED
        assert "allow_pickle=false" in failed.reason and "skops" in failed.reason
        assert sink.wait_for("t1", "safe", timeout=60).state is LoadState.READY
        assert server.sandbox_pids() == {}  # no process ever unpickled anything
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = serving_pb2_grpc.ModelServingStub(channel)
            row = built["rf"].X[0]
            try:
                _predict(stub, "pickled", row)
                raise AssertionError("expected an error")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "allow_pickle=false" in exc.details()
            assert len(_predict(stub, "safe", row).predictions) == 1


def test_models_that_crash_or_hang_on_load_fail_only_their_deployment(
    built: dict[str, Built], tmp_path: Path
) -> None:
    crash, hang = tmp_path / "crash.pkl", tmp_path / "hang.pkl"
    crash.write_bytes(pickle.dumps(CrashOnLoad()))
    hang.write_bytes(pickle.dumps(HangOnLoad()))
    rf = built["rf"].paths
    source = InMemoryDeploymentSource(
        [
            served("crasher", "crash", crash, ArtifactFormat.PICKLE),
            served("hanger", "hang", hang, ArtifactFormat.PICKLE),
            served("t1", "good", rf[ArtifactFormat.SKOPS], ArtifactFormat.SKOPS),
            served("t1", "good-pickle", rf[ArtifactFormat.JOBLIB], ArtifactFormat.JOBLIB),
        ]
    )
    sink = InMemoryStatusSink()
    # generous enough that a legitimate load on a busy CI machine (two pytest workers on two
    # cores; 8 s was seen to time out a skops load) is not mistaken for a hang
    cfg = settings(serving_workers=1, serving_model_load_timeout_seconds=25.0)
    with ServingServer(cfg, source, sink, authenticator()) as server:
        crashed = sink.wait_for("crasher", "crash", (LoadState.FAILED,), timeout=60)
        assert "crashed" in crashed.reason
        hung = sink.wait_for("hanger", "hang", (LoadState.FAILED,), timeout=60)
        assert "load" in hung.reason
        assert sink.wait_for("t1", "good", timeout=60).state is LoadState.READY
        assert sink.wait_for("t1", "good-pickle", timeout=60).state is LoadState.READY
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = serving_pb2_grpc.ModelServingStub(channel)
            assert len(_predict(stub, "good", built["rf"].X[0]).predictions) == 1
            assert len(_predict(stub, "good-pickle", built["rf"].X[0]).predictions) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (ArtifactFormat.SKOPS, ArtifactFormat.ONNX),  # loaded in the front workers
        (ArtifactFormat.JOBLIB, ArtifactFormat.JOBLIB),  # loaded in the tenant's sandbox
    ],
)
def test_rolling_version_swap_under_load_has_zero_failures(
    built: dict[str, Built], first: ArtifactFormat, second: ArtifactFormat
) -> None:
    rf, lr = built["rf"].paths, built["logreg"].paths
    v1 = served("t1", "churn", rf[first], first, version=1, model="churn")
    v2 = served("t1", "churn", lr[second], second, version=2, model="churn")
    source = InMemoryDeploymentSource([v1])
    sink = InMemoryStatusSink()
    with ServingServer(settings(), source, sink, authenticator()) as server:
        assert sink.wait_for("t1", "churn", version=1, timeout=60).state is LoadState.READY
        failures: list[BaseException] = []
        versions: list[str] = []
        stop = threading.Event()
        rows = built["rf"].X[:50]

        def client() -> None:
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = serving_pb2_grpc.ModelServingStub(channel)
                i = 0
                while not stop.is_set():
                    try:
                        versions.append(
                            _predict(stub, "churn", rows[i % len(rows)]).model_version_used
                        )
                    except grpc.RpcError as exc:
                        failures.append(exc)
                    i += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        while len(versions) < 50:
            time.sleep(0.01)
        source.set_models([v2])
        assert sink.wait_for("t1", "churn", (LoadState.READY,), version=2, timeout=60).version == 2
        seen_after = len(versions)
        while len(versions) < seen_after + 100:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions) == {"1", "2"}


def test_a_sigkilled_worker_is_replaced_and_serving_resumes(built: dict[str, Built]) -> None:
    rf = built["rf"].paths
    source = InMemoryDeploymentSource(
        [served("t1", "m", rf[ArtifactFormat.ONNX], ArtifactFormat.ONNX)]
    )
    sink = InMemoryStatusSink()
    with ServingServer(settings(), source, sink, authenticator()) as server:
        assert sink.wait_for("t1", "m", timeout=60).state is LoadState.READY
        before = server.worker_pids()
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = server.worker_pids()
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.05)
        after = server.worker_pids()
        assert before[0] not in after and len(after) == 2
        assert sink.wait_for("t1", "m", (LoadState.READY,), timeout=60).state is LoadState.READY
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = serving_pb2_grpc.ModelServingStub(channel)
            for row in built["rf"].X[:20]:
                assert len(_predict(stub, "m", row).predictions) == 1
    assert AUTH  # same credentials as the main suite
