from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from ml_platform.core.errors import InvalidArgument, NotFound, PayloadTooLarge
from ml_platform.jobs.code_packages import CodePackageLimits, CodePackageStore
from ml_platform.storage import Storage


def packages_in(root: Path, limits: CodePackageLimits | None = None) -> CodePackageStore:
    """Archives in a local storage under ``root/storage``, unpacked trees cached in ``root``."""
    return CodePackageStore(Storage(str(root / "storage")), root, limits)


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar(members: list[tarfile.TarInfo], payloads: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            data = (payloads or {}).get(member.name)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_content_addressed_and_tenant_scoped(tmp_path: Path) -> None:
    store = packages_in(tmp_path)
    data = make_zip({"train.py": b"print('hi')\n", "pkg/util.py": b"X = 1\n"})
    first = store.save("t1", data)
    again = store.save("t1", data)
    assert first.id == again.id == f"sha256:{first.sha256}"
    assert first.file_count == 2
    tree = store.tree("t1", first.id)
    assert (tree / "pkg" / "util.py").read_bytes() == b"X = 1\n"
    with pytest.raises(NotFound):
        store.get("t2", first.id)
    store.save("t2", data)
    assert store.get("t2", first.id).sha256 == first.sha256
    with pytest.raises(InvalidArgument):
        store.get("t1", "sha256:nothex")


def test_tar_gz_is_accepted(tmp_path: Path) -> None:
    payload = b"print(1)\n"
    data = make_tar([file_member("src/train.py", len(payload))], {"src/train.py": payload})
    package = packages_in(tmp_path).save("t1", data)
    assert (tmp_path / package.sha256 / "tree" / "src" / "train.py").read_bytes() == payload


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(lambda: make_zip({"../evil.py": b"x"}), id="zip-dotdot"),
        pytest.param(lambda: make_zip({"/etc/evil.py": b"x"}), id="zip-absolute"),
        pytest.param(
            lambda: make_tar([file_member("a/../../evil", 1)], {"a/../../evil": b"x"}),
            id="tar-dotdot",
        ),
        pytest.param(lambda: make_tar([symlink("link", "/etc")]), id="tar-symlink-out"),
        pytest.param(lambda: make_tar([symlink("ok", "inside")]), id="tar-any-symlink"),
        pytest.param(lambda: make_tar([device("dev")]), id="tar-device"),
        pytest.param(lambda: b"this is not an archive", id="garbage"),
        pytest.param(lambda: make_zip({"bomb.bin": b"\0" * (3 * 1024 * 1024)}), id="zip-bomb"),
        pytest.param(
            lambda: make_tar(
                [file_member("bomb.bin", 3 * 1024 * 1024)], {"bomb.bin": b"\0" * (3 * 1024 * 1024)}
            ),
            id="tar-bomb",
        ),
        pytest.param(lambda: make_zip({f"f{i}.py": b"" for i in range(60)}), id="too-many-files"),
    ],
)
def test_malicious_archives_are_rejected(tmp_path: Path, archive) -> None:  # type: ignore[no-untyped-def]
    limits = CodePackageLimits(max_unpacked_bytes=2 * 1024 * 1024, max_files=50)
    store = packages_in(tmp_path / "packages", limits)
    with pytest.raises(InvalidArgument):
        store.save("t1", archive())
    assert not (tmp_path / "evil.py").exists()
    assert not any(p.name == "tree" for p in (tmp_path / "packages").glob("*/tree"))


def test_zip_symlink_member_is_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidArgument, match="symlink"):
        packages_in(tmp_path).save("t1", buffer.getvalue())


def test_archive_size_limit(tmp_path: Path) -> None:
    store = packages_in(tmp_path, CodePackageLimits(max_archive_bytes=1024))
    with pytest.raises(PayloadTooLarge):
        store.save("t1", b"x" * 2048)
