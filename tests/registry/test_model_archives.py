"""Versions from an uploaded archive: the model file inside becomes the artifact; unsafe or
oversized archives answer 4xx and leave nothing in staging or the artifact store."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import joblib
import pytest
from sklearn.linear_model import LinearRegression

from ml_platform.archives import ArchiveKind, archive_kind
from tests.conftest import Platform
from tests.registry.conftest import BuiltModels, new_model

Member = tuple[str, bytes] | tarfile.TarInfo


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar(members: list[Member], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def zip_symlink(name: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o120777 << 16
        archive.writestr(info, target)
    return buffer.getvalue()


def _files(platform: Platform) -> set[Path]:
    data_dir = platform.settings.data_dir.resolve()
    roots = [data_dir / "artifacts", data_dir / "tmp"]
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def upload(
    client: httpx.Client, name: str, filename: str, data: bytes, **fields: str
) -> httpx.Response:
    return client.post(f"/v1/models/{name}/versions", files={"file": (filename, data)}, data=fields)


def test_archive_with_one_model_becomes_a_version(
    platform: Platform, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    before = _files(platform)
    bundle = make_zip(
        {
            "README.md": b"# churn\n",
            "src/train.py": b"print('train')\n",
            "out/metrics.csv": b"accuracy\n0.93\n",
            "out/model.joblib": models.joblib_bytes,
        }
    )
    response = upload(client, name, "bundle.zip", bundle)
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["format"] == "joblib"
    assert version["signature_source"] == "inferred"
    assert [f["name"] for f in version["signature"]["input_features"]] == list(models.features)
    assert version["sha256"] == hashlib.sha256(models.joblib_bytes).hexdigest()
    assert version["size_bytes"] == len(models.joblib_bytes)
    assert version["source"] == {
        "kind": "upload",
        "job_id": None,
        "uri": None,
        "filename": "model.joblib",
    }
    assert version["metadata"]["archive_member"] == "out/model.joblib"
    download = client.get(f"/v1/models/{name}/versions/1/artifact")
    assert download.content == models.joblib_bytes
    # only the model reached the store; the archive and its unpacked tree are gone
    added = _files(platform) - before
    assert [p.name for p in added] == ["model.joblib"]

    # a tar.gz is recognised by its content, whatever its name
    tarred = make_tar([("model.joblib", models.joblib_bytes), ("notes.txt", b"hi")])
    second = upload(client, name, "upload.bin", tarred)
    assert second.status_code == 201, second.text
    assert second.json()["version"] == 2
    assert second.json()["sha256"] == version["sha256"]


def test_archive_with_several_models_needs_artifact_path(
    platform: Platform, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    before = _files(platform)
    bundle = make_tar(
        [("a/model.joblib", models.joblib_bytes), ("b/model.onnx", models.onnx_bytes)]
    )
    ambiguous = upload(client, name, "models.tar.gz", bundle)
    assert ambiguous.status_code == 422, ambiguous.text
    problem = ambiguous.json()
    assert "artifact_path" in problem["detail"]
    assert "a/model.joblib" in problem["detail"] and "b/model.onnx" in problem["detail"]
    assert problem["errors"][0]["path"].endswith("artifact_path")
    for wrong in ("c/model.joblib", "../b/model.onnx", "/etc/passwd"):
        refused = upload(client, name, "models.tar.gz", bundle, artifact_path=wrong)
        assert refused.status_code == 422, (wrong, refused.text)
    assert _files(platform) == before

    chosen = upload(client, name, "models.tar.gz", bundle, artifact_path="b/model.onnx")
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["format"] == "onnx"
    assert chosen.json()["sha256"] == hashlib.sha256(models.onnx_bytes).hexdigest()
    assert chosen.json()["metadata"]["archive_member"] == "b/model.onnx"

    nothing = upload(client, name, "docs.zip", make_zip({"README.md": b"no model here"}))
    assert nothing.status_code == 422
    assert "no model file" in nothing.json()["detail"]


def test_single_files_are_not_taken_for_archives(
    tmp_path: Path, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    # joblib compressed with gzip starts like a .tar.gz but holds a pickle
    buffer = io.BytesIO()
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), buffer, compress=("gzip", 3))
    gzipped = upload(client, name, "model.joblib", buffer.getvalue())
    assert gzipped.status_code == 201, gzipped.text
    assert gzipped.json()["format"] == "joblib"
    # a skops file is a zip, and the artifact itself
    import skops.io

    skops.io.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), tmp_path / "m.skops")
    skops_file = upload(client, name, "m.skops", (tmp_path / "m.skops").read_bytes())
    assert skops_file.status_code == 201, skops_file.text
    assert skops_file.json()["format"] == "skops"
    # artifact_path only means something inside an archive
    single = upload(client, name, "m.joblib", models.joblib_bytes, artifact_path="m.joblib")
    assert single.status_code == 422
    assert "archive" in single.json()["detail"]


UNSAFE: dict[str, Callable[[bytes], bytes]] = {
    "zip-dotdot": lambda model: make_zip({"../../evil.joblib": model}),
    "zip-absolute": lambda model: make_zip({"/tmp/evil.joblib": model}),
    "zip-symlink": lambda model: zip_symlink("model.joblib", "/etc/passwd"),
    "tar-dotdot": lambda model: make_tar([("ok/../../evil.joblib", model)]),
    "tar-symlink-out": lambda model: make_tar(
        [special("model.joblib", tarfile.SYMTYPE, "/etc/passwd")]
    ),
    "tar-hardlink-out": lambda model: make_tar(
        [special("model.joblib", tarfile.LNKTYPE, "../../../etc/passwd")]
    ),
    "tar-device": lambda model: make_tar(
        [("model.joblib", model), special("dev", tarfile.CHRTYPE)]
    ),
    "plain-tar-fifo": lambda model: make_tar([special("fifo", tarfile.FIFOTYPE)], mode="w"),
    "too-many-members": lambda model: make_zip({f"f{i}.txt": b"" for i in range(10_001)}),
    "corrupt-zip": lambda model: make_zip({"model.joblib": model})[:-30],
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_archives_are_refused_and_leave_nothing(
    case: str, platform: Platform, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    before = _files(platform)
    data_dir = platform.settings.data_dir.resolve()
    # the shared platform may hold another test's (safely stored) upload named evil.joblib
    evil_before = set(data_dir.rglob("evil.joblib"))
    response = upload(client, name, "bundle.zip", UNSAFE[case](models.joblib_bytes))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert _files(platform) == before
    assert set(data_dir.rglob("evil.joblib")) == evil_before
    assert client.get(f"/v1/models/{name}/versions").json()["total"] == 0


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_bombs_are_refused_and_leave_nothing(
    kind: str, small_upload_platform: Platform, models: BuiltModels
) -> None:
    """The upload limit is 64 KiB; an archive may not unpack to more than that either."""
    platform = small_upload_platform
    client = platform.client(platform.new_tenant())
    name = new_model(client)
    before = _files(platform)
    zeros = b"\0" * (4 * 1024 * 1024)
    files = {"model.joblib": models.joblib_bytes, "padding.bin": zeros}
    bomb = make_zip(files) if kind == "zip" else make_tar(list(files.items()))
    assert len(bomb) < 64 * 1024
    response = upload(client, name, f"bomb.{kind}", bomb)
    assert response.status_code == 422, response.text
    assert "unpacks to" in response.json()["detail"]
    assert _files(platform) == before
    assert client.get(f"/v1/models/{name}/versions").json()["total"] == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("zip", ArchiveKind.ZIP),
        ("tar", ArchiveKind.TAR),
        ("tar.gz", ArchiveKind.TAR),
        ("tar.bz2", ArchiveKind.TAR),
        ("tar.xz", ArchiveKind.TAR),
        ("gzip-joblib", None),
        ("pickle", None),
        ("empty", None),
    ],
)
def test_archives_are_detected_by_content(
    name: str, expected: ArchiveKind | None, tmp_path: Path, models: BuiltModels
) -> None:
    member: list[Member] = [("model.joblib", models.joblib_bytes)]
    gzipped = io.BytesIO()
    joblib.dump([1, 2, 3], gzipped, compress=("gzip", 3))
    content = {
        "zip": make_zip({"model.joblib": models.joblib_bytes}),
        "tar": make_tar(member, mode="w"),
        "tar.gz": make_tar(member),
        "tar.bz2": make_tar(member, mode="w:bz2"),
        "tar.xz": make_tar(member, mode="w:xz"),
        "gzip-joblib": gzipped.getvalue(),
        "pickle": models.joblib_bytes,
        "empty": b"",
    }[name]
    path = tmp_path / "upload.zip"  # the name never decides
    path.write_bytes(content)
    assert archive_kind(path) is expected
