"""Model registry wire models: models, versions, signatures and aliases."""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ml_platform.schemas._types import (
    TAG_MAP_SCHEMA,
    JsonObject,
    PositiveInt32,
    RequestModel,
    SafeStr,
    StrMap,
    check_tags,
)
from ml_platform.schemas.jobs import FrameworkType

__all__ = [
    "ALIAS_PATTERN",
    "ARTIFACT_FORMATS",
    "MODEL_NAME_PATTERN",
    "FeatureDType",
    "InputFeature",
    "Lineage",
    "Model",
    "ModelAlias",
    "ModelAliasUpdate",
    "ModelCreate",
    "ModelFormat",
    "ModelListResponse",
    "ModelSignature",
    "ModelUpdate",
    "ModelVersion",
    "ModelVersionCreate",
    "ModelVersionListResponse",
    "SignatureSource",
    "VersionSource",
    "VersionSourceKind",
]

MODEL_NAME_PATTERN = r"^[a-z0-9-]+$"
ALIAS_PATTERN = r"^[a-z][a-z0-9-]*$"
RESERVED_ALIASES = frozenset({"latest"})


class ModelFormat(str, Enum):
    """How an artifact is serialized (the serving plane picks its runtime from this)."""

    JOBLIB = "joblib"
    PICKLE = "pickle"
    SKOPS = "skops"
    ONNX = "onnx"
    XGBOOST_JSON = "xgboost-json"
    XGBOOST_UBJ = "xgboost-ubj"

    @property
    def runs_code_on_load(self) -> bool:
        """Pickle-based formats execute arbitrary code when loaded."""
        return self in (ModelFormat.JOBLIB, ModelFormat.PICKLE)


ARTIFACT_FORMATS = tuple(f.value for f in ModelFormat)


class FeatureDType(str, Enum):
    """The data type of one model input column."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT32 = "int32"
    INT64 = "int64"
    BOOL = "bool"
    STRING = "string"


class InputFeature(RequestModel):
    """One model input column, in the order the model expects it."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "tenure_months", "dtype": "float64"}]}
    )

    name: SafeStr = Field(..., min_length=1, max_length=255)
    dtype: FeatureDType = FeatureDType.FLOAT64


class ModelSignature(RequestModel):
    """What a model takes and returns: `input_features` (ordered) and `output_labels`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "input_features": [
                    {"name": "tenure_months", "dtype": "float64"},
                    {"name": "monthly_charges", "dtype": "float64"},
                ],
                "output_labels": ["stay", "churn"],
            }
        },
    )

    input_features: list[InputFeature] = Field(default_factory=list, max_length=100_000)
    output_labels: list[SafeStr] = Field(default_factory=list, max_length=100_000)

    @field_validator("input_features")
    @classmethod
    def _unique_names(cls, features: list[InputFeature]) -> list[InputFeature]:
        seen: set[str] = set()
        for feature in features:
            if feature.name in seen:
                raise ValueError(f"input feature {feature.name!r} is listed twice")
            seen.add(feature.name)
        return features


class SignatureSource(str, Enum):
    """Where a version's signature came from: given, inferred from the file, or none."""

    GIVEN = "given"
    INFERRED = "inferred"
    NONE = "none"


class VersionSourceKind(str, Enum):
    """How a version's artifact arrived: from a training job, an upload, or a URI."""

    JOB = "job"
    UPLOAD = "upload"
    URI = "uri"


_MODEL_EXAMPLE: dict[str, Any] = {
    "name": "churn",
    "framework": "sklearn",
    "description": "Customer churn classifier",
    "tags": {"team": "ml-analytics"},
}


