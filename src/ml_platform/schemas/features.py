"""Feature store wire models: entities, feature views, materialization runs, online lookups
and point-in-time training data."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from ml_platform.schemas._types import (
    INT64_MAX,
    INT64_MIN,
    SAFE_TEXT_PATTERN,
    RequestModel,
    SafeStr,
)

__all__ = [
    "Entity",
    "EntityCreate",
    "EntityListResponse",
    "FeatureSource",
    "FeatureValue",
    "FeatureView",
    "FeatureViewCreate",
    "FeatureViewListResponse",
    "FeatureViewUpdate",
    "FileSource",
    "HistoricalFeaturesRequest",
    "HistoricalFeaturesResponse",
    "JobOutputSource",
    "MaterializationList",
    "MaterializationRun",
    "MaterializationState",
    "OnlineFeaturesRequest",
    "OnlineFeaturesResponse",
    "OnlineFeaturesRow",
    "PushRequest",
    "PushResponse",
    "ValueStatus",
    "ValueType",
]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\- ]*$"
REF_PATTERN = r"^[a-z][a-z0-9_]*:[A-Za-z_][A-Za-z0-9_.\- ]*$"
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,254}"
SOURCE_PATH_PATTERN = rf"^(?:data/)?{_SEGMENT}(?:/{_SEGMENT}){{0,30}}$"
OUTPUT_PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,30}}$"
JOB_ID_PATTERN = r"^job_[0-9a-z]+$"
MAX_ROWS = 10_000
MAX_REFS = 1_000
MAX_TTL_SECONDS = 10 * 365 * 86_400

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]
Column = Annotated[str, Field(min_length=1, max_length=255, pattern=COLUMN_PATTERN)]
FeatureRefStr = Annotated[
    str,
    Field(
        min_length=3,
        max_length=320,
        pattern=REF_PATTERN,
        description="`<feature view>:<feature>`",
        examples=["customer_stats:orders_7d"],
    ),
]
_Int64 = Annotated[
    int,
    Field(ge=INT64_MIN, le=INT64_MAX),
    WithJsonSchema({"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}),
]
_Fraction = Annotated[float, WithJsonSchema({"type": "number", "not": {"type": "integer"}})]
Scalar = _Int64 | _Fraction | bool | SafeStr | None
"""A feature or join key value: a 64-bit integer, a finite number, a boolean, text or null."""
_SCALAR_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "boolean"},
        {"type": "string", "pattern": SAFE_TEXT_PATTERN},
        {"type": "null"},
    ]
}
ScalarRow = Annotated[
    dict[Column, Scalar],
    Field(max_length=1_000),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 1_000,
            "propertyNames": {"minLength": 1, "maxLength": 255, "pattern": COLUMN_PATTERN},
            "additionalProperties": _SCALAR_SCHEMA,
        }
    ),
]
"""One row: column name -> value."""


class ValueType(str, Enum):
    """The type of a join key or feature."""

    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"


class ValueStatus(str, Enum):
    """A looked-up value is PRESENT, MISSING (never materialized or pushed) or OUTSIDE_TTL
    (older than the view's TTL; not served)."""

    PRESENT = "PRESENT"
    MISSING = "MISSING"
    OUTSIDE_TTL = "OUTSIDE_TTL"


class MaterializationState(str, Enum):
    """Where a materialization run is: running, succeeded or failed."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _typed_columns_schema(most: int, what: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": most,
            "propertyNames": {"minLength": 1, "maxLength": 255, "pattern": COLUMN_PATTERN},
            "additionalProperties": {"$ref": "#/components/schemas/ValueType"},
            "description": what,
        }
    )


_KEYS_HELP = "Source column -> value type of each join key, in key order"
_FEATURES_HELP = "Source column -> value type of each feature"
JoinKeys = Annotated[
    dict[Column, ValueType],
    Field(min_length=1, max_length=8, description=_KEYS_HELP),
    _typed_columns_schema(8, _KEYS_HELP),
]
FeatureFields = Annotated[
    dict[Column, ValueType],
    Field(min_length=1, max_length=500, description=_FEATURES_HELP),
    _typed_columns_schema(500, _FEATURES_HELP),
]


class EntityCreate(RequestModel):
    """What feature values are about (a customer, a driver): a name and its join keys."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "customer",
                "join_keys": {"customer_id": "int64"},
                "description": "A paying customer",
            }
        }
    )

    name: Name
    join_keys: JoinKeys
    description: SafeStr = Field("", max_length=1000)


