"""The serving seams (file source, test doubles against the protocols) and the public surface."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import ml_platform.serving as serving
from ml_platform.core.errors import Unauthenticated
from ml_platform.serving import (
    ArtifactFormat,
    Authenticator,
    DeploymentSource,
    DeploymentStatusSink,
    FileDeploymentSource,
    Principal,
    ServedModel,
)
from ml_platform.serving.plane.auth_cache import AuthCache
from tests.serving.doubles import (
    InMemoryDeploymentSource,
    InMemoryStatusSink,
    StaticKeyAuthenticator,
)
from tests.serving.models_fixture import served


def test_public_surface_is_sorted_and_importable() -> None:
    assert serving.__all__ == sorted(serving.__all__)
    for name in serving.__all__:
        assert getattr(serving, name) is not None


def test_implementations_satisfy_the_protocols(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"models": []}')
    assert isinstance(InMemoryDeploymentSource(), DeploymentSource)
    assert isinstance(FileDeploymentSource(tmp_path / "d.json"), DeploymentSource)
    assert isinstance(InMemoryStatusSink(), DeploymentStatusSink)
    assert isinstance(StaticKeyAuthenticator({}), Authenticator)


def test_served_model_round_trips_through_json() -> None:
    m = served("t", "d", Path("/x.onnx"), ArtifactFormat.ONNX, aliases=("prod",), allow_nan=True)
    assert ServedModel.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_file_source_revision_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "deployments.json"
    m1 = served("t", "d", Path("/a.onnx"), ArtifactFormat.ONNX)
    path.write_text(json.dumps({"models": [m1.to_dict()]}))
    source = FileDeploymentSource(path)
    first = source.snapshot()
    assert first.models == (m1,)
    assert source.snapshot().revision == first.revision
    m2 = served("t", "d", Path("/b.onnx"), ArtifactFormat.ONNX, version=2)
    path.write_text(json.dumps({"models": [m2.to_dict()]}))
    second = source.snapshot()
    assert second.revision != first.revision and second.models == (m2,)


def test_static_keys_and_the_auth_cache() -> None:
    auth = StaticKeyAuthenticator({"mlp_a": Principal("t1", "alice")})
    assert auth.authenticate("mlp_a", None).tenant_id == "t1"
    assert auth.authenticate(None, "mlp_a").name == "alice"
    with pytest.raises(Unauthenticated):
        auth.authenticate("mlp_b", None)
    calls: list[tuple[str | None, str | None]] = []

    async def resolve(api_key: str | None, bearer: str | None) -> Principal:
        calls.append((api_key, bearer))
        return auth.authenticate(api_key, bearer)

    async def scenario() -> None:
        cache = AuthCache(resolve, ttl_seconds=60)
        for _ in range(3):
            assert (await cache.principal("mlp_a", None)).tenant_id == "t1"
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                await cache.principal("mlp_wrong", None)
        with pytest.raises(Unauthenticated):
            await cache.principal(None, None)

    asyncio.run(scenario())
    assert calls == [("mlp_a", None), ("mlp_wrong", None)]  # one lookup each, then cached
