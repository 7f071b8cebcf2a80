"""Feature store: entities, feature views over data-area files, materialization into an online
store (the platform's database or Redis), online lookups and point-in-time training data."""

from ml_platform.features.historical import ViewJoin, point_in_time_join
from ml_platform.features.lookup import LookupValue, OnlineFeatures, ViewCatalog
from ml_platform.features.online import OnlineStore, SqlOnlineStore, build_online_store
from ml_platform.features.service import FeatureService
from ml_platform.features.sources import SourceReader
from ml_platform.features.types import FeatureRef, ValueStatus, ValueType

__all__ = [
    "FeatureRef",
    "FeatureService",
    "LookupValue",
    "OnlineFeatures",
    "OnlineStore",
    "SourceReader",
    "SqlOnlineStore",
    "ValueStatus",
    "ValueType",
    "ViewCatalog",
    "ViewJoin",
    "build_online_store",
    "point_in_time_join",
]
