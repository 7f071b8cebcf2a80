"""Building the feature store's parts from ``Settings`` (the composition root and the serving
workers, which read definitions and online values themselves)."""

from __future__ import annotations

from ml_platform.config import Settings
from ml_platform.features.lookup import OnlineFeatures, ViewCatalog
from ml_platform.features.online import build_online_store
from ml_platform.store.db import Database

__all__ = ["build_online_features"]


def build_online_features(settings: Settings, db: Database | None = None) -> OnlineFeatures:
    """Lookups for a serving worker: definitions cached ``feature_definition_cache_seconds``,
    values from the configured online store. ``close()`` releases what this built."""
    owned = db is None
    database = db if db is not None else Database(settings.resolved_database_url)
    store = build_online_store(settings, database)
    catalog = ViewCatalog(database, settings.feature_definition_cache_seconds)
    return OnlineFeatures(catalog, store, on_close=database.dispose if owned else None)
