"""Production mode refuses HMAC secrets shorter than the hash output (issue 9, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ml_platform.config import MIN_HS_SECRET_BYTES, Mode, Settings

SECRETS_KEY = "vPq0Ybb8z4q0nTqf3Qm2m0y9XrVvU4m2V8YpJm3f2Kk="  # a Fernet key (test only)


def _settings(tmp_path: Path, **values: object) -> Settings:
    # production also needs the secrets-at-rest key (test_secrets_at_rest.py)
    return Settings(data_dir=tmp_path, secrets_key=SECRETS_KEY, **values)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(secret=st.text(min_size=1).filter(lambda s: len(s.encode()) < MIN_HS_SECRET_BYTES))
def test_short_hs256_secret_is_refused_in_production(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(mode=Mode.PRODUCTION, jwt_secret=secret)  # type: ignore[arg-type]


def test_long_secret_starts_in_production(tmp_path: Path) -> None:
    settings_ = _settings(tmp_path, mode=Mode.PRODUCTION, jwt_secret="k" * MIN_HS_SECRET_BYTES)
    assert settings_.mode is Mode.PRODUCTION


def test_short_secret_is_allowed_in_development(tmp_path: Path) -> None:
    assert _settings(tmp_path, jwt_secret="short").mode is Mode.DEVELOPMENT


def test_multibyte_secret_is_measured_in_bytes(tmp_path: Path) -> None:
    # 11 characters, 33 bytes in UTF-8: long enough.
    _settings(tmp_path, mode=Mode.PRODUCTION, jwt_secret="\u20ac" * 11)
    with pytest.raises(ValidationError):
        _settings(tmp_path, mode=Mode.PRODUCTION, jwt_secret="\u20ac" * 10)
