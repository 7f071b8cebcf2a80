"""A pickle model that skops can write with trusted types only is served in the shared
workers from its sandbox's export; anything else stays in its sandbox, and says why."""

from __future__ import annotations

import asyncio
import functools
import operator
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from ml_platform.serving import ArtifactFormat, ServingServer
from ml_platform.serving.plane.repository import ModelRepository, same_prediction
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from ml_platform.serving.runtimes.base import ModelLoadError, Prediction
from ml_platform.serving.runtimes.scikit_learn import SklearnRuntime, load_skops, skops_export
from tests.serving.conftest import KEY_T1, authenticator
from tests.serving.conftest import settings as serving_settings
from tests.serving.doubles import InMemoryDeploymentSource, InMemoryStatusSink
from tests.serving.models_fixture import FEATURES, N_FEATURES, RaiseOnPredict, dataset, served

AUTH = (("x-api-key", KEY_T1),)
LIMIT = 1 << 28


@functools.cache
def _fitted(kind: str) -> Any:
    X, y = dataset()
    estimators: dict[str, Any] = {
        "logistic": LogisticRegression(max_iter=300),
        "forest": RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0),
        "extra-trees-regressor": ExtraTreesRegressor(n_estimators=5, max_depth=4, random_state=0),
        "boosting": GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
        "pipeline": Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]),
        "tree-regressor": DecisionTreeRegressor(max_depth=6, random_state=0),
        "ridge": Ridge(),
    }
    est = estimators[kind]
    target = X[:, 0] * 2.0 + y if kind.endswith("regressor") or kind == "ridge" else y
    return est.fit(X, target)


def _pos_pipeline() -> Pipeline:
    """A model with a function from outside scikit-learn, numpy and scipy."""
    X, y = dataset()
    return Pipeline(
        [("pos", FunctionTransformer(operator.pos)), ("lr", LogisticRegression(max_iter=300))]
    ).fit(X, y)


