"""The feature store service: definitions (REST), materialization, push, online lookups and
point-in-time training data, all scoped to the caller's tenant."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ml_platform.auth.principal import Principal
from ml_platform.config import Settings
from ml_platform.core.errors import (
    Conflict,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PlatformError,
)
from ml_platform.data.service import DataArea
from ml_platform.features.job_outputs import JobOutputs
from ml_platform.features.lookup import (
    OnlineFeatures,
    ViewCatalog,
    check_refs,
    view_not_found,
)
from ml_platform.features.online import OnlineStore, build_online_store
from ml_platform.features.sources import (
    JobOutputSpec,
    SourceReader,
    SourceSpec,
    check_columns,
    source_format,
    source_spec,
    spec_of,
)
from ml_platform.features.types import ValueType, coerce_value, entity_key, parse_refs
from ml_platform.jobs.paths import PathPolicy
from ml_platform.schemas.features import (
    Entity,
    EntityCreate,
    EntityListResponse,
    FeatureView,
    FeatureViewCreate,
    FeatureViewListResponse,
    FeatureViewUpdate,
    FileSource,
    HistoricalFeaturesRequest,
    HistoricalFeaturesResponse,
    JobOutputSource,
    MaterializationList,
    MaterializationRun,
    MaterializationState,
    PushRequest,
    PushResponse,
)
from ml_platform.schemas.features import ValueType as WireValueType
from ml_platform.storage import storage_from_settings
from ml_platform.store.db import Database
from ml_platform.store.features import (
    EntityRecord,
    FeatureRepository,
    FeatureViewRecord,
    MaterializationLeases,
    MaterializationRecord,
    OnlineRowRecord,
)

logger = logging.getLogger(__name__)

__all__ = ["FeatureService", "build_feature_service"]


if TYPE_CHECKING:  # pandas and the joins that need it are imported where they are used
    import pandas as pd

    from ml_platform.features.historical import ViewJoin


def entity_not_found(name: str) -> NotFound:
    return NotFound(f"entity {name!r} not found")


def _entity_wire(record: EntityRecord) -> Entity:
    return Entity(
        name=record.name,
        join_keys={n: WireValueType(t) for n, t in record.join_keys},
        description=record.description,
        created_by=record.created_by,
        created_at=record.created_at,
    )


def _source_wire(source: dict[str, Any]) -> FileSource | JobOutputSource:
    spec = spec_of(source)
    if isinstance(spec, JobOutputSpec):
        return JobOutputSource(
            kind="job_output", job_id=spec.job_id, path=spec.path, format=spec.format
        )
    return FileSource(kind="file", path=spec.path, format=spec.format)


def _view_wire(record: FeatureViewRecord) -> FeatureView:
    return FeatureView(
        name=record.name,
        version=record.version,
        entity=record.entity,
        features={n: WireValueType(t) for n, t in record.features},
        source=_source_wire(record.source),
        timestamp_field=record.timestamp_field,
        ttl_seconds=record.ttl_seconds,
        description=record.description,
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _run_wire(record: MaterializationRecord) -> MaterializationRun:
    return MaterializationRun(
        id=record.id,
        feature_view=record.view,
        view_version=record.view_version,
        status=MaterializationState(record.status),
        rows_read=record.rows_read,
        keys_written=record.keys_written,
        watermark_from=record.watermark_from,
        watermark_to=record.watermark_to,
        error=record.error,
        created_by=record.created_by,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )


def _parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidArgument(
            f"{field}: give the event time as an RFC 3339 string",
            [FieldViolation(field, "must be an RFC 3339 timestamp")],
        )
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except ValueError:
        ts = None
    if ts is None or ts is pd.NaT:
        raise InvalidArgument(
            f"{field}: {value[:40]!r} is not an RFC 3339 timestamp",
            [FieldViolation(field, "must be an RFC 3339 timestamp")],
        )
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    result: datetime = ts.to_pydatetime()
    return result


MAX_ATTEMPTS = 3  # a run whose process died this many times is failed, not run again


class FeatureService:
    """Materialization survives the death of the process running it. A run is recorded
    ``running`` with a lease held by this process (``owner``), which renews it every third of
    ``lease_seconds`` while the run works (``start()``'s task). If the process dies, the lease
    lapses, and a sweep on any replica (the same task, at start-up and then periodically)
    claims the run with one conditional UPDATE (of two sweepers exactly one wins) and runs it
    again, at most ``MAX_ATTEMPTS`` starts in all. Re-running is idempotent: a run loads only
    the latest value per key among the source rows after its ``watermark_from`` (fixed when it
    was recorded), the online store keeps the newer of two values of a key, and the watermark
    advances only when a run succeeds, so a run done twice writes what it would write once.
    A process whose lease was taken over cannot record its end over the new holder's: the
    end is fenced by the owner."""

    def __init__(
        self,
        db: Database,
        sources: SourceReader,
        store: OnlineStore,
        definition_cache_seconds: float = 0.0,
        *,
        lease_seconds: float = 15.0,
    ) -> None:
        self._db = db
        self._sources = sources
        self.store = store
        self.lease_seconds = lease_seconds
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._active: set[str] = set()  # runs this process works on (their leases are renewed)
        self._active_lock = threading.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[Any]] = set()
        # online reads reuse a definition this long; this process's own writes forget it
        self.catalog = ViewCatalog(db, definition_cache_seconds)
        self.online = OnlineFeatures(self.catalog, store)

    # -- entities ------------------------------------------------------------------------------
    def create_entity(self, principal: Principal, body: EntityCreate) -> Entity:
        with self._db.transaction() as session:
            record = FeatureRepository(session, principal.tenant_id).add_entity(
                name=body.name,
                join_keys=[(k, t.value) for k, t in body.join_keys.items()],
                description=body.description,
                created_by=principal.name,
            )
        return _entity_wire(record)

    def get_entity(self, principal: Principal, name: str) -> Entity:
        with self._db.read() as session:
            record = FeatureRepository(session, principal.tenant_id).get_entity(name)
        if record is None:
            raise entity_not_found(name)
        return _entity_wire(record)

    def list_entities(self, principal: Principal, page: int, page_size: int) -> EntityListResponse:
        with self._db.read() as session:
            found = FeatureRepository(session, principal.tenant_id).entities(
                (page - 1) * page_size, page_size
            )
        return EntityListResponse(
            entities=[_entity_wire(r) for r in found.items],
            total=found.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < found.total,
        )

    def delete_entity(self, principal: Principal, name: str) -> None:
        with self._db.transaction() as session:
            repo = FeatureRepository(session, principal.tenant_id)
            if repo.get_entity(name) is None:
                raise entity_not_found(name)
            users = repo.views_of_entity(name)
            if users:
                raise Conflict(
                    f"entity {name!r} is used by feature views {', '.join(users[:10])}; "
                    "delete them first"
                )
            repo.delete_entity(name)

    # -- feature views -------------------------------------------------------------------------
    def _checked_spec(
        self,
        tenant_id: str,
        entity: EntityRecord | None,
        body: FeatureViewCreate | FeatureViewUpdate,
    ) -> SourceSpec:
        if entity is None:
            raise NotFound(
                f"entity {body.entity!r} not found; create it first (POST /v1/features/entities)"
            )
        reserved = {k for k, _ in entity.join_keys} | {body.timestamp_field}
        clash = sorted(set(body.features) & reserved)
        if clash:
            why = f"{clash[0]!r} is a join key or the timestamp field, not a feature"
            raise InvalidArgument(
                f"body.features.{clash[0]}: {why}",
                [FieldViolation(f"body.features.{clash[0]}", why)],
            )
        source = body.source
        spec: SourceSpec
        if isinstance(source, JobOutputSource):
            fmt = source_format(source.path, source.format)
            spec = JobOutputSpec(source.job_id, source.path, fmt)
        else:
            spec = source_spec(source.path, source.format)
        frame = self._sources.read(tenant_id, spec)
        check_columns(
            frame,
            spec.label,
            entity.join_keys,
            [(f, t.value) for f, t in body.features.items()],
            body.timestamp_field,
        )
        return spec

    def create_view(self, principal: Principal, body: FeatureViewCreate) -> FeatureView:
        return self._add_version(principal, body.name, body, creating=True)

    def update_view(self, principal: Principal, name: str, body: FeatureViewUpdate) -> FeatureView:
        return self._add_version(principal, name, body, creating=False)

    def _add_version(
        self,
        principal: Principal,
        name: str,
        body: FeatureViewCreate | FeatureViewUpdate,
        *,
        creating: bool,
    ) -> FeatureView:
        tenant = principal.tenant_id
        with self._db.read() as session:
            repo = FeatureRepository(session, tenant)
            entity = repo.get_entity(body.entity)
            current = repo.get_view(name)
        if creating and current is not None:
            raise Conflict(f"feature view {name!r} already exists; PUT it to add a version")
        if not creating and current is None:
            raise view_not_found(name)
        spec = self._checked_spec(tenant, entity, body)  # reads the file: outside a transaction
        with self._db.transaction() as session:
            record = FeatureRepository(session, tenant).add_view_version(
                name=name,
                version=1 if current is None else current.version + 1,
                entity=body.entity,
                features=[(f, t.value) for f, t in body.features.items()],
                source=spec.to_dict(),
                timestamp_field=body.timestamp_field,
                ttl_seconds=body.ttl_seconds,
                description=body.description,
                created_by=principal.name,
            )
        self.catalog.forget(tenant, name)
        return _view_wire(record)

    def get_view(self, principal: Principal, name: str, version: int | None = None) -> FeatureView:
        with self._db.read() as session:
            record = FeatureRepository(session, principal.tenant_id).get_view(name, version)
        if record is None:
            if version is not None:
                raise NotFound(f"feature view {name!r} has no version {version}")
            raise view_not_found(name)
        return _view_wire(record)

    def list_views(
        self, principal: Principal, page: int, page_size: int
    ) -> FeatureViewListResponse:
        with self._db.read() as session:
            found = FeatureRepository(session, principal.tenant_id).views(
                (page - 1) * page_size, page_size
            )
        return FeatureViewListResponse(
            feature_views=[_view_wire(r) for r in found.items],
            total=found.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < found.total,
        )

    def delete_view(self, principal: Principal, name: str) -> None:
        with self._db.transaction() as session:
            if not FeatureRepository(session, principal.tenant_id).delete_view(name):
                raise view_not_found(name)
        self.catalog.forget(principal.tenant_id, name)
        self.store.clear(principal.tenant_id, name)

    # -- materialization -----------------------------------------------------------------------
    def start_materialization(self, principal: Principal, name: str) -> MaterializationRun:
        """Record a running materialization (``run_materialization`` does the work)."""
        with self._db.transaction() as session:
            repo = FeatureRepository(session, principal.tenant_id)
            view = repo.get_view(name)
            if view is None:
                raise view_not_found(name)
            run = repo.start_run(
                view=name,
                view_version=view.version,
                watermark_from=repo.watermark(name),
                created_by=principal.name,
                owner=self.owner,
                lease_seconds=self.lease_seconds,
            )
        with self._active_lock:
            self._active.add(run.id)
        return _run_wire(run)

    def run_materialization(self, tenant_id: str, run_id: str, name: str) -> MaterializationRun:
        """Load the source rows after the watermark; the run ends succeeded or failed."""
        try:
            return self._materialize(tenant_id, run_id, name)
        finally:
            with self._active_lock:
                self._active.discard(run_id)

    def _materialize(self, tenant_id: str, run_id: str, name: str) -> MaterializationRun:
        from ml_platform.features.materialize import latest_values

        rows_read = keys = 0
        watermark: datetime | None = None
        with self._db.read() as session:
            repo = FeatureRepository(session, tenant_id)
            run = repo.get_run(name, run_id)
            view = repo.get_view(name, run.view_version) if run else None
            entity = repo.get_entity(view.entity) if view else None
        if run is None:
            raise NotFound(f"materialization {run_id!r} not found")
        try:
            if view is None or entity is None:
                raise NotFound(f"feature view {name!r} or its entity was deleted")
            frame = self._sources.read(tenant_id, spec_of(view.source))
            latest = latest_values(
                frame,
                join_keys=entity.join_keys,
                features=view.features,
                timestamp_field=view.timestamp_field,
                after=run.watermark_from,
            )
            rows_read = latest.rows_read
            keys = self.store.write(tenant_id, name, latest.rows)
            watermark = latest.newest or run.watermark_from
            status, error = MaterializationState.SUCCEEDED, None
        except PlatformError as exc:
            status, error = MaterializationState.FAILED, exc.message
        except Exception:
            logger.exception("materialization %s of %s failed", run_id, name)
            status, error = MaterializationState.FAILED, "internal error; it has been logged"
        with self._db.transaction() as session:
            repo = FeatureRepository(session, tenant_id)
            ended = repo.finish_run(
                run_id,
                status=status.value,
                rows_read=rows_read,
                keys_written=keys,
                watermark_to=watermark,
                error=error,
                owner=self.owner,
            )
            finished = repo.get_run(name, run_id)
        if not ended:
            logger.warning("materialization %s was taken over by another process", run_id)
        if finished is None:
            raise NotFound(f"materialization {run_id!r} not found")
        return _run_wire(finished)

    # -- recovery ------------------------------------------------------------------------------
    def renew_leases(self) -> set[str]:
        """Extend this process's leases on the runs it works on; the ids it still holds."""
        with self._active_lock:
            active = sorted(self._active)
        if not active:
            return set()
        with self._db.transaction() as session:
            return MaterializationLeases(session).renew(self.owner, active, self.lease_seconds)

    def claim_abandoned(self) -> list[MaterializationRecord]:
        """Claim every running run whose owner's lease lapsed; the runs to do again. A run
        abandoned ``MAX_ATTEMPTS`` times is failed instead (its error says so)."""
        with self._db.read() as session:
            lapsed = MaterializationLeases(session).abandoned()
        claimed: list[MaterializationRecord] = []
        for run in lapsed:
            with self._db.transaction() as session:
                if not MaterializationLeases(session).claim(run.id, self.owner, self.lease_seconds):
                    continue  # another sweeper took it first, or it ended meanwhile
                if run.attempts >= MAX_ATTEMPTS:
                    FeatureRepository(session, run.tenant_id).finish_run(
                        run.id,
                        status=MaterializationState.FAILED.value,
                        rows_read=0,
                        keys_written=0,
                        watermark_to=None,
                        error=f"the process running it stopped {run.attempts} times; "
                        "start a new materialization",
                        owner=self.owner,
                    )
                    continue
            logger.warning(
                "materialization %s of %s was abandoned by %s; running it again (start %d)",
                run.id,
                run.view,
                run.lease_owner or "a process without a lease",
                run.attempts + 1,
            )
            with self._active_lock:
                self._active.add(run.id)
            claimed.append(run)
        return claimed

    def recover(self) -> list[MaterializationRun]:
        """One sweep done inline: claim lapsed runs and run each again here."""
        return [self.run_materialization(r.tenant_id, r.id, r.view) for r in self.claim_abandoned()]

    async def start(self) -> None:
        """Renew this process's leases and sweep for abandoned runs, now and every third of
        the lease, until ``stop()``."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="feature-sweeper")

    async def stop(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._running:  # runs claimed by the sweep finish (or fail) before the process ends
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _sweep_forever(self) -> None:
        period = max(self.lease_seconds / 3, 0.05)
        while True:
            try:
                await asyncio.to_thread(self.renew_leases)
                for run in await asyncio.to_thread(self.claim_abandoned):
                    task = asyncio.create_task(
                        asyncio.to_thread(self.run_materialization, run.tenant_id, run.id, run.view)
                    )
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
            except Exception:  # the store may be away for a moment: try again next period
                logger.exception("the materialization sweep failed")
            await asyncio.sleep(period)

    def get_materialization(
        self, principal: Principal, name: str, run_id: str
    ) -> MaterializationRun:
        with self._db.read() as session:
            repo = FeatureRepository(session, principal.tenant_id)
            if repo.get_view(name) is None:
                raise view_not_found(name)
            run = repo.get_run(name, run_id)
        if run is None:
            raise NotFound(f"materialization {run_id!r} of feature view {name!r} not found")
        return _run_wire(run)

    def list_materializations(
        self, principal: Principal, name: str, page: int, page_size: int
    ) -> MaterializationList:
        with self._db.read() as session:
            repo = FeatureRepository(session, principal.tenant_id)
            if repo.get_view(name) is None:
                raise view_not_found(name)
            found = repo.runs(name, (page - 1) * page_size, page_size)
        return MaterializationList(
            materializations=[_run_wire(r) for r in found.items],
            total=found.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < found.total,
        )

    # -- push ----------------------------------------------------------------------------------
    def push(self, principal: Principal, name: str, body: PushRequest) -> PushResponse:
        resolved = self.catalog.resolve(principal.tenant_id, [name])[name]
        view, entity = resolved.view, resolved.entity
        types = {f: ValueType(t) for f, t in view.features}
        allowed = set(types) | {k for k, _ in entity.join_keys} | {view.timestamp_field}
        rows: dict[str, OnlineRowRecord] = {}
        for i, row in enumerate(body.rows):
            where = f"body.rows[{i}]"
            unknown = sorted(set(row) - allowed)
            if unknown:
                why = f"{unknown[0]!r} is not a feature, join key or the timestamp of {name!r}"
                raise InvalidArgument(f"{where}: {why}", [FieldViolation(where, why)])
            key = entity_key(row, entity.join_keys, where)
            ts = _parse_time(row.get(view.timestamp_field), f"{where}.{view.timestamp_field}")
            values = {
                f: coerce_value(row.get(f), kind, f"{where}.{f}") for f, kind in types.items()
            }
            previous = rows.get(key)
            if previous is None or previous.event_ts <= ts:
                rows[key] = OnlineRowRecord(key, values, ts)
        self.store.write(principal.tenant_id, name, list(rows.values()))
        return PushResponse(feature_view=name, rows_written=len(rows))

    # -- reads ---------------------------------------------------------------------------------
    def historical_features(
        self, principal: Principal, body: HistoricalFeaturesRequest
    ) -> HistoricalFeaturesResponse:
        import pandas as pd

        from ml_platform.features.materialize import plain

        frame = pd.DataFrame.from_records(list(body.entity_rows))
        joined = self.historical_frame(
            principal.tenant_id,
            frame,
            list(body.features),
            timestamp_field=body.timestamp_field,
            full_feature_names=body.full_feature_names,
        )
        columns = [str(c) for c in joined.columns]
        data = {c: joined[c].tolist() for c in columns}
        rows = [{c: plain(data[c][i]) for c in columns} for i in range(len(joined))]
        for row, original in zip(rows, body.entity_rows, strict=True):
            row.update(original)  # the caller's values exactly as sent (no pandas coercion)
        return HistoricalFeaturesResponse(columns=columns, rows=rows)

    def historical_frame(
        self,
        tenant_id: str,
        entity_df: pd.DataFrame,
        features: Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        from ml_platform.features.historical import ViewJoin, point_in_time_join

        refs = list(dict.fromkeys(parse_refs(features)))  # one column per feature
        names = list(dict.fromkeys(ref.view for ref in refs))
        views = self.catalog.resolve(tenant_id, names)
        check_refs(refs, views)
        joins: list[ViewJoin] = []
        taken: dict[str, str] = {}
        for name in names:
            resolved = views[name]
            wanted = [ref.feature for ref in refs if ref.view == name]
            columns = [f"{name}__{f}" if full_feature_names else f for f in wanted]
            for column, ref in zip(columns, wanted, strict=True):
                if column in taken or column in entity_df.columns:
                    raise InvalidArgument(
                        f"features: two columns would be named {column!r}; set full_feature_names",
                        [FieldViolation("features", f"{name}:{ref} clashes on {column!r}")],
                    )
                taken[column] = name
            joins.append(
                ViewJoin(
                    view=name,
                    frame=self._sources.read(tenant_id, spec_of(resolved.view.source)),
                    join_keys=resolved.entity.join_keys,
                    timestamp_field=resolved.view.timestamp_field,
                    ttl_seconds=resolved.view.ttl_seconds,
                    features=wanted,
                    columns=columns,
                )
            )
        return point_in_time_join(entity_df, timestamp_field, joins)


def build_feature_service(settings: Settings, db: Database, area: DataArea) -> FeatureService:
    """The service as the composition root wires it: sources from ``area`` and from job
    outputs (the jobs' location policy and storage), the online store chosen by settings,
    materialization leases as long as the scheduler's (``ML_PLATFORM_SCHEDULER_LEASE_SECONDS``)."""
    outputs = JobOutputs(
        db, PathPolicy.from_settings(settings, db), storage_from_settings(settings)
    )
    return FeatureService(
        db,
        SourceReader(area, settings.feature_max_source_bytes, outputs),
        build_online_store(settings, db),
        settings.feature_definition_cache_seconds,
        lease_seconds=settings.scheduler_lease_seconds,
    )
