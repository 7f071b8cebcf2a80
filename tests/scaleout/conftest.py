"""Scale-out fixtures: one moto S3 server (a real S3 API on loopback) for the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3_server import S3, moto_s3

BUCKET = "mlp-storage"


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    with moto_s3(tmp_path_factory.mktemp("moto-scaleout")) as server:
        server.bucket(BUCKET)
        yield server
