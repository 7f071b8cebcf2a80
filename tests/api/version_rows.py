"""A model version written straight to the store, for tests about the REST edge (not the
registry): no artifact, no signature inference, so it is fast."""

from __future__ import annotations

from ml_platform.core.ids import new_id
from ml_platform.store.models import ModelRepository, NewVersion
from tests.conftest import Platform, Tenant


def add_version_row(
    platform: Platform,
    tenant: Tenant,
    model: str,
    *,
    size_bytes: int = 1,
    job_id: str | None = None,
) -> int:
    """Register the next version of ``model`` (which must exist); returns its number. With
    ``job_id`` the version records that job as its source (lineage, without a real run)."""
    with platform.db.transaction() as session:
        repo = ModelRepository(session, tenant.id)
        record = repo.get(model)
        assert record is not None, f"model {model!r} does not exist"
        number = repo.allocate_version(record.id)
        assert number is not None
        repo.add_version(
            record.id,
            number,
            NewVersion(
                id=new_id("mver"),
                artifact_uri="memory://nowhere/model.joblib",
                artifact_key=f"tenants/{tenant.id}/models/{record.id}/art_{number}/model.joblib",
                filename="model.joblib",
                sha256="0" * 64,
                size_bytes=size_bytes,
                framework="sklearn",
                format="joblib",
                signature=None,
                signature_source="none",
                source_kind="job" if job_id else "uri",
                job_id=job_id,
                created_by="test",
            ),
        )
    return number
