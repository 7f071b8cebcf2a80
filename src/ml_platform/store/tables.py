"""Imports every table module so ``Base.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

from ml_platform.store import (
    audit,
    deployments,
    idempotency,
    job_runtime,
    jobs,
    quotas,
    tenants,
    usage,
)
from ml_platform.store import features as feature_store
from ml_platform.store import models as registry_models
from ml_platform.store.base import Base

__all__ = [
    "Base",
    "audit",
    "deployments",
    "feature_store",
    "idempotency",
    "job_runtime",
    "jobs",
    "quotas",
    "registry_models",
    "tenants",
    "usage",
]
