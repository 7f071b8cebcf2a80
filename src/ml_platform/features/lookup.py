"""Online lookups, transport-neutral: feature refs + entity rows -> typed values with a status
(present, missing, outside TTL) and event times. REST, gRPC and prediction-time inputs all call
``OnlineFeatures.lookup_async`` on their event loop; ``lookup`` is the same for a thread.

Definitions come from a ``ViewCatalog`` (the database, optionally cached for a few seconds in
serving workers and the control plane); values from the ``OnlineStore`` in one read for the
whole request (on the loop itself when the store reads asynchronously, as Redis does).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ml_platform.core.errors import FieldViolation, InvalidArgument, NotFound
from ml_platform.features.online import AsyncOnlineReads, OnlineRowRecord, OnlineStore
from ml_platform.features.types import FeatureRef, ValueStatus, entity_key, parse_refs
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database
from ml_platform.store.features import EntityRecord, FeatureRepository, FeatureViewRecord

__all__ = ["LookupValue", "OnlineFeatures", "ResolvedView", "ViewCatalog", "view_not_found"]


def view_not_found(name: str) -> NotFound:
    return NotFound(f"feature view {name!r} not found")


@dataclass(frozen=True)
class ResolvedView:
    view: FeatureViewRecord
    entity: EntityRecord

    @property
    def types(self) -> dict[str, str]:
        return dict(self.view.features)


@dataclass(frozen=True)
class LookupValue:
    ref: str
    value: Any
    status: ValueStatus
    event_ts: datetime | None


class ViewCatalog:
    """The current definitions of a tenant's views with their entities (one read per call,
    or none within ``cache_seconds`` of the last read of the same view)."""

    def __init__(self, db: Database, cache_seconds: float = 0.0) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, ResolvedView | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, tenant_id: str, names: Sequence[str]) -> dict[str, ResolvedView]:
        """Every named view, or ``NotFound`` for the first one missing."""
        now = time.monotonic()
        found: dict[str, ResolvedView] = {}
        wanted: list[str] = []
        if self._cache_seconds > 0:
            with self._lock:
                for name in names:
                    hit = self._cache.get((tenant_id, name))
                    if hit is not None and hit[0] > now and hit[1] is not None:
                        found[name] = hit[1]
                    else:
                        wanted.append(name)
        else:
            wanted = list(names)
        if wanted:
            fresh = self._read(tenant_id, wanted)
            if self._cache_seconds > 0:
                with self._lock:
                    if len(self._cache) > 10_000:
                        self._cache.clear()
                    for name, view in fresh.items():
                        self._cache[(tenant_id, name)] = (now + self._cache_seconds, view)
            found.update(fresh)
        for name in names:
            if name not in found:
                raise view_not_found(name)
        return found

    def cached(self, tenant_id: str, names: Sequence[str]) -> dict[str, ResolvedView] | None:
        """Every named view from the cache without a read, or None when one is not there."""
        if self._cache_seconds <= 0:
            return None
        now = time.monotonic()
        found: dict[str, ResolvedView] = {}
        with self._lock:
            for name in names:
                hit = self._cache.get((tenant_id, name))
                if hit is None or hit[0] <= now or hit[1] is None:
                    return None
                found[name] = hit[1]
        return found

    @property
    def db(self) -> Database:
        return self._db

    def forget(self, tenant_id: str, name: str) -> None:
        """Drop a cached definition (this process changed or deleted the view); other
        processes see the change within ``cache_seconds``."""
        with self._lock:
            self._cache.pop((tenant_id, name), None)

    def _read(self, tenant_id: str, names: Sequence[str]) -> dict[str, ResolvedView]:
        with self._db.read() as session:
            repo = FeatureRepository(session, tenant_id)
            views = repo.get_views(names)
            entities: dict[str, EntityRecord | None] = {}
            out: dict[str, ResolvedView] = {}
            for name, view in views.items():
                if view.entity not in entities:
                    entities[view.entity] = repo.get_entity(view.entity)
                entity = entities[view.entity]
                if entity is not None:
                    out[name] = ResolvedView(view, entity)
            return out


def check_refs(
    refs: Sequence[FeatureRef], views: Mapping[str, ResolvedView], field: str = "features"
) -> None:
    for i, ref in enumerate(refs):
        resolved = views[ref.view]
        if ref.feature not in resolved.types:
            known = ", ".join(name for name, _ in resolved.view.features[:20])
            why = f"feature view {ref.view!r} has no feature {ref.feature!r} (it has: {known})"
            raise InvalidArgument(f"{field}[{i}]: {why}", [FieldViolation(f"{field}[{i}]", why)])


class OnlineFeatures:
    """``lookup``: the values of ``refs`` for every entity row, in one online-store read."""

    def __init__(
        self,
        catalog: ViewCatalog,
        store: OnlineStore,
        clock: Callable[[], datetime] = utcnow,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self._clock = clock
        self._on_close = on_close
        self._read_async = store.read_async if isinstance(store, AsyncOnlineReads) else None

    def close(self) -> None:
        self.store.close()
        if self._on_close is not None:
            self._on_close()

    def lookup(
        self, tenant_id: str, features: Sequence[str], entity_rows: Sequence[Mapping[str, Any]]
    ) -> list[list[LookupValue]]:
        refs, names = _refs(features, entity_rows)
        plan = _Plan(refs, self.catalog.resolve(tenant_id, names), entity_rows)
        return plan.answer(self.store.read(tenant_id, plan.wanted), self._clock())

    async def lookup_async(
        self, tenant_id: str, features: Sequence[str], entity_rows: Sequence[Mapping[str, Any]]
    ) -> list[list[LookupValue]]:
        """``lookup`` for an event loop: no thread when the definitions are cached and the
        store reads asynchronously (Redis); the database reads run in a thread."""
        refs, names = _refs(features, entity_rows)
        views = self.catalog.cached(tenant_id, names)
        if views is None:
            views = await asyncio.to_thread(self.catalog.resolve, tenant_id, names)
        plan = _Plan(refs, views, entity_rows)
        if self._read_async is not None:
            stored = await self._read_async(tenant_id, plan.wanted)
        else:
            stored = await asyncio.to_thread(self.store.read, tenant_id, plan.wanted)
        return plan.answer(stored, self._clock())


def _refs(
    features: Sequence[str], entity_rows: Sequence[Mapping[str, Any]]
) -> tuple[list[FeatureRef], list[str]]:
    if not entity_rows:
        raise InvalidArgument(
            "entity_rows: give at least one row of join key values",
            [FieldViolation("entity_rows", "must not be empty")],
        )
    refs = parse_refs(features)
    return refs, list(dict.fromkeys(ref.view for ref in refs))


class _Plan:
    """One lookup's checked refs and every row's key per view, then its answer from the rows
    the store returned."""

    def __init__(
        self,
        refs: Sequence[FeatureRef],
        views: Mapping[str, ResolvedView],
        entity_rows: Sequence[Mapping[str, Any]],
    ) -> None:
        check_refs(refs, views)
        self.refs = refs
        self.views = views
        # each row's key for each view (views of one entity share it)
        self.row_keys: list[dict[str, str]] = []
        self.wanted: list[tuple[str, str]] = []
        for i, row in enumerate(entity_rows):
            keys: dict[str, str] = {}
            by_entity: dict[str, str] = {}
            for name in views:
                entity = views[name].entity
                if entity.name not in by_entity:
                    by_entity[entity.name] = entity_key(row, entity.join_keys, f"entity_rows[{i}]")
                keys[name] = by_entity[entity.name]
                self.wanted.append((name, keys[name]))
            self.row_keys.append(keys)

    def answer(
        self, stored: Mapping[tuple[str, str], OnlineRowRecord], now: datetime
    ) -> list[list[LookupValue]]:
        ttl = {
            name: timedelta(seconds=v.view.ttl_seconds) if v.view.ttl_seconds else None
            for name, v in self.views.items()
        }
        texts = [str(ref) for ref in self.refs]
        out: list[list[LookupValue]] = []
        for keys in self.row_keys:
            values: list[LookupValue] = []
            for ref, text in zip(self.refs, texts, strict=True):
                hit = stored.get((ref.view, keys[ref.view]))
                if hit is None:
                    values.append(LookupValue(text, None, ValueStatus.MISSING, None))
                    continue
                value = hit.values.get(ref.feature)
                limit = ttl[ref.view]
                if limit is not None and now - hit.event_ts > limit:
                    status, value = ValueStatus.OUTSIDE_TTL, None  # stale: never served
                elif value is None:
                    status = ValueStatus.MISSING
                else:
                    status = ValueStatus.PRESENT
                values.append(LookupValue(text, value, status, hit.event_ts))
            out.append(values)
        return out
