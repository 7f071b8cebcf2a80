"""The composition root's services, built without the REST app: ``build_context`` is what
``create_app`` serves and what the CLI's admin commands (``mlp admin``, ``mlp db``, ``mlp
serve``) use directly, so they import no FastAPI and no route."""

from __future__ import annotations

from ml_platform.api.context import ApiContext
from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.config import Mode, Settings
from ml_platform.data.service import DataArea
from ml_platform.deployments.service import DeploymentService
from ml_platform.features.service import build_feature_service
from ml_platform.jobs.engine import JobEngine
from ml_platform.jobs.service import JobService
from ml_platform.registry.factory import build_registry
from ml_platform.store.crypto import load_secret_box
from ml_platform.store.db import Database, ensure_private_dir


def build_context(settings: Settings, db: Database | None = None) -> ApiContext:
    ensure_private_dir(settings.data_dir, traversable=settings.job_user is not None)
    db = db or Database(settings.resolved_database_url)
    if db.secrets is None:
        db.secrets = load_secret_box(
            settings.secrets_keys,
            production=settings.mode is Mode.PRODUCTION,
            data_dir=settings.data_dir,
        )
    tokens = TokenCodec(
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
        jwks_url=settings.jwt_jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    engine = JobEngine(settings, db)
    quotas = engine.quotas
    deployments = DeploymentService(db, quotas)
    features = build_feature_service(
        settings, db, DataArea(engine.paths, settings.max_data_upload_bytes, engine.storage)
    )
    return ApiContext(
        settings=settings,
        db=db,
        auth=AuthService(db, tokens, cache_seconds=settings.auth_cache_seconds),
        jobs=JobService(db, engine, quotas),
        registry=build_registry(
            settings,
            db,
            engine.paths,
            deployments=deployments,
            quotas=quotas,
        ),
        deployments=deployments,
        engine=engine,
        quotas=quotas,
        features=features,
    )