KINDS = (
    "logistic",
    "forest",
    "extra-trees-regressor",
    "boosting",
    "pipeline",
    "tree-regressor",
    "ridge",
)
ROWS = arrays(
    np.float64,
    st.tuples(st.integers(1, 40), st.just(N_FEATURES)),
    elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(rows=ROWS)
def test_an_export_predicts_bit_for_bit_as_the_unpickled_model(kind: str, rows: np.ndarray) -> None:
    # what a sandbox holds after unpickling: the estimator itself
    original = SklearnRuntime(pickle.loads(pickle.dumps(_fitted(kind))))
    exported = load_skops(skops_export(original, max_bytes=LIMIT))
    assert same_prediction(exported.predict(rows), original.predict(rows))


def test_a_function_from_elsewhere_is_not_exported_and_says_which() -> None:
    with pytest.raises(ModelLoadError, match=r"untrusted types: .*_operator\.pos"):
        skops_export(SklearnRuntime(_pos_pipeline()), max_bytes=LIMIT)


def test_a_custom_class_is_not_exported() -> None:
    with pytest.raises(ModelLoadError, match="RaiseOnPredict"):
        skops_export(SklearnRuntime(RaiseOnPredict()), max_bytes=LIMIT)


def test_an_export_over_the_limit_is_refused() -> None:
    with pytest.raises(ModelLoadError, match=r"bytes, over 1000"):
        skops_export(SklearnRuntime(_fitted("forest")), max_bytes=1000)


def test_the_worker_refuses_untrusted_types_whatever_the_sandbox_sends() -> None:
    crafted = sio.dumps(_pos_pipeline())  # what a sandbox that skips its own check could send
    with pytest.raises(ModelLoadError, match=r"untrusted types: .*_operator\.pos"):
        load_skops(crafted)


class _Sandbox:
    """A sandboxed model as the repository sees it: its export and its predictions."""

    def __init__(self, export: bytes, model: Any) -> None:
        self._export = export
        self._runtime = SklearnRuntime(model)

    async def export(self) -> bytes:
        return self._export

    async def predict(self, rows: np.ndarray) -> Prediction:
        return self._runtime.predict(rows)


def _decide(export: bytes, model: Any) -> Any:
    repo = ModelRepository(
        allow_pickle=True, load_timeout=5, sandbox_dir=None, on_status=lambda *_: None
    )
    m = served("t1", "d", Path("/unused.joblib"), ArtifactFormat.JOBLIB)

    async def run() -> Any:
        try:
            return await repo._from_export(m, _Sandbox(export, model))  # type: ignore[arg-type]
        finally:
            await repo.close()

    return asyncio.run(run())


def test_an_export_that_predicts_differently_stays_in_the_sandbox() -> None:
    X, y = dataset()
    other = LogisticRegression(C=0.01).fit(X, y)  # same types and shape, other coefficients
    export = skops_export(SklearnRuntime(other), max_bytes=LIMIT)
    why = _decide(export, _fitted("logistic"))
    assert why == "its skops export predicted the probe rows differently"


def test_an_export_with_untrusted_types_stays_in_the_sandbox() -> None:
    why = _decide(sio.dumps(_pos_pipeline()), _pos_pipeline())
    assert isinstance(why, str) and "untrusted types" in why and "_operator.pos" in why


def test_a_model_that_cannot_predict_the_probe_rows_stays_in_the_sandbox() -> None:
    X, y = dataset()
    narrow = LogisticRegression().fit(X[:, :3], y)  # the signature's rows are 6 wide
    why = _decide(skops_export(SklearnRuntime(narrow), max_bytes=LIMIT), narrow)
    assert isinstance(why, str) and why.startswith("its skops export failed")
    assert "features" in why


def test_a_faithful_export_is_loaded() -> None:
    model = _fitted("forest")
    runtime = _decide(skops_export(SklearnRuntime(model), max_bytes=LIMIT), model)
    assert isinstance(runtime, SklearnRuntime)


# -- end to end: a real serving plane, its sandbox and its worker ---------------------------


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("export")
    import joblib

    forest = _fitted("forest")
    pos = _pos_pipeline()
    joblib.dump(forest, root / "forest.joblib")
    (root / "pos.pkl").write_bytes(pickle.dumps(pos))
    sio.dump(forest, root / "forest.skops")
    deployments = [
        served("t1", "forest-joblib", root / "forest.joblib", ArtifactFormat.JOBLIB),
        served("t1", "forest-skops", root / "forest.skops", ArtifactFormat.SKOPS),
        served("t1", "pos-pickle", root / "pos.pkl", ArtifactFormat.PICKLE),
    ]
    source = InMemoryDeploymentSource(deployments)
    sink = InMemoryStatusSink()
    with ServingServer(
        serving_settings(serving_workers=1), source, sink, authenticator()
    ) as server:
        for d in deployments:
            assert sink.wait_for("t1", d.deployment, timeout=120).state.value == "ready"
        channel = grpc.insecure_channel(server.grpc_target)
        try:
            yield server, sink, {"stub": serving_pb2_grpc.ModelServingStub(channel), "pos": pos}
        finally:
            channel.close()


def _predict(stub: Any, deployment: str, row: np.ndarray) -> Any:
    return stub.Predict(
        serving_pb2.PredictRequest(
            model_id=deployment,
            features=[
                serving_pb2.Feature(name=n, float_value=float(v))
                for n, v in zip(FEATURES, row, strict=True)
            ],
        ),
        metadata=AUTH,
    )


def _health(stub: Any, deployment: str) -> dict[str, str]:
    reply = stub.HealthCheck(serving_pb2.HealthCheckRequest(model_id=deployment), metadata=AUTH)
    return dict(reply.details)


def test_an_exportable_joblib_model_is_served_in_the_worker(plane: Any) -> None:
    server, sink, ctx = plane
    details = _health(ctx["stub"], "forest-joblib")
    assert details["isolation"] == "shared-worker"
    assert details["loaded_from"] == "sandbox-export"
    assert "why_sandboxed" not in details
    # held by the worker, which serves it, and by the sandbox, which loaded it
    pids = set(sink.wait_for("t1", "forest-joblib", timeout=30).pids)
    assert pids == set(server.worker_pids()) | set(server.sandbox_pids().values())
    X, _ = dataset()
    for row in X[:8]:  # the same model from a skops upload, bit for bit
        assert _answer(_predict(ctx["stub"], "forest-joblib", row)) == _answer(
            _predict(ctx["stub"], "forest-skops", row)
        )


def _answer(reply: Any) -> tuple[Any, ...]:
    return tuple(reply.predictions), dict(reply.confidence_scores), reply.model_version_used


def test_a_model_with_a_foreign_function_stays_in_its_sandbox_and_says_why(plane: Any) -> None:
    server, sink, ctx = plane
    details = _health(ctx["stub"], "pos-pickle")
    assert details["isolation"] == "tenant-sandbox"
    assert "_operator.pos" in details["why_sandboxed"]
    assert "loaded_from" not in details
    (pid,) = sink.wait_for("t1", "pos-pickle", timeout=30).pids
    assert server.sandbox_pids() == {"t1": pid}
    X, _ = dataset()
    want = ctx["pos"].predict_proba(X[:5])
    for row, p in zip(X[:5], want, strict=True):
        reply = _predict(ctx["stub"], "pos-pickle", row)
        assert reply.predictions == [float(np.argmax(p))]
        assert np.allclose([reply.confidence_scores["0"], reply.confidence_scores["1"]], p)
