"""The one blob store (``ml_platform.storage``) and the code packages kept in it, run against a
local directory and a real S3 API (moto_server on loopback)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from ml_platform.config import Settings
from ml_platform.core.errors import NotFound
from ml_platform.jobs.code_packages import CodePackageStore
from ml_platform.storage import CorruptObject, ObjectExists, Storage
from tests.s3_server import S3
from tests.scaleout.conftest import BUCKET


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, s3: S3) -> Storage:
    if request.param == "local":
        return Storage(str(tmp_path / "storage"))
    return Storage(f"s3://{BUCKET}/{tmp_path.name}", s3.options)


def test_streamed_put_is_published_whole_and_read_back_checked(storage: Storage) -> None:
    chunks = [bytes([i]) * 300_000 for i in range(5)]
    stored = storage.put("a/b/blob", iter(chunks))
    assert stored.size_bytes == 1_500_000
    assert storage.exists("a/b/blob")
    assert storage.get_bytes("a/b/blob", stored.sha256) == b"".join(chunks)
    assert storage.list("a") == ["a/b/blob"]  # no temporary key left behind or listed
    with pytest.raises(CorruptObject):
        storage.get_bytes("a/b/blob", "0" * 64)


def test_download_checks_the_hash_and_leaves_nothing_on_mismatch(
    storage: Storage, tmp_path: Path
) -> None:
    stored = storage.put_bytes("x/model.bin", b"weights")
    target = tmp_path / "copy" / "model.bin"
    assert storage.download("x/model.bin", target, stored.sha256).size_bytes == 7
    assert target.read_bytes() == b"weights"
    other = tmp_path / "copy" / "bad.bin"
    with pytest.raises(CorruptObject):
        storage.download("x/model.bin", other, "f" * 64)
    assert sorted(p.name for p in other.parent.iterdir()) == ["model.bin"]


def test_exclusive_put_never_overwrites_and_delete_is_idempotent(storage: Storage) -> None:
    storage.put_bytes("owners/t1", b"first", exclusive=True)
    with pytest.raises(ObjectExists):
        storage.put_bytes("owners/t1", b"second", exclusive=True)
    assert storage.get_bytes("owners/t1") == b"first"
    storage.delete("owners/t1")
    storage.delete("owners/t1")
    assert not storage.exists("owners/t1")
    with pytest.raises(FileNotFoundError):
        storage.get_bytes("owners/t1")


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../b", "a//b", "a/./b", "a\\b"])
def test_keys_are_relative_and_normalized(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        Storage(str(tmp_path)).uri(key)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_package_uploaded_through_one_replica_runs_under_another(
    storage: Storage, tmp_path: Path
) -> None:
    """Two replicas share the storage, each with its own scratch cache: the second one finds
    the package, fetches its archive (hash-checked) and unpacks it into its own cache."""
    replica_1 = CodePackageStore(storage, tmp_path / "replica-1")
    replica_2 = CodePackageStore(storage, tmp_path / "replica-2")
    data = _zip({"train.py": b"print('hi')\n"})
    package = replica_1.save("t1", data)
    seen = replica_2.get("t1", package.id)
    assert (seen.sha256, seen.size_bytes, seen.file_count) == (package.sha256, len(data), 1)
    assert seen.created_at == package.created_at
    tree = replica_2.tree("t1", package.id)
    assert tree.is_relative_to(tmp_path / "replica-2")
    assert (tree / "train.py").read_bytes() == b"print('hi')\n"
    with pytest.raises(NotFound):
        replica_2.get("t2", package.id)
    assert replica_2.exists("t1", data) and not replica_2.exists("t2", data)


def test_a_corrupt_archive_in_storage_is_never_unpacked(storage: Storage, tmp_path: Path) -> None:
    package = CodePackageStore(storage, tmp_path / "a").save("t1", _zip({"x.py": b"1\n"}))
    storage.put_bytes(f"code-packages/{package.sha256}/archive", _zip({"x.py": b"evil\n"}))
    with pytest.raises(CorruptObject):
        CodePackageStore(storage, tmp_path / "b").tree("t1", package.id)
    assert not (tmp_path / "b" / package.sha256).exists()


def test_settings_put_artifacts_under_the_storage_root(tmp_path: Path) -> None:
    default = Settings(data_dir=tmp_path)
    assert default.resolved_storage_uri == str(tmp_path.resolve())
    assert default.resolved_artifact_root == f"{tmp_path.resolve()}/artifacts"
    remote = Settings(
        data_dir=tmp_path, storage_uri="s3://bucket/mlp", storage_options={"anon": False}
    )
    assert remote.resolved_artifact_root == "s3://bucket/mlp/artifacts"
    assert remote.resolved_artifact_storage_options == {"anon": False}
    pinned = Settings(data_dir=tmp_path, storage_uri="s3://b/p", artifact_root="s3://art/r")
    assert pinned.resolved_artifact_root == "s3://art/r"
    assert pinned.resolved_artifact_storage_options == {}


def test_trees_go_up_and_come_down_whole(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    (source / "model.bin").write_bytes(b"m")
    (source / "sub" / "notes.txt").write_bytes(b"n")
    (source / "link").symlink_to(source / "model.bin")  # never followed or published
    assert storage.upload_tree(source, "tenants/t1/models/run-1") == 2
    assert storage.list("tenants/t1/models/run-1") == [
        "tenants/t1/models/run-1/model.bin",
        "tenants/t1/models/run-1/sub/notes.txt",
    ]
    assert storage.download_tree("tenants/t1/models/run-1", tmp_path / "back") == 2
    assert (tmp_path / "back" / "sub" / "notes.txt").read_bytes() == b"n"
    assert storage.download_tree("tenants/t1/models/run-1/model.bin", tmp_path / "one") == 1
    assert (tmp_path / "one").read_bytes() == b"m"
    assert storage.download_tree("tenants/t1/missing", tmp_path / "none") == 0
    uri = storage.uri("tenants/t1/models/run-1")
    assert storage.key_for_uri(uri) == "tenants/t1/models/run-1"
    assert storage.key_for_uri(uri + "/") == "tenants/t1/models/run-1"
    assert storage.key_for_uri("s3://elsewhere/tenants/t1") is None
