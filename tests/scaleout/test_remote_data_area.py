"""The tenant area in a remote storage: ``PUT /v1/data`` files and a job's relative paths
are objects under ``<storage>/tenants/<tenant id>/`` (S3 API: moto_server on loopback)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest

from ml_platform.core.errors import Conflict, InvalidArgument, NotFound, PayloadTooLarge
from ml_platform.data.service import DataArea
from ml_platform.jobs.paths import PathPolicy
from ml_platform.storage import Storage
from tests.s3_server import S3
from tests.scaleout.conftest import BUCKET


@pytest.fixture
def area(tmp_path: Path, s3: S3) -> tuple[DataArea, Storage, PathPolicy]:
    uri = f"s3://{BUCKET}/area-{secrets.token_hex(4)}"
    storage = Storage(uri, s3.options)
    paths = PathPolicy(tmp_path / "scratch", storage_uri=uri)
    return DataArea(paths, 1024 * 1024, storage), storage, paths


def _upload(area: DataArea, path: str, data: bytes, tenant: str = "ten_a") -> bool:
    upload = area.begin_upload(tenant, path)
    for start in range(0, len(data), 1000):
        upload.write(data[start : start + 1000])
    info, created = upload.commit()
    assert info.path == f"data/{path}" and info.size_bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    return created


def test_files_are_objects_every_replica_reads(
    area: tuple[DataArea, Storage, PathPolicy], tmp_path: Path
) -> None:
    data_area, storage, paths = area
    assert _upload(data_area, "train.csv", b"a,b\n1,2\n" * 300) is True
    assert _upload(data_area, "train.csv", b"a,b\n3,4\n") is False  # replaced whole
    assert _upload(data_area, "sets/q1/x.csv", b"x\n") is True
    reader = data_area.open_file("ten_a", "train.csv")
    assert b"".join(reader.chunks()) == b"a,b\n3,4\n"
    page = data_area.list_files("ten_a", None)
    assert [f.path for f in page.files] == ["data/sets/q1/x.csv", "data/train.csv"]
    assert [f.path for f in data_area.list_files("ten_a", "sets/").files] == ["data/sets/q1/x.csv"]
    assert data_area.list_files("ten_b", None).total == 0  # another tenant sees nothing
    with pytest.raises(NotFound):
        data_area.open_file("ten_b", "train.csv")
    with pytest.raises(NotFound):  # a prefix of other files is no file
        data_area.describe("ten_a", "sets/q1")
    with pytest.raises(Conflict):
        data_area.delete("ten_a", "sets")
    data_area.delete("ten_a", "sets/q1/x.csv")
    with pytest.raises(NotFound):
        data_area.delete("ten_a", "sets/q1/x.csv")
    # the job's view of the same file: the object's URI, nothing on this replica's disk
    resolved = paths.check_data_path("ten_a", "data/train.csv")
    assert resolved.local is None and storage.key_for_uri(resolved.uri) == (
        "tenants/ten_a/data/train.csv"
    )
    assert storage.key_for_uri(paths.check_output_path("ten_a", "models/run-1").uri) == (
        "tenants/ten_a/models/run-1"
    )
    assert not (tmp_path / "scratch").exists()


def test_a_failed_upload_publishes_nothing(area: tuple[DataArea, Storage, PathPolicy]) -> None:
    data_area, storage, _ = area
    upload = data_area.begin_upload("ten_a", "big.bin")
    upload.write(b"x" * 1000)
    with pytest.raises(PayloadTooLarge):
        upload.write(b"x" * (1024 * 1024))
    aborted = data_area.begin_upload("ten_a", "half.bin")
    aborted.write(b"half")
    aborted.abort()
    assert storage.list("tenants") == []
    assert storage._fs.find(f"{storage.root_uri}/.tmp") == []  # no temporary object left


@pytest.mark.parametrize("value", ["../ten_b/data/x", "data/../../ten_b/x", "data//x"])
def test_relative_paths_cannot_leave_the_tenant_area(
    area: tuple[DataArea, Storage, PathPolicy], value: str
) -> None:
    _, _, paths = area
    with pytest.raises(InvalidArgument):
        paths.check_data_path("ten_a", value)
