"""Features at prediction time: a deployment created with ``feature_refs`` and an
``entity_key`` takes its model's inputs from the online store when a request carries only the
entity key (plus, optionally, inputs no view provides).

Transport-neutral: adapters hand over the entity key value and get back the values named by
model input, with the ref and event time each came from (the response reports them, for skew
debugging). A value that is missing or past its view's TTL is refused with FAILED_PRECONDITION
naming the key and the feature; the model never sees a made-up value.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ml_platform.core.errors import PreconditionFailed
from ml_platform.features.lookup import OnlineFeatures
from ml_platform.features.types import ValueStatus
from ml_platform.store.deployments import DeploymentRepository

__all__ = ["DeploymentFeatures", "FeatureInputs", "UsedFeature"]


@dataclass(frozen=True, slots=True)
class DeploymentFeatures:
    refs: tuple[str, ...]
    entity_key: str


@dataclass(frozen=True, slots=True)
class UsedFeature:
    """One looked-up input: the model input ``name`` (the ref's feature), its ``ref``
    (``view:feature``), the value and the event time it was written with."""

    name: str
    ref: str
    value: Any
    event_ts: datetime | None


class FeatureInputs:
    """Which deployments look features up (one narrow read per deployment, cached like the
    view definitions), and the lookup itself (one online-store read, off the event loop)."""

    def __init__(self, online: OnlineFeatures, cache_seconds: float | None = None) -> None:
        self._online = online
        self._cache_seconds = (
            online.catalog.cache_seconds if cache_seconds is None else cache_seconds
        )
        self._cache: dict[tuple[str, str], tuple[float, DeploymentFeatures | None]] = {}
        self._lock = threading.Lock()

    def of(self, tenant_id: str, deployment: str) -> DeploymentFeatures | None:
        """The deployment's feature inputs, or None when it has none (or does not exist:
        the data plane then answers NOT_FOUND as for any deployment)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get((tenant_id, deployment))
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._online.catalog.db.read() as session:
            found = DeploymentRepository(session, tenant_id).features_of(deployment)
        config = DeploymentFeatures(tuple(found[0]), found[1]) if found else None
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[(tenant_id, deployment)] = (now + self._cache_seconds, config)
        return config

    async def config(self, tenant_id: str, deployment: str) -> DeploymentFeatures | None:
        now = time.monotonic()
        hit = self._cache.get((tenant_id, deployment))
        if hit is not None and hit[0] > now:  # the hot path: no thread hop
            return hit[1]
        return await asyncio.to_thread(self.of, tenant_id, deployment)

    async def lookup(
        self, tenant_id: str, config: DeploymentFeatures, key_value: Any
    ) -> list[UsedFeature]:
        rows = await asyncio.to_thread(
            self._online.lookup, tenant_id, config.refs, [{config.entity_key: key_value}]
        )
        used: list[UsedFeature] = []
        for found in rows[0]:
            if found.status is not ValueStatus.PRESENT:
                why = (
                    "is past its view's TTL"
                    if found.status is ValueStatus.OUTSIDE_TTL
                    else "has no value in the online store"
                )
                raise PreconditionFailed(
                    f"feature {found.ref} for {config.entity_key}={key_value!r} {why}; "
                    "materialize or push it, or send the model's inputs explicitly"
                )
            used.append(
                UsedFeature(found.ref.partition(":")[2], found.ref, found.value, found.event_ts)
            )
        return used
