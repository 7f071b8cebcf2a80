"""Typed, tolerant result models: unknown fields are kept, new enum values are plain strings.

A newer server may add fields or states; an older SDK must still parse what it gets. So
every model allows extra fields, every enum-like field is a ``str``, and every field the
SDK does not need to work is optional. ``raw`` is the document exactly as received and
``request_id`` the ``X-Request-ID`` of the response it came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "TERMINAL_JOB_STATUSES",
    "APIObject",
    "DataFile",
    "DeploymentData",
    "JobData",
    "JobSpecData",
    "LogLine",
    "Me",
    "MetricPoint",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "Prediction",
    "Quota",
    "Quotas",
]

TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class APIObject(BaseModel):
    """Base of every result: extra fields allowed, the raw document and request id kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _request_id: str | None = PrivateAttr(default=None)

    @classmethod
    def parse(cls, data: Any, request_id: str | None = None) -> Self:
        obj = cls.model_validate(data)
        obj._raw = data if isinstance(data, dict) else {}
        obj._request_id = request_id
        return obj

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    @property
    def request_id(self) -> str | None:
        return self._request_id


class JobSpecData(APIObject):
    name: str = ""
    framework: str = ""
    docker_image: str = ""
    entrypoint: str = ""
    data_path: str = ""
    output_path: str = ""
    compute: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    source: str | None = None


class JobData(APIObject):
    id: str
    status: str
    spec: JobSpecData = Field(default_factory=JobSpecData)
    tenant_id: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    resource_usage: dict[str, float] | None = None
    pending_reason: str | None = None
    queue_position: int | None = None
    attempt: int | None = None
    status_history: list[dict[str, Any]] = Field(default_factory=list)


class Model(APIObject):
    """A registered model (its versions are ``ModelVersion``)."""

    id: str = ""
    name: str
    framework: str = ""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    tenant_id: str | None = None
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict)
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ModelVersion(APIObject):
    """One immutable version of a model: its artifact, format, signature and lineage."""

    id: str = ""
    model: str
    version: int
    artifact_uri: str = ""
    sha256: str = ""
    size_bytes: int = 0
    framework: str = ""
    format: str = ""
    signature: dict[str, Any] | None = None
    signature_source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    source: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] | None = None
    aliases: list[str] = Field(default_factory=list)
    created_by: str | None = None
    created_at: datetime | None = None

    @property
    def input_features(self) -> list[str]:
        features = (self.signature or {}).get("input_features") or []
        return [str(f.get("name")) for f in features if isinstance(f, dict)]


class ModelAlias(APIObject):
    """Where an alias of a model points."""

    model: str = ""
    alias: str
    version: int
    updated_by: str | None = None
    updated_at: datetime | None = None


class DeploymentData(APIObject):
    id: str = ""
    name: str
    model: str = ""
    version: int | None = None
    alias: str | None = None
    target_version: int | None = None
    serving_version: int | None = None
    status: str = "pending"
    status_message: str = ""
    max_batch_size: int | None = None
    max_batch_delay_ms: float | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class LogLine(APIObject):
    """One line of a job's log; ``id`` is its 1-based line number."""

    id: int
    timestamp: datetime | None = None
    stream: str = "stdout"
    line: str = ""


class MetricPoint(APIObject):
    id: int
    name: str
    step: int | None = None
    value: float
    timestamp: datetime | None = None


class Me(APIObject):
    """Who the client is authenticated as, and where its data goes."""

    principal: str = ""
    auth_method: str = ""
    tenant_id: str = ""
    tenant_name: str = ""
    data_prefix: str = "data/"


class Quota(APIObject):
    """One tenant quota: ``limit`` (None: no limit) beside the tenant's current ``usage``."""

    name: str = ""
    limit: int | float | None = None
    usage: int | float = 0
    unit: str = ""
    kind: str = ""  # "delay" (jobs wait) or "hard" (creations refused with 429)
    source: str = ""  # "default" or "override"
    description: str = ""


class Quotas(APIObject):
    """The tenant's quotas (``client.quotas()``); ``quotas["max_gpus"]`` finds one by name."""

    tenant_id: str = ""
    tenant_name: str = ""
    quotas: list[Quota] = Field(default_factory=list)

    def __getitem__(self, name: str) -> Quota:
        for quota in self.quotas:
            if quota.name == name:
                return quota
        raise KeyError(name)


class DataFile(APIObject):
    """A file in the tenant's data area; ``path`` is what a job's ``data_path`` accepts."""

    path: str
    size_bytes: int = 0
    sha256: str = ""
    modified_at: datetime | None = None


class Prediction(APIObject):
    """One prediction from the serving plane (gRPC ``ModelServing``)."""

    predictions: list[float] = Field(default_factory=list)
    confidence_scores: dict[str, float] = Field(default_factory=dict)
    model_version_used: str = ""
    latency_microseconds: int = 0
