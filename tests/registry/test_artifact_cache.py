"""The serving cache of remote artifacts: whole or absent, verified by SHA-256, healed on reuse.

The store is a real fsspec ``memory://`` filesystem (a remote store: not local, so artifacts
are copied into the cache as they are for ``s3://``).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import fsspec  # type: ignore[import-untyped,unused-ignore]
import pytest

from ml_platform.deployments.service import DesiredDeployment
from ml_platform.registry.artifacts import ArtifactStore, CorruptArtifact, StagedFile
from ml_platform.server.serving_bridge import StoreDeploymentSource

PAYLOAD = secrets.token_bytes(3 * 1024 * 1024 + 17)  # several read chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    root = f"memory://artifacts-{secrets.token_hex(4)}"
    artifact_store = ArtifactStore(root)
    assert not artifact_store.is_local
    return artifact_store


def _put(store: ArtifactStore, tmp_path: Path, payload: bytes = PAYLOAD) -> str:
    source = tmp_path / "upload.joblib"
    source.write_bytes(payload)
    key = store.new_key("ten_a", "mdl_a", f"art_{secrets.token_hex(4)}", "model.joblib")
    staged = StagedFile(source, "model.joblib", hashlib.sha256(payload).hexdigest(), len(payload))
    store.put(staged, key)
    return key


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_first_use_fetches_a_verified_copy(store: ArtifactStore, tmp_path: Path) -> None:
    key = _put(store, tmp_path)
    cache = tmp_path / "cache"
    copy = store.cached_copy(key, cache, SHA)
    assert copy.read_bytes() == PAYLOAD
    assert copy.parent.name == SHA and copy.name == "model.joblib"
    assert _leftovers(cache) == ["model.joblib"]
    store.delete(key)  # a cache hit never reads the store again
    assert store.cached_copy(key, cache, SHA) == copy


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_a_damaged_cached_file_is_fetched_again(
    store: ArtifactStore, tmp_path: Path, damage: str
) -> None:
    key = _put(store, tmp_path)
    cache = tmp_path / "cache"
    copy = store.cached_copy(key, cache, SHA)
    copy.chmod(0o644)
    if damage == "truncate":
        with open(copy, "r+b") as handle:
            handle.truncate(len(PAYLOAD) // 2)
    elif damage == "empty":
        copy.write_bytes(b"")
    else:
        copy.write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]))
    again = store.cached_copy(key, cache, SHA)
    assert again == copy
    assert again.read_bytes() == PAYLOAD
    assert _leftovers(cache) == ["model.joblib"]


def test_a_store_object_that_does_not_match_its_hash_is_never_cached(
    store: ArtifactStore, tmp_path: Path
) -> None:
    key = _put(store, tmp_path)
    fs = fsspec.filesystem("memory")
    with fs.open(f"{store.root_uri.removeprefix('memory://')}/{key}", "wb") as handle:
        handle.write(PAYLOAD[: len(PAYLOAD) // 3])  # the object was replaced by a partial one
    cache = tmp_path / "cache"
    with pytest.raises(CorruptArtifact):
        store.cached_copy(key, cache, SHA)
    assert _leftovers(cache) == [], "a partial download was left in the cache"


def test_the_serving_bridge_heals_a_truncated_cache(store: ArtifactStore, tmp_path: Path) -> None:
    key = _put(store, tmp_path)
    cache = tmp_path / "cache"
    source = StoreDeploymentSource(service=None, store=store, cache_dir=cache)  # type: ignore[arg-type]
    desired = DesiredDeployment(
        tenant_id="ten_a",
        name="churn",
        model="churn",
        version=1,
        framework="sklearn",
        format="joblib",
        artifact_key=key,
        sha256=SHA,
        signature=None,
        max_batch_size=8,
        max_batch_delay_ms=1.0,
        generation=1,
    )
    first = source._local_artifact(desired)
    assert first is not None and first.read_bytes() == PAYLOAD
    first.chmod(0o644)
    with open(first, "r+b") as handle:  # a crash mid-write of the old in-place download
        handle.truncate(1000)
    second = source._local_artifact(desired)
    assert second is not None and second.read_bytes() == PAYLOAD
