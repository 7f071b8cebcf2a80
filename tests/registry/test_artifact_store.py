"""The artifact store contract, run against a local directory and a real S3 API (moto_server)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_platform.core.errors import Conflict
from ml_platform.registry.artifacts import ArtifactStore, StagedFile, hash_file, safe_filename
from tests.conftest import start_platform
from tests.registry.conftest import BuiltModels, new_model
from tests.s3_server import moto_s3

BUCKET = "mlp-artifacts"


@pytest.fixture(scope="module")
def s3_options(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 and the fsspec options that reach it."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        server.bucket(BUCKET)
        yield server.options


def _staged(tmp_path: Path, data: bytes, name: str = "model.joblib") -> StagedFile:
    path = tmp_path / name
    path.write_bytes(data)
    sha, size = hash_file(path)
    return StagedFile(path, name, sha, size)


@pytest.fixture(params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_options: dict[str, Any]
) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    prefix = f"s3://{BUCKET}/{tmp_path.name}"
    return ArtifactStore(prefix, s3_options)


def test_round_trip_is_byte_identical_and_write_once(store: ArtifactStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096
    staged = _staged(tmp_path, data)
    key = store.new_key("ten_a", "mdl_1", "art_1", "model.joblib")
    uri = store.put(staged, key)
    assert uri == store.uri(key)
    assert store.exists(key)
    assert store.size(key) == len(data)
    digest = hashlib.sha256(b"".join(store.iter_bytes(key, 1000))).hexdigest()
    assert digest == staged.sha256
    with pytest.raises(Conflict):
        store.put(_staged(tmp_path, b"other", "x.joblib"), key)
    assert hashlib.sha256(b"".join(store.iter_bytes(key))).hexdigest() == staged.sha256
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting twice is fine


def test_uris_map_to_keys_only_inside_the_store(store: ArtifactStore, tmp_path: Path) -> None:
    key = store.new_key("ten_b", "mdl_1", "art_1", "m.joblib")
    assert store.key_for_uri(store.uri(key)) == key
    sneaky = store.uri("tenants/ten_a/../ten_b/models/mdl_1/art_1/m.joblib")
    assert store.key_for_uri(sneaky) == key
    assert (
        store.key_for_uri(store.uri("tenants/ten_a/x").replace("ten_a", "ten_a/../../..")) is None
    )
    assert store.key_for_uri("s3://another-bucket/tenants/ten_b/x") is None
    assert store.key_for_uri(str(tmp_path / "elsewhere")) is None
    with pytest.raises(ValueError):
        store.new_key("../ten_a", "m", "a", "f")
    with pytest.raises(ValueError):
        store.local_path("tenants/../../etc/passwd")


def test_file_names_are_made_safe() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\models\\my model.joblib") == "my_model.joblib"
    assert safe_filename("..") == "model"
    assert safe_filename(None) == "model"


def test_registry_on_s3_end_to_end(
    tmp_path: Path,
    database_url_factory: object,
    s3_options: dict[str, Any],
    models: BuiltModels,
) -> None:
    url = database_url_factory("sqlite")  # type: ignore[operator]
    platform, server = start_platform(
        "sqlite",
        tmp_path / "data",
        url,
        artifact_root=f"s3://{BUCKET}/registry",
        artifact_storage_options=s3_options,
    )
    try:
        one = platform.client(platform.new_tenant())
        name = new_model(one)
        created = one.post(
            f"/v1/models/{name}/versions", files={"file": ("m.joblib", models.joblib_bytes)}
        )
        assert created.status_code == 201, created.text
        version = created.json()
        assert version["artifact_uri"].startswith(f"s3://{BUCKET}/registry/tenants/")
        assert version["signature_source"] == "inferred"
        download = one.get(f"/v1/models/{name}/versions/1/artifact")
        assert hashlib.sha256(download.content).hexdigest() == version["sha256"]
        # a copy from the tenant's own S3 artifact works, another tenant's is not found
        copy = one.post(
            f"/v1/models/{name}/versions", json={"artifact_uri": version["artifact_uri"]}
        )
        assert copy.status_code == 201, copy.text
        two = platform.client(platform.new_tenant())
        theirs = new_model(two)
        stolen = two.post(
            f"/v1/models/{theirs}/versions", json={"artifact_uri": version["artifact_uri"]}
        )
        assert stolen.status_code == 404
        assert one.delete(f"/v1/models/{name}").status_code == 204
        registry = platform.context.registry
        assert registry is not None
        key = registry.store.key_for_uri(version["artifact_uri"])
        assert key is not None
        assert not registry.store.exists(key)
    finally:
        platform.close()
        server.stop()
        platform.db.dispose()
