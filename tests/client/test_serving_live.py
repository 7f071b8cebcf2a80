"""The registry, deployments and predictions through the SDK, against a live control plane and
a live serving plane (supervisor + worker processes) on loopback, on both stores.

Predictions must equal the model's own; gRPC statuses must land on the same exception classes
as HTTP statuses. One suite for both clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_platform import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    PermissionDeniedError,
    RateLimitError,
    ResourceNotFoundError,
    ServerError,
    ValidationError,
)
from ml_platform.serving import ServingServer
from tests.client._grpc_proxy import GrpcFail, GrpcProxy
from tests.client._proxy import FailingProxy
from tests.client.conftest import collect, done, make_client
from tests.conftest import Platform, Tenant, serving_plane

pytestmark = pytest.mark.slow

FEATURES = ["f0", "f1", "f2", "f3"]


@dataclass
class Trained:
    model: Any
    path: Path


def _train(kind: str, directory: Path) -> Trained:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=FEATURES)
    labels = (frame["f0"] + frame["f1"] > 0).astype(int)
    model: Any = (
        RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
        if kind == "rf"
        else LogisticRegression()
    )
    model.fit(frame, labels)
    path = directory / f"{kind}.joblib"
    joblib.dump(model, path)
    return Trained(model, path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    directory = tmp_path_factory.mktemp("models")
    return {kind: _train(kind, directory) for kind in ("rf", "lr")}


@pytest.fixture(scope="module")
def serving(platform: Platform) -> Iterator[ServingServer]:
    with serving_plane(platform) as server:
        yield server


def _rows() -> list[dict[str, float]]:
    values = np.random.default_rng(7).normal(size=(12, 4)).astype(np.float32)
    return [{name: float(row[i]) for i, name in enumerate(FEATURES)} for row in values]


def _expected(model: Any, rows: list[dict[str, float]]) -> tuple[list[float], list[float]]:
    frame = pd.DataFrame(rows, columns=FEATURES).astype(np.float64)
    labels = [float(p) for p in model.predict(frame)]
    return labels, [float(p[1]) for p in model.predict_proba(frame)]


async def test_upload_alias_download_deploy_predict_and_roll(
    platform: Platform,
    serving: ServingServer,
    tenant: Tenant,
    trained: dict[str, Trained],
    kind: str,
    tmp_path: Path,
) -> None:
    name = f"churn-{kind}"
    with FailingProxy(platform.base_url) as proxy:
        client = make_client(kind, proxy.base_url, tenant.api_key, grpc_target=serving.grpc_target)
        try:
            first = await done(client.models.upload(name, trained["rf"].path))
            second = await done(client.models.upload(name, trained["lr"].path))
            assert (first.version, second.version) == (1, 2)
            assert [f["name"] for f in (first.signature or {})["input_features"]] == FEATURES
            versions = await collect(client.models.versions(name))
            assert sorted(v.version for v in versions) == [1, 2]

            alias = await done(client.models.set_alias(name, "production", 1))
            assert (alias.alias, alias.version) == ("production", 1)
            etag = platform.client(tenant).get(f"/v1/models/{name}/aliases/production")
            moved = await done(client.models.set_alias(name, "production", 2))
            assert moved.version == 2
            puts = proxy.to("PUT", f"/v1/models/{name}/aliases/production")
            assert "if-match" not in puts[0].headers  # a new alias has nothing to match
            assert puts[1].headers["if-match"] == etag.headers["etag"]

            downloaded = await done(client.models.download(name, 1, tmp_path / "out/"))
            assert downloaded.read_bytes() == trained["rf"].path.read_bytes()

            deployment = await done(client.deploy(f"{name}-live", model=name, alias="production"))
            assert deployment.status == "pending" and deployment.target_version == 2
            await done(deployment.wait_ready(timeout=120))
            assert deployment.serving_version == 2

            rows = _rows()
            labels, probabilities = _expected(trained["lr"].model, rows)
            one = [await done(deployment.predict(row)) for row in rows]
            assert [p.predictions for p in one] == [[label] for label in labels]
            assert [p.model_version_used for p in one] == ["2"] * len(rows)
            for prediction, probability in zip(one, probabilities, strict=True):
                assert prediction.confidence_scores["1"] == pytest.approx(probability, abs=1e-6)
            batch = await done(deployment.predict_batch(rows))
            assert [p.predictions for p in batch] == [p.predictions for p in one]

            await done(deployment.rollout(version=1))
            await done(deployment.wait_ready(timeout=120))
            labels, _ = _expected(trained["rf"].model, rows)
            again = await done(client.predict(f"{name}-live", rows[0]))
            assert again.predictions == [labels[0]] and again.model_version_used == "1"
        finally:
            await done(client.close())


async def test_grpc_statuses_map_to_the_http_exception_classes(
    platform: Platform,
    serving: ServingServer,
    tenant: Tenant,
    trained: dict[str, Trained],
    kind: str,
) -> None:
    name = f"errs-{kind}"
    client = make_client(kind, platform.base_url, tenant.api_key, grpc_target=serving.grpc_target)
    stranger = make_client(
        kind, platform.base_url, platform.new_tenant().api_key, grpc_target=serving.grpc_target
    )
    wrong_key = make_client(kind, platform.base_url, "mlp_wrong", grpc_target=serving.grpc_target)
    nowhere = make_client(
        kind, platform.base_url, tenant.api_key, grpc_target="127.0.0.1:9", max_retries=0
    )
    row = _rows()[0]
    try:
        await done(client.models.upload(name, trained["rf"].path))
        deployment = await done(client.deploy(name))
        await done(deployment.wait_ready(timeout=120))
        assert (await done(deployment.predict(row))).predictions  # the owner is served

        with pytest.raises(ResourceNotFoundError) as missing:
            await done(client.predict("no-such-deployment", row))
        assert missing.value.status_code == 404 and missing.value.code == "NOT_FOUND"
        with pytest.raises(ResourceNotFoundError):
            await done(stranger.predict(name, row))  # another tenant's deployment
        with pytest.raises(ValidationError) as invalid:
            await done(client.predict(name, {"f0": 1.0}))  # f1..f3 missing
        assert invalid.value.status_code == 422 and invalid.value.code == "INVALID_ARGUMENT"
        # the server's BadRequest field violations, as a REST 422 carries its field errors
        assert [(e.path, e.message) for e in invalid.value.errors] == [
            ("features.f1", "missing"),
            ("features.f2", "missing"),
            ("features.f3", "missing"),
        ]
        with pytest.raises(AuthenticationError) as unauthenticated:
            await done(wrong_key.predict(name, row))
        assert unauthenticated.value.status_code == 401
        with pytest.raises(APIConnectionError):
            await done(nowhere.predict(name, row))
        with pytest.raises(ResourceNotFoundError):
            await done(client.models.get_version(name, 9))
    finally:
        for each in (client, stranger, wrong_key, nowhere):
            await done(each.close())


async def test_predict_retries_unavailable_and_maps_every_grpc_status(
    platform: Platform,
    serving: ServingServer,
    tenant: Tenant,
    trained: dict[str, Trained],
    kind: str,
) -> None:
    """Through a real gRPC server on loopback that fails as told, then forwards."""
    name = f"grpc-{kind}"
    row = _rows()[0]
    labels, _ = _expected(trained["rf"].model, [row])
    setup = make_client(kind, platform.base_url, tenant.api_key, grpc_target=serving.grpc_target)
    try:
        await done(setup.models.upload(name, trained["rf"].path))
        await done((await done(setup.deploy(name))).wait_ready(timeout=120))
    finally:
        await done(setup.close())

    with GrpcProxy(serving.grpc_target) as proxy:
        client = make_client(kind, platform.base_url, tenant.api_key, grpc_target=proxy.target)
        try:
            proxy.fail(GrpcFail(grpc.StatusCode.UNAVAILABLE), GrpcFail(grpc.StatusCode.UNAVAILABLE))
            got = await done(client.predict(name, row))
            assert got.predictions == labels
            assert len(proxy.calls) == 3
            assert all(md.get("x-api-key") == tenant.api_key for _, md in proxy.calls)
            assert proxy.calls[1][0] - proxy.calls[0][0] >= 0.5 * 0.75  # the first backoff

            once = client.with_options(max_retries=0)
            cases: list[tuple[grpc.StatusCode, type[Exception]]] = [
                (grpc.StatusCode.UNAVAILABLE, APIConnectionError),
                (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimitError),
                (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
                (grpc.StatusCode.UNAUTHENTICATED, AuthenticationError),
                (grpc.StatusCode.ALREADY_EXISTS, ConflictError),
                (grpc.StatusCode.FAILED_PRECONDITION, ValidationError),
                (grpc.StatusCode.INTERNAL, ServerError),
                (grpc.StatusCode.DEADLINE_EXCEEDED, APITimeoutError),
            ]
            for code, cls in cases:
                before = len(proxy.calls)
                proxy.fail(GrpcFail(code))
                with pytest.raises(cls) as raised:
                    await done(once.predict(name, row))
                assert type(raised.value) is cls, code
                assert len(proxy.calls) == before + 1  # not retried
            # retried by default only when UNAVAILABLE: a status like NOT_FOUND is final
            before = len(proxy.calls)
            proxy.fail(GrpcFail(grpc.StatusCode.NOT_FOUND))
            with pytest.raises(ResourceNotFoundError):
                await done(client.predict(name, row))
            assert len(proxy.calls) == before + 1

            proxy.fail(GrpcFail(stall=10.0))
            with pytest.raises(APITimeoutError):
                await done(client.with_options(timeout=1.0, max_retries=0).predict(name, row))
        finally:
            await done(client.close())
