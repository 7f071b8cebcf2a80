from __future__ import annotations

from pathlib import Path

import pytest

from ml_platform.core.errors import InvalidArgument
from ml_platform.jobs.paths import PathPolicy


def test_tenant_area_and_shared_roots(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    policy = PathPolicy(tmp_path / "data", [shared], allowed_uri_prefixes={"t1": ["s3://bucket/"]})
    root = policy.ensure_tenant_root("t1")
    assert policy.check_data_path("t1", "train.csv").local == root / "train.csv"
    assert policy.check_data_path("t1", f"file://{root}/x.csv").local == root / "x.csv"
    assert policy.check_data_path("t1", str(shared / "d.csv")).local == shared / "d.csv"
    assert policy.check_output_path("t1", "models/v1").local == root / "models" / "v1"
    assert policy.check_data_path("t1", "s3://bucket/key").local is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output_path", "/etc"),
        ("data_path", "/etc/passwd"),
        ("data_path", "../t2/secret.csv"),
        ("data_path", "{data}/mlp.db"),
        ("output_path", "{shared}/out"),
        ("data_path", "http://example.com/x"),
        ("data_path", "file://otherhost/x"),
        ("data_path", "link/escape.csv"),
    ],
)
def test_outside_roots_is_invalid_argument(tmp_path: Path, field: str, value: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    data = tmp_path / "data"
    policy = PathPolicy(data, [shared])
    root = policy.ensure_tenant_root("t1")
    (root / "link").symlink_to(tmp_path)
    value = value.format(data=data, shared=shared)
    check = policy.check_data_path if field == "data_path" else policy.check_output_path
    with pytest.raises(InvalidArgument) as info:
        check("t1", value)
    assert info.value.violations[0].field == field
    assert field in str(info.value)
