"""The one typed settings object. Every knob is an ``ML_PLATFORM_*`` environment variable."""

from __future__ import annotations

import os
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me"  # noqa: S105 (refused in production)
MIN_HS_SECRET_BYTES = 32


class Mode(str, Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ExecutorKind(str, Enum):
    LOCAL = "local"
    RAY = "ray"


def _default_config_dir() -> Path:
    return Path.home() / ".config" / "ml-platform"


class Settings(BaseSettings):
    """Platform configuration. Construct explicitly in tests; ``Settings()`` reads the env."""

    # errors never echo inputs: they would print secrets (JWT secret, secrets key) to logs
    model_config = SettingsConfigDict(
        env_prefix="ML_PLATFORM_", extra="ignore", hide_input_in_errors=True
    )

    mode: Mode = Mode.DEVELOPMENT
    data_dir: Path = Field(
        default=Path(".mlp"), description="Where SQLite, logs and artifacts live"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/mlp.db"
    )
    config_dir: Path = Field(default_factory=_default_config_dir)

    # REST control plane
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    v1_sunset: datetime | None = Field(
        default=None,
        description="When /v1 stops answering: sent as its Sunset header (RFC 8594); unset, none",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Server log lines: text, or one JSON object per line (json); both carry "
        "the request id",
    )
    access_log: bool = Field(
        default=True,
        description="One ml_platform.access line per REST request (method, route template, "
        "status, duration, request id, tenant) at INFO",
    )
    usage_flush_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often per-tenant API usage counts are added to the database (and at "
        "shutdown)",
    )

    # Auth
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: str = "HS256"
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = 0
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "How long the control plane trusts a credential it has checked without reading the "
            "store again (a key revoked on another replica or by `mlp admin` against the store "
            "keeps working here that long; revoked through this server, at once); 0 reads the "
            "store on every request"
        ),
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description=(
            "Fernet key(s) that encrypt secrets at rest (job env_vars values): comma-separated, "
            "newest first (older keys still decrypt, for rotation). Required in production; "
            "in development a key is generated into <data_dir>/secrets.key"
        ),
    )

    # Jobs
    executor: ExecutorKind = ExecutorKind.LOCAL
    ray_address: str | None = None
    ray_pass_storage_secrets: bool = Field(
        default=False,
        description="Ray executor: put the storage's credentials (key, secret, token... of "
        "storage_options) into a job's runtime_env, which Ray's dashboard and Job API show to "
        "anyone reaching them. Off: only non-secret options (endpoint, region) travel and the "
        "Ray workers authenticate from their own environment (AWS_* variables, instance role)",
    )
    node_cpu_cores: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    node_memory_gb: int | None = None
    node_gpus: int = 0
    fit_to_node: bool = Field(
        default=True, description="Local executor: fit CPU/memory requests beyond the node to it"
    )
    tenant_max_concurrent_jobs: int = Field(
        default=4,
        ge=1,
        description="Default quota: concurrent running jobs per tenant (more wait, pending)",
    )
    tenant_max_gpus: int | None = Field(
        default=None,
        ge=0,
        description="Default quota: GPUs a tenant's running jobs hold; unset: no limit",
    )
    tenant_max_cpu_cores: float | None = Field(
        default=None,
        ge=0,
        description="Default quota: CPU cores a tenant's running jobs hold; unset: no limit",
    )
    tenant_max_memory_gb: float | None = Field(
        default=None,
        ge=0,
        description="Default quota: memory (GB) a tenant's running jobs hold; unset: no limit",
    )
    tenant_max_queued_jobs: int | None = Field(
        default=None,
        ge=0,
        description="Default quota: pending jobs per tenant (more: 429); unset: no limit",
    )
    tenant_max_deployments: int | None = Field(
        default=None,
        ge=0,
        description="Default quota: deployments per tenant (more: 429); unset: no limit",
    )
    tenant_max_storage_bytes: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Default quota: bytes stored per tenant (data files, code packages, model "
            "artifacts; more: 429); unset: no limit"
        ),
    )
    scheduler_interval_seconds: float = Field(default=0.5, gt=0)
    cancel_grace_seconds: float = Field(default=10.0, ge=0)
    job_user: str | None = Field(default=None, description="Unprivileged OS user for job code")
    job_python: str | None = Field(default=None, description="Interpreter for job code")
    shared_read_roots: list[Path] = Field(default_factory=list)
    allowed_uri_prefixes: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Remote locations (s3://, gs://, ...) each tenant may name as data_path, "
            "output_path or artifact_uri: tenant name or id -> URI prefixes. Nothing else "
            "remote is allowed, except the tenant's own subtree of a remote artifact_root"
        ),
    )
    max_code_package_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_data_upload_bytes: int = Field(
        default=5 * 1024**3, ge=1024, description="Largest file PUT /v1/data/{path} accepts"
    )
    job_retry_backoff_seconds: float = Field(
        default=5.0, ge=0, description="First retry delay; doubles per attempt, capped at 300 s"
    )
    scheduler_enabled: bool = Field(
        default=True, description="Run the scheduler in this process (one replica wins a lease)"
    )
    scheduler_lease_seconds: float = Field(default=15.0, gt=0)
    audit_retention_days: float = Field(
        default=90, gt=0, description="Audit events older than this are purged (lazily)"
    )
    audit_delivery: Literal["committed", "buffered"] = Field(
        default="committed",
        description=(
            "committed: an audited response waits until its event is committed (a crash "
            "loses none); buffered: it does not wait, events are committed a moment later "
            "in groups (saves the commit on each mutation; a kill -9 can lose the last few "
            "milliseconds' events)"
        ),
    )

    # Storage: every blob (code packages, artifacts, job outputs) under one fsspec root
    storage_uri: str | None = Field(
        default=None,
        description=(
            "fsspec root of every blob (local directory or s3://bucket/prefix); default "
            "<data_dir>. Several replicas need one shared root (an object store)"
        ),
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for storage_uri (e.g. S3 key, secret, client_kwargs)",
    )
    job_logs_keep_live: bool = Field(
        default=False,
        description="Keep an ended job's live log lines (database rows or file) after they "
        "were archived to <storage_uri>/logs/jobs/<job_id>.jsonl; by default they are dropped",
    )

    # Registry
    artifact_root: str | None = Field(
        default=None, description="fsspec URI; default <storage_uri>/artifacts"
    )
    max_upload_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    allow_pickle: bool = True
    artifact_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for artifact_root (e.g. S3 endpoint_url, key)",
    )
    signature_inference_timeout_seconds: float = Field(default=60.0, gt=0)
    signature_inference_memory_mb: int = Field(default=2048, ge=256)

    # Serving
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    serving_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    grpc_max_message_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    serving_rest_port: int = Field(
        default=8081, ge=0, le=65535, description="V2 REST on serving workers"
    )
    serving_metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "GET /metrics on the serving REST port (per-tenant, per-deployment samples) then "
            "needs Authorization: Bearer <token>; unset, it answers loopback clients only"
        ),
    )
    serving_source_poll_seconds: float = Field(default=1.0, gt=0)
    serving_auth_cache_seconds: float = Field(default=10.0, ge=0)
    serving_model_load_timeout_seconds: float = Field(default=120.0, gt=0)
    serving_compile_forests: bool = Field(
        default=True,
        description=(
            "Serve RandomForest/ExtraTrees (classifiers and regressors) through a numba kernel "
            "and LogisticRegression through a numpy path, each verified equal to scikit-learn "
            "at load (scikit-learn itself on any mismatch, and for rows with NaN or infinity)"
        ),
    )
    serving_sandbox_export: bool = Field(
        default=True,
        description=(
            "A pickle/joblib model that its sandbox can write as skops with the types a skops "
            "upload may hold (scikit-learn, numpy, scipy) is served in the shared workers from "
            "that export, once it predicted exactly as the sandbox on probe rows; other pickle "
            "models (custom classes or functions), or all of them when false, are served from "
            "the sandbox"
        ),
    )
    serving_sandbox_preload: list[str] = Field(
        default_factory=list,
        description="Extra modules confined pickle sandboxes import before dropping privileges",
    )

    # Rate limits (limits notation, e.g. "600/minute"; empty string: no budget)
    rate_limit_enabled: bool = True
    rate_limit_control: str = Field(default="600/minute", description="REST, per tenant")
    rate_limit_data: str = Field(default="6000/second", description="gRPC + V2 REST, per tenant")
    rate_limit_control_per_credential: str | None = None
    rate_limit_data_per_credential: str | None = None
    rate_limit_tenants: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='tenant id -> {"control": "...", "data": "...", "*_per_credential": "..."}',
    )
    rate_limit_strategy: Literal["moving-window", "fixed-window"] = "moving-window"
    rate_limit_fail_open: bool = Field(
        default=True, description="Redis unreachable: admit (true) or answer 503 (false)"
    )
    redis_url: str | None = Field(
        default=None,
        description="Shared rate-limit budgets and live job-log fan-out for every replica",
    )
    rate_limit_key_prefix: str = "mlp-ratelimit"

    # Feature store
    feature_online_store: Literal["auto", "sql", "redis"] = Field(
        default="auto",
        description="Where online feature values live: the platform's store (sql), Redis "
        "(redis, needs redis_url), or auto (Redis when redis_url is set, else sql)",
    )
    feature_redis_key_prefix: str = Field(
        default="mlp-features:", description="Prefix of every online feature key in Redis"
    )
    feature_definition_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a serving worker reuses a feature view definition it read",
    )
    feature_max_source_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest source file a feature view reads (materialization, training data)",
    )

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        if self.mode is Mode.PRODUCTION and self.uses_dev_secret and not self.jwt_jwks_url:
            raise ValueError(
                "ML_PLATFORM_JWT_SECRET must be set in production mode "
                "(the built-in development secret is public)"
            )
        if (
            self.mode is Mode.PRODUCTION
            and self.jwt_algorithm.upper().startswith("HS")
            and not self.jwt_jwks_url
            and len(self.jwt_secret.get_secret_value().encode()) < MIN_HS_SECRET_BYTES
        ):
            raise ValueError(
                f"ML_PLATFORM_JWT_SECRET must be at least {MIN_HS_SECRET_BYTES} bytes in "
                "production mode (RFC 7518 3.2: an HMAC key as long as the hash output)"
            )
        return self

    @model_validator(mode="after")
    def _check_secrets_key(self) -> Settings:
        from ml_platform.store.crypto import check_keys

        if self.secrets_key is not None:
            check_keys(self.secrets_keys)
        if self.mode is Mode.PRODUCTION and not self.secrets_keys:
            raise ValueError(
                "ML_PLATFORM_SECRETS_KEY must be set in production mode: job env_vars are "
                'encrypted at rest with it (make a key with `python -c "from '
                'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`)'
            )
        return self

    @model_validator(mode="after")
    def _check_allowed_uri_prefixes(self) -> Settings:
        from ml_platform.jobs.paths import parse_prefix

        for tenant, prefixes in self.allowed_uri_prefixes.items():
            for prefix in prefixes:
                parse_prefix(prefix, tenant)  # ValueError says which and why
        return self

    @model_validator(mode="after")
    def _check_rate_limits(self) -> Settings:
        from ml_platform.governance.ratelimit import check_limits

        check_limits(self)  # ValueError names the bad budget
        return self

    @property
    def secrets_keys(self) -> list[str]:
        """``secrets_key`` split into its keys, newest first (empty when unset)."""
        from ml_platform.store.crypto import split_keys

        if self.secrets_key is None:
            return []
        return split_keys(self.secrets_key.get_secret_value())

    @property
    def uses_dev_secret(self) -> bool:
        return self.jwt_secret.get_secret_value() == DEV_JWT_SECRET

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mlp.db').resolve()}"

    @property
    def resolved_storage_uri(self) -> str:
        return self.storage_uri or str(Path(self.data_dir).resolve())

    @property
    def resolved_artifact_root(self) -> str:
        if self.artifact_root:
            return self.artifact_root
        return self.resolved_storage_uri.rstrip("/") + "/artifacts"

    @property
    def resolved_artifact_storage_options(self) -> dict[str, Any]:
        """``artifact_storage_options``, else ``storage_options`` for a root under storage."""
        if self.artifact_storage_options or self.artifact_root:
            return self.artifact_storage_options
        return self.storage_options

    @property
    def credentials_file(self) -> Path:
        return self.config_dir / "credentials.json"
