"""``client.features``: online lookups, pushes, materializations and point-in-time training
data. Request building and parsing live once here; ``Features`` and ``AsyncFeatures`` only
send. pandas is imported only by the calls that take or return a DataFrame."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import Field

from ml_platform.client._base import Req
from ml_platform.client._models import APIObject

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.client._async import AsyncClient
    from ml_platform.client._sync import Client

__all__ = [
    "AsyncFeatures",
    "FeatureValue",
    "Features",
    "MaterializationRun",
    "OnlineFeatures",
    "OnlineFeaturesRow",
    "PushResult",
]

EntityRows = Sequence[Mapping[str, Any]]


class FeatureValue(APIObject):
    feature: str = ""
    value: Any = None
    status: str = ""  # PRESENT, MISSING, OUTSIDE_TTL (new values parse too)
    event_timestamp: datetime | None = None


class OnlineFeaturesRow(APIObject):
    entity: dict[str, Any] = Field(default_factory=dict)
    values: list[FeatureValue] = Field(default_factory=list)


class OnlineFeatures(APIObject):
    """``results``: one row per entity row, its values in the order of the features asked."""

    results: list[OnlineFeaturesRow] = Field(default_factory=list)


class HistoricalFeatures(APIObject):
    columns: list[str] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)


class PushResult(APIObject):
    feature_view: str = ""
    rows_written: int = 0


class MaterializationRun(APIObject):
    id: str = ""
    feature_view: str = ""
    view_version: int = 0
    status: str = ""
    rows_read: int = 0
    keys_written: int = 0
    watermark_from: datetime | None = None
    watermark_to: datetime | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def _plain(value: Any) -> Any:
    """A value as JSON: timestamps as RFC 3339, numpy scalars as Python, NaN as null."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, datetime | date):
        value = item()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return value


def _records(rows: Any) -> list[dict[str, Any]]:
    """A DataFrame or a sequence of mappings as JSON rows."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict(orient="records")
    return [{str(k): _plain(v) for k, v in row.items()} for row in rows]


def _view_path(feature_view: str, tail: str) -> str:
    return f"/v1/features/views/{quote(feature_view, safe='')}/{tail}"


def online_request(features: Sequence[str], entity_rows: EntityRows | pd.DataFrame) -> Req:
    return Req(
        "POST",
        "/v1/features/online",
        json={"features": list(features), "entity_rows": _records(entity_rows)},
    )


def historical_request(
    entity_df: pd.DataFrame | EntityRows,
    features: Sequence[str],
    timestamp_field: str,
    full_feature_names: bool,
) -> Req:
    return Req(
        "POST",
        "/v1/features/historical",
        json={
            "features": list(features),
            "entity_rows": _records(entity_df),
            "timestamp_field": timestamp_field,
            "full_feature_names": full_feature_names,
        },
    )


def to_frame(body: HistoricalFeatures, timestamp_field: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(body.rows, columns=body.columns)
    if timestamp_field in frame.columns:
        frame[timestamp_field] = pd.to_datetime(frame[timestamp_field], utc=True, format="ISO8601")
    return frame


class Features:
    """``client.features``: the feature store, from Python."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get_online_features(
        self, features: Sequence[str], entity_rows: EntityRows | pd.DataFrame
    ) -> OnlineFeatures:
        """The latest values (with status and event time) of ``features`` for each row."""
        return self._client._fetch(OnlineFeatures, online_request(features, entity_rows))

    def get_historical_features(
        self,
        entity_df: pd.DataFrame | EntityRows,
        features: Sequence[str],
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        """``entity_df`` plus each feature as of each row's ``timestamp_field`` (no values
        from the future, none older than the view's TTL): a pandas DataFrame."""
        req = historical_request(entity_df, features, timestamp_field, full_feature_names)
        return to_frame(self._client._fetch(HistoricalFeatures, req), timestamp_field)

    def push(self, feature_view: str, rows: EntityRows | pd.DataFrame) -> PushResult:
        """Write rows straight to the online store (newer event time wins per key)."""
        req = Req("POST", _view_path(feature_view, "push"), json={"rows": _records(rows)})
        return self._client._fetch(PushResult, req)

    def materialize(self, feature_view: str) -> MaterializationRun:
        """Start loading the latest values since the last run; returns the running run."""
        return self._client._fetch(
            MaterializationRun, Req("POST", _view_path(feature_view, "materializations"))
        )


class AsyncFeatures:
    """``client.features`` of ``AsyncClient``: the same methods, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get_online_features(
        self, features: Sequence[str], entity_rows: EntityRows | pd.DataFrame
    ) -> OnlineFeatures:
        """The latest values (with status and event time) of ``features`` for each row."""
        return await self._client._fetch(OnlineFeatures, online_request(features, entity_rows))

    async def get_historical_features(
        self,
        entity_df: pd.DataFrame | EntityRows,
        features: Sequence[str],
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        """``entity_df`` plus each feature as of each row's ``timestamp_field``."""
        req = historical_request(entity_df, features, timestamp_field, full_feature_names)
        body = await self._client._fetch(HistoricalFeatures, req)
        return to_frame(body, timestamp_field)

    async def push(self, feature_view: str, rows: EntityRows | pd.DataFrame) -> PushResult:
        """Write rows straight to the online store (newer event time wins per key)."""
        req = Req("POST", _view_path(feature_view, "push"), json={"rows": _records(rows)})
        return await self._client._fetch(PushResult, req)

    async def materialize(self, feature_view: str) -> MaterializationRun:
        """Start loading the latest values since the last run; returns the running run."""
        return await self._client._fetch(
            MaterializationRun, Req("POST", _view_path(feature_view, "materializations"))
        )