class Entity(BaseModel):
    """An entity: the thing features describe, identified by its typed join keys."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "customer",
                "join_keys": {"customer_id": "int64"},
                "description": "A paying customer",
                "created_by": "alice",
                "created_at": "2026-12-01T12:00:00Z",
            }
        }
    )

    name: str
    join_keys: JoinKeys
    description: str
    created_by: str = Field(json_schema_extra={"readOnly": True})
    created_at: datetime = Field(json_schema_extra={"readOnly": True})


class EntityListResponse(BaseModel):
    """One page of your entities."""

    entities: list[Entity]
    total: int
    page: int
    page_size: int
    has_more: bool


_FORMAT_FIELD = Field(
    None,
    pattern="^(csv|parquet)$",
    description="`csv` or `parquet`; by default from the file's extension",
)


class FileSource(RequestModel):
    """Rows from a CSV or Parquet file in your data area (`kind` may be left out)."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"kind": "file", "path": "data/events/customers.parquet"}}
    )

    kind: Literal["file"] = Field("file", description="`file`: a file of your data area")
    path: str = Field(
        min_length=1,
        max_length=1024,
        pattern=SOURCE_PATH_PATTERN,
        description="A file of your data area (`data/<path>` or `<path>`), CSV or Parquet; "
        "segments start with a letter, digit or `_` and hold letters, digits, `_.- `",
        examples=["data/events/customers.parquet"],
    )
    format: str | None = _FORMAT_FIELD


class JobOutputSource(RequestModel):
    """Rows from a CSV or Parquet file a succeeded training job of yours wrote to its
    `output_path`."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "kind": "job_output",
                "job_id": "job_01jdx3m8c5r7v2k9w4q6y8z0ab",
                "path": "features.parquet",
            }
        }
    )

    kind: Literal["job_output"] = Field(description="`job_output`: a file of a job's output")
    job_id: str = Field(
        min_length=5,
        max_length=40,
        pattern=JOB_ID_PATTERN,
        description="A succeeded training job of your tenant",
        examples=["job_01jdx3m8c5r7v2k9w4q6y8z0ab"],
    )
    path: str = Field(
        min_length=1,
        max_length=1024,
        pattern=OUTPUT_PATH_PATTERN,
        description="The file inside the job's output (relative to its `output_path`)",
        examples=["features.parquet"],
    )
    format: str | None = _FORMAT_FIELD


def _default_kind(value: Any) -> Any:
    """A source object without `kind` is a file source (as before job outputs existed)."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "file", **value}
    return value


FeatureSource = Annotated[
    FileSource | JobOutputSource,
    BeforeValidator(_default_kind),
    Field(discriminator="kind", title="FeatureSource"),
]
"""Where a feature view's rows come from: a data-area file or a job's output file."""


_VIEW_EXAMPLE: dict[str, Any] = {
    "name": "customer_stats",
    "entity": "customer",
    "features": {"orders_7d": "int64", "spend_7d": "float64"},
    "source": {"path": "data/customer_stats.csv"},
    "timestamp_field": "event_timestamp",
    "ttl_seconds": 86400,
}


class _ViewSpec(RequestModel):
    entity: Name = Field(description="The entity the rows are about")
    features: FeatureFields
    source: FeatureSource
    timestamp_field: Column = Field(description="Column with each row's event time")
    ttl_seconds: int = Field(
        0,
        ge=0,
        le=MAX_TTL_SECONDS,
        description="How long a value stays valid after its event time (0: forever)",
    )
    description: SafeStr = Field("", max_length=1000)


class FeatureViewCreate(_ViewSpec):
    """Typed features of an entity, read from a file (of your data area or of a succeeded
    job's output); checked against the file's columns."""

    model_config = ConfigDict(json_schema_extra={"example": _VIEW_EXAMPLE})

    name: Name


class FeatureViewUpdate(_ViewSpec):
    """A new version of the view (the previous versions stay readable)."""

    model_config = ConfigDict(
        json_schema_extra={"example": {k: v for k, v in _VIEW_EXAMPLE.items() if k != "name"}}
    )


