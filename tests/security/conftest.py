"""Security fixtures: a real S3 API (moto_server on 127.0.0.1) and a tiny real model."""

from __future__ import annotations

import io
from collections.abc import Iterator

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from tests.s3_server import S3, moto_s3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def model_bytes() -> bytes:
    buffer = io.BytesIO()
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [0.5, 0.2]], ["a", "b", "a"])
    joblib.dump(model, buffer)
    return buffer.getvalue()
