"""Issue 9, Security 2: job env_vars values are encrypted at rest; data dir 0700, db 0600.

Before, ``env_vars`` values sat in plain text in a database file created 0644. Now each value
is a Fernet token (``fernet:...``) written with the key from ``ML_PLATFORM_SECRETS_KEY`` (or,
in development, ``<data_dir>/secrets.key``), decrypted only for the executor's launch.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ml_platform.config import Mode, Settings
from ml_platform.core.ids import new_id
from ml_platform.server.context import build_context
from ml_platform.store.crypto import TOKEN_PREFIX, SecretBox, SecretsKeyError
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRepository
from tests.conftest import TEST_JWT_SECRET, Platform, start_platform
from tests.jobs.conftest import JOB_SETTINGS, submit, upload, wait_for, zip_files
from tests.security.test_location_policy import _job_body


def _raw_env_vars(platform: Platform, job_id: str) -> str:
    """The stored column, read with the database's own driver, not the repository."""
    url = platform.db.engine.url
    if platform.backend == "sqlite":
        with sqlite3.connect(str(url.database)) as conn:
            row = conn.execute("SELECT env_vars FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(row[0])
    import psycopg

    raw = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(raw) as conn:
        pg_row = conn.execute("SELECT env_vars::text FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert pg_row is not None
    return str(pg_row[0])


def test_env_var_values_are_not_stored_in_plain_text(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    value = f"s3cr3t-{secrets.token_hex(8)}"
    response = client.post("/v1/jobs/training", json=_job_body(env_vars={"SECRET_TOKEN": value}))
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    stored = _raw_env_vars(platform, job_id)
    assert value not in stored
    columns = json.loads(stored)
    assert list(columns) == ["SECRET_TOKEN"]
    assert columns["SECRET_TOKEN"].startswith(TOKEN_PREFIX)
    if platform.backend == "sqlite":  # nor anywhere in the file or its WAL
        database = Path(str(platform.db.engine.url.database))
        for path in (database, database.with_name(database.name + "-wal")):
            if path.exists():
                assert value.encode() not in path.read_bytes()

    # the API never returns the value (env_vars is write-only)
    for text in (
        client.get(f"/v1/jobs/training/{job_id}").text,
        client.get("/v1/jobs/training").text,
        response.text,
    ):
        assert value not in text
    # the one reader the executor's launch uses gets the value back
    tenant_id = _tenant_of(platform, job_id)
    with platform.db.read() as session:
        assert JobRepository(session, tenant_id).env_vars(job_id) == {"SECRET_TOKEN": value}


def _tenant_of(platform: Platform, job_id: str) -> str:
    from sqlalchemy import select

    from ml_platform.store.jobs import JobRow

    with platform.db.read() as session:
        return str(session.scalar(select(JobRow.tenant_id).where(JobRow.id == job_id)))


@pytest.fixture(scope="module")
def running_jobs(tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any) -> Any:
    url = database_url_factory("sqlite")
    platform, server = start_platform(
        "sqlite", tmp_path_factory.mktemp("secrets-jobs"), url, **JOB_SETTINGS
    )
    yield platform
    platform.close()
    server.stop()
    platform.db.dispose()


def test_the_job_process_still_sees_the_value(running_jobs: Platform) -> None:
    tenant = running_jobs.new_tenant()
    client = running_jobs.client(tenant)
    value = f"token-{secrets.token_hex(8)}"
    code = zip_files(
        {
            "train.py": (
                "import os, pathlib\n"
                "out = pathlib.Path(os.environ['ML_PLATFORM_OUTPUT_DIR'])\n"
                "(out / 'seen.txt').write_text(os.environ['SECRET_TOKEN'])\n"
            )
        }
    )
    root = Path(running_jobs.settings.data_dir).resolve() / "tenants" / tenant.id
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "train.csv").write_text("a,b\n1,2\n")
    job = submit(
        client,
        source=upload(client, code),
        env_vars={"SECRET_TOKEN": value},
        output_path="models/secret-run",
    )
    done = wait_for(client, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert (root / "models" / "secret-run" / "seen.txt").read_text() == value
    assert value not in _raw_env_vars(running_jobs, job["id"])


def _insert_job(db: Database, env_vars: dict[str, str]) -> tuple[str, str]:
    from ml_platform.store.tenants import TenantRepository

    with db.transaction() as session:
        tenant = TenantRepository(session).create(f"rot-{secrets.token_hex(4)}")
        job = JobRepository(session, tenant.id).add(
            job_id=new_id("job"),
            name="j",
            framework="sklearn",
            spec={},
            env_vars=env_vars,
            tags={},
            created_by="test",
        )
    return tenant.id, job.id


def test_rotation_old_key_still_decrypts_after_adding_a_new_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mlp.db'}")
    db.upgrade()
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    db.secrets = SecretBox([old])
    tenant_id, job_id = _insert_job(db, {"API_KEY": "value-under-old"})

    db.secrets = SecretBox([new, old])  # rotation: the new key first, the old kept
    with db.read() as session:
        assert JobRepository(session, tenant_id).env_vars(job_id) == {"API_KEY": "value-under-old"}
    _, fresh = _insert_job(db, {"API_KEY": "value-under-new"})

    db.secrets = SecretBox([new])  # the old key dropped too early: a clear error, no garbage
    with db.read() as session, pytest.raises(SecretsKeyError, match="ML_PLATFORM_SECRETS_KEY"):
        JobRepository(session, tenant_id).env_vars(job_id)
    with db.read() as session:
        row_tenant = _tenant_id(db, fresh)
        assert JobRepository(session, row_tenant).env_vars(fresh) == {"API_KEY": "value-under-new"}

    box = SecretBox([new, old])
    token = SecretBox([old]).encrypt("v")
    rotated = box.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "v"
    db.dispose()


def _tenant_id(db: Database, job_id: str) -> str:
    from sqlalchemy import select

    from ml_platform.store.jobs import JobRow

    with db.read() as session:
        return str(session.scalar(select(JobRow.tenant_id).where(JobRow.id == job_id)))


def test_a_database_without_a_key_refuses_to_store_secrets(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mlp.db'}")
    db.upgrade()
    with pytest.raises(SecretsKeyError):
        _insert_job(db, {"A": "plain"})
    _insert_job(db, {})  # nothing secret, nothing to refuse
    db.dispose()


def test_production_needs_a_key_and_checks_it(tmp_path: Path) -> None:
    common: dict[str, Any] = {
        "data_dir": tmp_path,
        "mode": Mode.PRODUCTION,
        "jwt_secret": TEST_JWT_SECRET,
    }
    with pytest.raises(ValidationError, match="ML_PLATFORM_SECRETS_KEY must be set"):
        Settings(**common)
    with pytest.raises(ValidationError, match="entry 2 is not a Fernet key") as info:
        Settings(**common, secrets_key=f"{SecretBox.generate_key()},not-a-key-at-all")
    assert "not-a-key-at-all" not in str(info.value)
    key = SecretBox.generate_key()
    settings = Settings(**common, secrets_key=f"{SecretBox.generate_key()}, {key}")
    assert settings.secrets_keys[1] == key
    assert key not in repr(settings)


def test_fresh_start_creates_private_data_dir_database_and_dev_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    settings = Settings(data_dir=data_dir, jwt_secret=TEST_JWT_SECRET, scheduler_enabled=False)
    context = build_context(settings)
    context.db.upgrade()
    _insert_job(context.db, {"A": "x"})
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("mlp.db", "mlp.db-wal", "mlp.db-shm", "secrets.key"):
        path = data_dir / name
        if name == "mlp.db" or name == "secrets.key":
            assert path.exists(), name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (name, oct(path.stat().st_mode))
    key = (data_dir / "secrets.key").read_text().strip()
    context.db.dispose()
    again = build_context(settings)  # a restart reads the same key
    assert again.db.secrets is not None
    assert again.db.secrets.decrypt(SecretBox([key]).encrypt("same")) == "same"
    again.db.dispose()


def test_production_without_key_file_is_refused_at_the_box(tmp_path: Path) -> None:
    from ml_platform.store.crypto import load_secret_box

    with pytest.raises(SecretsKeyError):
        load_secret_box([], production=True, data_dir=tmp_path)
    assert not (tmp_path / "secrets.key").exists()


def test_rotate_env_vars_rewrites_rows_under_the_newest_key(tmp_path: Path) -> None:
    from sqlalchemy import update

    from ml_platform.store.jobs import JobRow, rotate_env_vars

    db = Database(f"sqlite:///{tmp_path / 'mlp.db'}")
    db.upgrade()
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    db.secrets = SecretBox([old])
    tenant_id, job_id = _insert_job(db, {"API_KEY": "under-old"})
    legacy_tenant, legacy = _insert_job(db, {})
    with db.transaction() as session:  # a row written before encryption existed
        session.execute(
            update(JobRow).where(JobRow.id == legacy).values(env_vars={"PLAIN": "legacy-value"})
        )
    db.secrets = SecretBox([new, old])
    with db.read() as session:
        assert JobRepository(session, legacy_tenant).env_vars(legacy) == {"PLAIN": "legacy-value"}
    with db.transaction() as session:
        assert rotate_env_vars(session) == 2
    db.secrets = SecretBox([new])  # the old key is gone: everything still reads
    with db.read() as session:
        assert JobRepository(session, tenant_id).env_vars(job_id) == {"API_KEY": "under-old"}
        assert JobRepository(session, legacy_tenant).env_vars(legacy) == {"PLAIN": "legacy-value"}
    database = tmp_path / "mlp.db"
    with sqlite3.connect(database) as conn:
        stored = " ".join(str(r[0]) for r in conn.execute("SELECT env_vars FROM jobs"))
    assert "legacy-value" not in stored and "under-old" not in stored
    db.dispose()


def test_mlp_server_fresh_start_files_are_private(tmp_path: Path) -> None:
    """The real command on a data dir that does not exist yet."""
    import os
    import subprocess
    import sys
    import time

    data_dir = tmp_path / "new" / "data"
    env = {
        **os.environ,
        "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config"),
        "ML_PLATFORM_JWT_SECRET": TEST_JWT_SECRET,
        "ML_PLATFORM_SCHEDULER_ENABLED": "false",
    }
    mlp = Path(sys.executable).parent / "mlp"
    process = subprocess.Popen(
        [str(mlp), "server", "--data-dir", str(data_dir), "--port", "0", "--no-serving"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60  # a safety net against hangs, not an assertion
        while (
            not (data_dir / "secrets.key").exists()
            or not (tmp_path / "config" / "credentials.json").exists()
        ):
            assert process.poll() is None, "mlp server exited"
            assert time.monotonic() < deadline, "mlp server did not start"
            time.sleep(0.05)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for name in ("mlp.db", "secrets.key"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_with_a_job_user_the_data_dir_is_traversable_not_listable(tmp_path: Path) -> None:
    """Jobs running as ML_PLATFORM_JOB_USER reach their work dirs inside the data dir: 0711
    (README: the database and keys stay 0600)."""
    data_dir = tmp_path / "fresh"
    settings = Settings(
        data_dir=data_dir, jwt_secret=TEST_JWT_SECRET, scheduler_enabled=False, job_user="nobody"
    )
    context = build_context(settings)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711
    for name in ("mlp.db", "secrets.key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    context.db.dispose()


def test_mlp_admin_rotate_secrets_finishes_a_rotation(tmp_path: Path) -> None:
    """The CLI step of the rotation: NEW,OLD in the environment, then the old key can go."""
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'mlp.db'}"
    data_dir.mkdir()
    db = Database(url)
    db.upgrade()
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    db.secrets = SecretBox([old])
    tenant_id, job_id = _insert_job(db, {"API_KEY": "rotate-me"})
    db.dispose()
    env = {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(data_dir),
        "ML_PLATFORM_DATABASE_URL": url,
        "ML_PLATFORM_SECRETS_KEY": f"{new},{old}",
        "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli.main", "admin", "rotate-secrets", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"jobs_rewritten": 1}
    db = Database(url)
    db.secrets = SecretBox([new])  # the old key is gone: the value still reads
    with db.read() as session:
        assert JobRepository(session, tenant_id).env_vars(job_id) == {"API_KEY": "rotate-me"}
    db.dispose()
