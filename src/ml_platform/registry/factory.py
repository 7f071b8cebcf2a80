"""Builds the registry service from ``Settings`` (called by the composition root)."""

from __future__ import annotations

from ml_platform.archives import ArchiveLimits
from ml_platform.config import Settings
from ml_platform.governance.quotas import QuotaService
from ml_platform.registry.artifacts import ArtifactStore
from ml_platform.registry.deployments import DeploymentLookup
from ml_platform.registry.service import RegistryService
from ml_platform.registry.signature import SignatureInspector
from ml_platform.registry.sources import PathChecker, Sources
from ml_platform.registry.staging import StagingArea
from ml_platform.store.db import Database


def artifact_store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(
        settings.resolved_artifact_root, settings.resolved_artifact_storage_options
    )


def build_registry(
    settings: Settings,
    db: Database,
    paths: PathChecker,
    deployments: DeploymentLookup | None = None,
    quotas: QuotaService | None = None,
) -> RegistryService:
    """``paths`` is the jobs' ``PathPolicy``: which local paths a tenant may read."""
    store = artifact_store(settings)
    staging = StagingArea((settings.data_dir / "tmp" / "registry").resolve())
    sources = Sources(
        store=store,
        staging=staging,
        paths=paths,
        max_bytes=settings.max_upload_bytes,
        storage_options=settings.resolved_artifact_storage_options,
        # an archive may unpack to no more than a single upload may weigh
        archive_limits=ArchiveLimits(max_unpacked_bytes=settings.max_upload_bytes),
    )
    inspector = SignatureInspector(
        timeout_seconds=settings.signature_inference_timeout_seconds,
        memory_mb=settings.signature_inference_memory_mb,
        job_user=settings.job_user,
        python=settings.job_python,
        allow_pickle=settings.allow_pickle,
    )
    return RegistryService(
        db,
        store,
        staging,
        sources,
        inspector,
        max_upload_bytes=settings.max_upload_bytes,
        deployments=deployments,
        quotas=quotas,
    )