class ModelCreate(RequestModel):
    """A model: a named, versioned line of artifacts in your tenant."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": _MODEL_EXAMPLE})

    name: str = Field(..., min_length=1, max_length=63, pattern=MODEL_NAME_PATTERN)
    framework: FrameworkType
    description: SafeStr = Field("", max_length=4096)
    tags: StrMap = Field(default_factory=dict, json_schema_extra=TAG_MAP_SCHEMA)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags)


class ModelUpdate(RequestModel):
    """A partial update (JSON merge): only the fields given change; `name` is immutable."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"description": "Churn, v2 features"}}
    )

    framework: FrameworkType | None = None
    description: SafeStr | None = Field(None, max_length=4096)
    tags: StrMap | None = Field(None, json_schema_extra=TAG_MAP_SCHEMA)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str] | None) -> dict[str, str] | None:
        return None if tags is None else check_tags(tags)


class Model(BaseModel):
    """A registered model: a name that groups numbered versions and aliases."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "mdl_01jdx3m8c5r7v2k9w4q6y8z0ab",
                **_MODEL_EXAMPLE,
                "tenant_id": "ten_01jdx3m8c5r7v2k9w4q6y8z0cd",
                "latest_version": 3,
                "aliases": {"production": 2, "latest": 3},
                "created_by": "default-key",
                "created_at": "2026-11-26T10:00:00Z",
                "updated_at": "2026-11-26T10:00:00Z",
            }
        }
    )

    id: str = Field(json_schema_extra={"readOnly": True})
    name: str
    framework: FrameworkType
    description: str
    tags: dict[str, str]
    tenant_id: str = Field(json_schema_extra={"readOnly": True})
    latest_version: int | None = Field(
        None, description="The highest existing version", json_schema_extra={"readOnly": True}
    )
    aliases: dict[str, int] = Field(
        default_factory=dict,
        description="Alias -> version, `latest` included when a version exists",
        json_schema_extra={"readOnly": True},
    )
    created_by: str = Field(json_schema_extra={"readOnly": True})
    created_at: datetime = Field(json_schema_extra={"readOnly": True})
    updated_at: datetime = Field(json_schema_extra={"readOnly": True})


class ModelListResponse(BaseModel):
    """A page of the tenant's models (`page`, `page_size`, `total`)."""

    models: list[Model]
    total: int
    page: int
    page_size: int
    has_more: bool


def _given(field: str) -> dict[str, Any]:
    """JSON Schema: ``field`` is present and not null."""
    return {"required": [field], "properties": {field: {"type": "string"}}}


class ModelVersionCreate(RequestModel):
    """Register a version from a succeeded training job or from an artifact URI.

    Exactly one of `job_id` and `artifact_uri`. To upload a file instead, send
    `multipart/form-data` with a `file` part (and optional `format`, `signature`,
    `metadata` and `description` parts, the last three as JSON text).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"job_id": "job_01jdx3m8c5r7v2k9w4q6y8z0ab", "metadata": {"dataset": "q3"}},
            # The schema form of ``_one_source``: exactly one of job_id and artifact_uri, and
            # artifact_path only together with job_id.
            "oneOf": [_given("job_id"), _given("artifact_uri")],
            "anyOf": [{"not": _given("artifact_path")}, _given("job_id")],
        },
    )

    job_id: SafeStr | None = Field(
        None, max_length=64, description="A succeeded job of your tenant"
    )
    artifact_uri: SafeStr | None = Field(
        None, max_length=2048, description="A path or URI your tenant may read"
    )
    artifact_path: SafeStr | None = Field(
        None,
        max_length=1024,
        description="The model file inside the job's output directory, when it holds several",
    )
    format: ModelFormat | None = Field(None, description="Detected when omitted")
    signature: ModelSignature | None = Field(
        None, description="Inferred for scikit-learn and XGBoost models when omitted"
    )
    metadata: JsonObject = Field(default_factory=dict)
    description: SafeStr = Field("", max_length=4096)

    @model_validator(mode="after")
    def _one_source(self) -> ModelVersionCreate:
        if (self.job_id is None) == (self.artifact_uri is None):
            raise ValueError("give exactly one of job_id and artifact_uri (or upload a file)")
        if self.artifact_path is not None and self.job_id is None:
            raise ValueError("artifact_path only applies with job_id")
        return self


class VersionSource(BaseModel):
    """Where a version's artifact came from (`job_id`, `uri` or the uploaded `filename`)."""

    kind: VersionSourceKind
    job_id: str | None = None
    uri: str | None = None
    filename: str | None = None


