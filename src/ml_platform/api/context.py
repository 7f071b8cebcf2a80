"""What the REST layer needs from the composition root, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from ml_platform.auth.service import AuthService
from ml_platform.config import Settings
from ml_platform.deployments.service import DeploymentService
from ml_platform.features.service import FeatureService
from ml_platform.governance.quotas import QuotaService
from ml_platform.jobs.engine import JobEngine
from ml_platform.jobs.service import JobService
from ml_platform.registry.service import RegistryService
from ml_platform.store.db import Database


@dataclass
class ApiContext:
    settings: Settings
    db: Database
    auth: AuthService
    jobs: JobService
    engine: JobEngine | None = None  # the job runtime (scheduler, executors, logs, metrics)
    registry: RegistryService | None = None  # the model registry
    deployments: DeploymentService | None = None  # deployments (the serving plane's desired set)
    quotas: QuotaService | None = None  # tenant quotas (limits, overrides, usage)
    features: FeatureService | None = None  # the feature store (definitions, online, historical)
