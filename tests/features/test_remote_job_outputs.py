"""Job-output feature sources in a remote storage (S3 API: moto_server on loopback): the job's
relative ``output_path`` in the platform's storage, and a remote prefix granted to the tenant,
read through the same bounded reader as data-area files."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import update

from ml_platform.core.errors import NotFound, PayloadTooLarge
from ml_platform.data.service import DataArea
from ml_platform.features.job_outputs import JobOutputs
from ml_platform.features.sources import JobOutputSpec, SourceReader
from ml_platform.jobs.paths import PathPolicy
from ml_platform.server.context import build_context
from ml_platform.storage import Storage
from ml_platform.store.jobs import JobRow
from tests.conftest import Platform, Tenant, make_settings
from tests.features.events import generate
from tests.registry.conftest import succeeded_job
from tests.s3_server import S3, moto_s3

BUCKET = "mlp-features"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    with moto_s3(tmp_path_factory.mktemp("moto-features")) as server:
        server.bucket(BUCKET)
        server.bucket("granted")
        yield server


def test_remote_job_outputs_are_read_bounded(
    s3: S3, tmp_path: Path, database_url_factory: object
) -> None:
    url: str = database_url_factory("sqlite")  # type: ignore[operator]
    settings = make_settings(tmp_path, url)
    context = build_context(settings)
    context.db.upgrade()
    platform = Platform("sqlite", settings, context, "")
    record = context.auth.create_tenant(f"remote-{secrets.token_hex(4)}")
    tenant = Tenant(record.id, record.name, "")
    job_id = succeeded_job(platform, tenant, {})  # output_path: outputs/<job_id>

    uri = f"s3://{BUCKET}/root-{secrets.token_hex(4)}"
    storage = Storage(uri, s3.options)
    granted = f"s3://granted/{tenant.id}"
    paths = PathPolicy(
        tmp_path / "scratch", storage_uri=uri, allowed_uri_prefixes={tenant.id: [granted]}
    )
    events = generate(n_customers=5, n_rows=40)
    storage.put_bytes(f"tenants/{tenant.id}/outputs/{job_id}/features.csv", events.csv())
    area = DataArea(paths, 1024 * 1024, storage)
    reader = SourceReader(area, 1024 * 1024, JobOutputs(context.db, paths, storage))
    spec = JobOutputSpec(job_id, "features.csv", "csv")
    expected = pd.read_csv(io.BytesIO(events.csv()))
    pd.testing.assert_frame_equal(reader.read(tenant.id, spec), expected)
    with pytest.raises(NotFound, match=r"no file 'missing\.csv'"):
        reader.read(tenant.id, JobOutputSpec(job_id, "missing.csv", "csv"))
    small = SourceReader(area, 100, JobOutputs(context.db, paths, storage))
    with pytest.raises(PayloadTooLarge, match="ML_PLATFORM_FEATURE_MAX_SOURCE_BYTES"):
        small.read(tenant.id, spec)
    assert not (tmp_path / "scratch").exists()  # nothing on this replica's disk

    # an output_path under a prefix granted to the tenant, outside the platform's storage
    other = succeeded_job(platform, tenant, {})
    with context.db.transaction() as session:
        row = session.get(JobRow, other)
        assert row is not None
        session.execute(
            update(JobRow)
            .where(JobRow.id == other)
            .values(spec={**row.spec, "output_path": f"{granted}/run-2"})
        )
    s3.put("granted", f"{tenant.id}/run-2/features.csv", events.csv())
    pd.testing.assert_frame_equal(
        reader.read(tenant.id, JobOutputSpec(other, "features.csv", "csv")), expected
    )
    context.db.dispose()