class Lineage(BaseModel):
    """Where a version came from: the job, what it was trained with and how it scored."""

    job_id: str
    job_name: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    data_path: str | None = None


class ModelVersion(BaseModel):
    """One immutable version of a model: its artifact, format, signature and lineage."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "mver_01jdx3m8c5r7v2k9w4q6y8z0ab",
                "model": "churn",
                "version": 1,
                "artifact_uri": "file:///var/lib/mlp/artifacts/tenants/ten_01/models/mdl_01/art_01/model.joblib",
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "size_bytes": 20480,
                "framework": "sklearn",
                "format": "joblib",
                "signature": {
                    "input_features": [{"name": "tenure_months", "dtype": "float64"}],
                    "output_labels": ["0", "1"],
                },
                "signature_source": "inferred",
                "metadata": {},
                "description": "",
                "source": {"kind": "job", "job_id": "job_01jdx3m8c5r7v2k9w4q6y8z0ab"},
                "lineage": {
                    "job_id": "job_01jdx3m8c5r7v2k9w4q6y8z0ab",
                    "job_name": "churn-model-v1",
                    "hyperparameters": {"n_estimators": 100},
                    "metrics": {"accuracy": 0.91},
                },
                "aliases": ["production", "latest"],
                "created_by": "default-key",
                "created_at": "2026-11-26T10:00:00Z",
            }
        }
    )

    id: str = Field(json_schema_extra={"readOnly": True})
    model: str = Field(json_schema_extra={"readOnly": True})
    version: int = Field(json_schema_extra={"readOnly": True})
    artifact_uri: str = Field(json_schema_extra={"readOnly": True})
    sha256: str = Field(json_schema_extra={"readOnly": True})
    size_bytes: int = Field(json_schema_extra={"readOnly": True})
    framework: FrameworkType
    format: ModelFormat
    signature: ModelSignature | None
    signature_source: SignatureSource = Field(json_schema_extra={"readOnly": True})
    metadata: dict[str, Any]
    description: str
    source: VersionSource = Field(json_schema_extra={"readOnly": True})
    lineage: Lineage | None = Field(None, json_schema_extra={"readOnly": True})
    aliases: list[str] = Field(default_factory=list, json_schema_extra={"readOnly": True})
    created_by: str = Field(json_schema_extra={"readOnly": True})
    created_at: datetime = Field(json_schema_extra={"readOnly": True})


class ModelVersionListResponse(BaseModel):
    """A page of a model's versions (`page`, `page_size`, `total`)."""

    versions: list[ModelVersion]
    total: int
    page: int
    page_size: int
    has_more: bool


class ModelAliasUpdate(RequestModel):
    """Point an alias (e.g. `production`) at a version of the model."""

    model_config = ConfigDict(json_schema_extra={"example": {"version": 3}})

    version: PositiveInt32 = Field(..., description="The version the alias points to")


class ModelAlias(BaseModel):
    """A named pointer (e.g. `production`) to one version of a model."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": "churn",
                "alias": "production",
                "version": 3,
                "updated_by": "default-key",
                "updated_at": "2026-11-26T10:00:00Z",
            }
        }
    )

    model: str
    alias: str
    version: int
    updated_by: str | None = Field(None, description="Absent for the implicit `latest`")
    updated_at: datetime | None = None


def is_valid_alias(alias: str) -> bool:
    return len(alias) <= 63 and re.fullmatch(ALIAS_PATTERN, alias) is not None