class FeatureView(BaseModel):
    """A versioned set of typed features of one entity, read from a source file, with a TTL."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                **_VIEW_EXAMPLE,
                "source": {"path": "data/customer_stats.csv", "format": "csv"},
                "version": 1,
                "description": "",
                "created_by": "alice",
                "created_at": "2026-12-01T12:00:00Z",
                "updated_at": "2026-12-01T12:00:00Z",
            }
        }
    )

    name: str
    version: int = Field(json_schema_extra={"readOnly": True})
    entity: str
    features: FeatureFields
    source: FeatureSource
    timestamp_field: str
    ttl_seconds: int
    description: str
    created_by: str = Field(json_schema_extra={"readOnly": True})
    created_at: datetime = Field(json_schema_extra={"readOnly": True})
    updated_at: datetime = Field(json_schema_extra={"readOnly": True})


class FeatureViewListResponse(BaseModel):
    """One page of your feature views."""

    feature_views: list[FeatureView]
    total: int
    page: int
    page_size: int
    has_more: bool


class MaterializationRun(BaseModel):
    """One load of a view's source into the online store, after the previous watermark."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "mat_01jd0000000000000000000000",
                "feature_view": "customer_stats",
                "view_version": 1,
                "status": "succeeded",
                "rows_read": 10000,
                "keys_written": 1000,
                "watermark_from": None,
                "watermark_to": "2026-12-01T11:59:00Z",
                "error": None,
                "created_by": "alice",
                "started_at": "2026-12-01T12:00:00Z",
                "finished_at": "2026-12-01T12:00:01Z",
            }
        }
    )

    id: str
    feature_view: str
    view_version: int
    status: MaterializationState
    rows_read: int = Field(description="Source rows newer than `watermark_from`")
    keys_written: int = Field(description="Entity keys whose latest value was written")
    watermark_from: datetime | None = Field(description="Rows at or before it were skipped")
    watermark_to: datetime | None = Field(description="The newest event time loaded")
    error: str | None
    created_by: str
    started_at: datetime
    finished_at: datetime | None


class MaterializationList(BaseModel):
    """The materialization runs of a feature view, newest first."""

    materializations: list[MaterializationRun]
    total: int
    page: int
    page_size: int
    has_more: bool


class PushRequest(RequestModel):
    """Rows to write straight to the online store (streaming updates)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "rows": [
                    {
                        "customer_id": 1001,
                        "orders_7d": 3,
                        "spend_7d": 120.5,
                        "event_timestamp": "2026-12-01T12:00:00Z",
                    }
                ]
            }
        }
    )

    rows: list[ScalarRow] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description="Each row: the join keys, the timestamp field (RFC 3339), and any features",
    )


class PushResponse(BaseModel):
    """How many pushed rows reached the online store."""

    feature_view: str
    rows_written: int


class OnlineFeaturesRequest(RequestModel):
    """Feature refs (`<view>:<feature>`) and the entity rows to look up online."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "features": ["customer_stats:orders_7d", "customer_stats:spend_7d"],
                "entity_rows": [{"customer_id": 1001}, {"customer_id": 1002}],
            }
        }
    )

    features: list[FeatureRefStr] = Field(min_length=1, max_length=MAX_REFS)
    entity_rows: list[ScalarRow] = Field(
        min_length=1, max_length=MAX_ROWS, description="Join key values, one object per row"
    )


class FeatureValue(BaseModel):
    """One feature's value for one entity row, with its status and event time."""

    feature: str = Field(description="`<feature view>:<feature>`")
    value: Scalar
    status: ValueStatus
    event_timestamp: datetime | None = Field(description="When the value was observed")


class OnlineFeaturesRow(BaseModel):
    """One entity row's online feature values."""

    entity: dict[str, Scalar]
    values: list[FeatureValue] = Field(description="In the order of the request's features")


class OnlineFeaturesResponse(BaseModel):
    """Online feature values per entity row, in request order."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "results": [
                    {
                        "entity": {"customer_id": 1001},
                        "values": [
                            {
                                "feature": "customer_stats:orders_7d",
                                "value": 3,
                                "status": "PRESENT",
                                "event_timestamp": "2026-12-01T11:59:00Z",
                            }
                        ],
                    }
                ]
            }
        }
    )

    results: list[OnlineFeaturesRow]


class HistoricalFeaturesRequest(RequestModel):
    """Training data: each entity row joined with the feature values as of its timestamp."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "features": ["customer_stats:orders_7d"],
                "entity_rows": [
                    {"customer_id": 1001, "event_timestamp": "2026-11-30T08:00:00Z"},
                ],
            }
        }
    )

    features: list[FeatureRefStr] = Field(min_length=1, max_length=MAX_REFS)
    entity_rows: list[ScalarRow] = Field(min_length=1, max_length=100_000)
    timestamp_field: Column = Field(
        "event_timestamp", description="The entity rows' column with the as-of time (RFC 3339)"
    )
    full_feature_names: bool = Field(
        False, description="Name output columns `<view>__<feature>` instead of `<feature>`"
    )


class HistoricalFeaturesResponse(BaseModel):
    """Point-in-time training data: per entity row, each feature's latest value at or before
    the row's timestamp."""

    columns: list[str]
    rows: list[dict[str, Scalar]] = Field(description="The entity rows in request order")
