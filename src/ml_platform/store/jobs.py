"""Training jobs: rows, tags and the tenant-scoped repository."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    Row,
    Select,
    String,
    Text,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.core.errors import Conflict, NotFound
from ml_platform.core.jobs import JobStatus, can_transition
from ml_platform.store.base import Base, JSONType, UTCDateTime, utcnow
from ml_platform.store.crypto import session_box
from ml_platform.store.records import JobRecord, Page

# any SELECT: ``_narrowed`` returns the query it was given, narrowed
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_tenant_status_created", "tenant_id", "status", "created_at", "id"),
        Index("ix_jobs_tenant_framework_created", "tenant_id", "framework", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    framework: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    env_vars: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSONType, default=dict)
    resource_usage: Mapped[dict[str, float] | None] = mapped_column(JSONType, nullable=True)


class JobTagRow(Base):
    """One row per tag so tag filters use an index instead of scanning JSON.

    ``status`` and ``framework`` are copies of the job's, written by database triggers (0017)
    when the row is inserted and whenever the job's status or framework changes; with them at
    the end of both indexes, every tag-filtered page and count is cut from the tag indexes
    without a jobs row.
    """

    __tablename__ = "job_tags"
    __table_args__ = (
        # the tag's jobs in id order: counts and intersections of several tags (0017)
        Index("ix_job_tags_lookup", "tenant_id", "key", "value", "job_id", "status", "framework"),
        # the tag's jobs in the list's order: pages walk this (0013, 0017)
        Index(
            "ix_job_tags_listed",
            "tenant_id",
            "key",
            "value",
            "created_at",
            "job_id",
            "status",
            "framework",
        ),
    )

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str] = mapped_column(String(40))
    # the job's created_at, copied (a job's creation time never changes): the list order
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # the job's, kept by triggers (0017); never written by the application
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    framework: Mapped[str | None] = mapped_column(String(32), nullable=True)


class JobCountRow(Base):
    """Jobs per (tenant, status, framework), kept exact by database triggers (see 0001).

    Lets unfiltered and status/framework-filtered lists answer ``total`` without counting
    100k rows; triggers (not application code) keep it right whatever updates the jobs.
    """

    __tablename__ = "job_counts"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    framework: Mapped[str] = mapped_column(String(32), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


# -- the list's statements -----------------------------------------------------------------
# Built once per filter *shape* (status given or not, framework given or not, how many tags,
# keyset or offset) from the tables' Core columns, with every value (the tenant's included)
# a bound parameter (``JobRepository._values``). A list request used to build its SELECTs
# anew, and SQLAlchemy then derived each new statement's cache key and the ORM its loading
# plan on every request: more time than the SQL of a page. Shapes are bounded, 2 x 2 x
# (MAX_TAGS + 1) per kind. Rows are read as columns (``job_record`` takes them): loading ORM
# instances of a page's rows cost more than reading them.

_JOBS = JobRow.__table__
_TAGS = JobTagRow.__table__
_COUNTS = JobCountRow.__table__
# what a list reads of a job: every column but ``env_vars`` (write-only, encrypted)
_LISTED = tuple(column for column in _JOBS.columns if column.key != "env_vars")


def _shape(
    status: JobStatus | None, framework: str | None, tags: Mapping[str, str]
) -> tuple[bool, bool, int]:
    return status is not None, framework is not None, len(tags)


@cache
def _tag(position: int) -> Any:
    """The ``job_tags`` alias of a filter's ``position``-th tag."""
    return _TAGS.alias(f"tag_{position}")


def _narrowed(query: _Query, first: Any, status: bool, framework: bool, tags: int) -> _Query:
    """``query`` over ``first`` (the first tag's alias) narrowed, from the tag indexes alone,
    to this tenant's rows of the first tag whose job also carries every other tag (a join on
    ``ix_job_tags_lookup`` each; a job has one value per key, so the joins never repeat a
    job) and has the status / framework: the tag rows' copies of the job's, kept by
    triggers (0017)."""
    query = query.where(
        first.c.tenant_id == bindparam("tenant"),
        first.c.key == bindparam("key_0"),
        first.c.value == bindparam("value_0"),
    )
    for position in range(1, tags):
        tag = _tag(position)
        query = query.join(
            tag,
            and_(
                tag.c.tenant_id == bindparam("tenant"),
                tag.c.key == bindparam(f"key_{position}"),
                tag.c.value == bindparam(f"value_{position}"),
                tag.c.job_id == first.c.job_id,
            ),
        )
    if status:
        query = query.where(first.c.status == bindparam("status"))
    if framework:
        query = query.where(first.c.framework == bindparam("framework"))
    return query


@cache
def _page_statement(status: bool, framework: bool, tags: int, *, after: bool) -> Select[Any]:
    """Up to ``limit`` jobs in list order (``created_at desc, id desc``) from ``offset``; with
    ``after``, of those strictly after (``after_at``, ``after_id``). With tags, the order is read
    from the first tag's ``ix_job_tags_listed`` range (its rows carry the job's
    ``created_at``, status and framework), so a page walks that index instead of sorting
    every tagged job; the jobs are joined by primary key."""
    order: tuple[Any, Any]
    if not tags:
        query = select(*_LISTED).where(_JOBS.c.tenant_id == bindparam("tenant"))
        if status:
            query = query.where(_JOBS.c.status == bindparam("status"))
        if framework:
            query = query.where(_JOBS.c.framework == bindparam("framework"))
        order = (_JOBS.c.created_at, _JOBS.c.id)
    else:
        first = _tag(0)
        joined = select(*_LISTED).join(first, first.c.job_id == _JOBS.c.id)
        query = _narrowed(joined, first, status, framework, tags)
        order = (first.c.created_at, first.c.job_id)
    created, job_id = order
    if after:
        at = bindparam("after_at", type_=_JOBS.c.created_at.type)
        query = query.where(or_(created < at, and_(created == at, job_id < bindparam("after_id"))))
    query = query.order_by(created.desc(), job_id.desc())
    return query.offset(bindparam("offset")).limit(bindparam("limit"))


@cache
def _counted_page_statement(status: bool, framework: bool) -> Select[Any]:
    """An untagged page with its total (from ``job_counts``) on every row: one round trip."""
    total = _count_statement(status, framework).scalar_subquery().label("total")
    return _page_statement(status, framework, 0, after=False).add_columns(total)


@cache
def _tagged_page_statement(status: bool, framework: bool, tags: int) -> Select[Any]:
    """A page of a tag-filtered list as a deferred join: the page's job ids are cut from the
    tag indexes alone, then only those jobs' rows are read. Joining every job the filter
    walked past, spec included, made page 50 of a 10,000-job tag ~5x page 1, and a two-tag
    page read every match.

    One tag: the walk of ``ix_job_tags_listed`` stops after the page, and ``total`` is a
    range count of its own (evaluated once). Several: the page and the total both need the
    whole intersection, so it is made once, ``total`` a window count over its index rows."""
    first = _tag(0)
    if tags > 1:
        total: Any = func.count().over()
    else:  # a range count of the tag's own, as a value of every row: no second round trip
        total = _tag_count(_TAGS.alias("counted"), status, framework, 1).scalar_subquery()
    ids = _narrowed(
        select(first.c.job_id, first.c.created_at, total.label("total")),
        first,
        status,
        framework,
        tags,
    )
    cut = (
        ids.order_by(first.c.created_at.desc(), first.c.job_id.desc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
        .subquery()
    )
    return (
        select(*_LISTED, cut.c.total)
        .join(cut, _JOBS.c.id == cut.c.job_id)
        .where(_JOBS.c.tenant_id == bindparam("tenant"))
        .order_by(cut.c.created_at.desc(), cut.c.job_id.desc())
    )


@cache
def _count_tagged_statement(status: bool, framework: bool, tags: int) -> Select[Any]:
    """Jobs carrying every tag (and the status / framework, when given), counted from the
    tag indexes alone: no jobs row is read."""
    return _tag_count(_tag(0), status, framework, tags)


def _tag_count(first: Any, status: bool, framework: bool, tags: int) -> Select[Any]:
    """The count of ``first``'s rows (a ``job_tags`` alias) ``_narrowed`` to the filter."""
    return _narrowed(select(func.count()).select_from(first), first, status, framework, tags)


@cache
def _count_statement(status: bool, framework: bool) -> Select[Any]:
    query = select(func.coalesce(func.sum(_COUNTS.c.n), 0)).where(
        _COUNTS.c.tenant_id == bindparam("tenant")
    )
    if status:
        query = query.where(_COUNTS.c.status == bindparam("status"))
    if framework:
        query = query.where(_COUNTS.c.framework == bindparam("framework"))
    return query


def transition_job(
    session: Session,
    job_id: str,
    *,
    tenant_id: str,
    target: JobStatus,
    expected: Iterable[JobStatus] | None = None,
    reason: str | None = None,
    attempt: int | None = None,
    **fields: Any,
) -> None:
    """The one way a job's status changes; writes its status event in the same transaction.

    Only ``core.jobs.ALLOWED_TRANSITIONS`` pairs pass (terminal states are final), and only
    from ``expected`` when given. The check is a compare-and-set in SQL
    (``UPDATE ... WHERE status IN (<allowed sources>)``): of two concurrent changes from the
    same status exactly one wins, the other raises ``Conflict`` (409) naming the status the
    job is in; ``NotFound`` when the job does not exist (for this tenant).
    """
    candidates = list(JobStatus) if expected is None else list(expected)
    sources = [status for status in candidates if can_transition(status, target)]
    result = session.execute(
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.tenant_id == tenant_id,
            JobRow.status.in_([s.value for s in sources]),
        )
        .values(status=target.value, updated_at=utcnow(), **fields)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        current = session.scalar(
            select(JobRow.status).where(JobRow.id == job_id, JobRow.tenant_id == tenant_id)
        )
        if current is None:
            raise NotFound(f"training job {job_id!r} not found")
        raise Conflict(f"training job {job_id!r} is {current}: it cannot become {target.value}")
    # job_runtime imports this module: import its rows here, not at the top.
    from ml_platform.store.job_runtime import JobEventRow, JobRuntimeRow

    if attempt is None:
        attempt = session.scalar(
            select(JobRuntimeRow.attempt).where(JobRuntimeRow.job_id == job_id)
        )
    session.add(
        JobEventRow(
            job_id=job_id,
            tenant_id=tenant_id,
            status=target.value,
            attempt=attempt or 0,
            reason=reason,
            created_at=utcnow(),
        )
    )


def rotate_env_vars(session: Session) -> int:
    """Re-encrypt every job's ``env_vars`` values with the session's newest key (values
    stored before encryption existed get encrypted too); the number of rows rewritten.

    The last step of a key rotation: once it ran, the old key can leave
    ``ML_PLATFORM_SECRETS_KEY``.
    """
    box = session_box(session)
    changed = 0
    rows = session.execute(select(JobRow.id, JobRow.env_vars).order_by(JobRow.id)).all()
    for job_id, stored in rows:
        if not stored:
            continue
        rotated = {name: box.rotate(value) for name, value in stored.items()}
        session.execute(update(JobRow).where(JobRow.id == job_id).values(env_vars=rotated))
        changed += 1
    return changed


def count_jobs_by_status(session: Session) -> dict[str, int]:
    """Jobs per status over every tenant: one GROUP BY on the trigger-kept ``job_counts``."""
    query = select(JobCountRow.status, func.sum(JobCountRow.n)).group_by(JobCountRow.status)
    return {status: int(n or 0) for status, n in session.execute(query)}


def job_record(row: JobRow | Row[*tuple[Any, ...]]) -> JobRecord:
    """A job read as an ORM row or as a row of ``_LISTED`` columns."""
    return JobRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        framework=row.framework,
        status=JobStatus(row.status),
        spec=row.spec,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        error_message=row.error_message,
        metrics=row.metrics or {},
        resource_usage=row.resource_usage,
    )


class JobRepository:
    """Every query here is scoped to one tenant; another tenant's job does not exist."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self._session = session
        self.tenant_id = tenant_id

    def add(
        self,
        *,
        job_id: str,
        name: str,
        framework: str,
        spec: dict[str, Any],
        env_vars: Mapping[str, str],
        tags: Mapping[str, str],
        created_by: str,
        created_at: datetime | None = None,
    ) -> JobRecord:
        now = created_at or utcnow()
        row = JobRow(
            id=job_id,
            tenant_id=self.tenant_id,
            name=name,
            framework=framework,
            status=JobStatus.PENDING.value,
            spec=spec,
            # values encrypted at rest (store.crypto); names stay readable
            env_vars=session_box(self._session).encrypt_values(env_vars) if env_vars else {},
            created_by=created_by,
            created_at=now,
            updated_at=now,
            metrics={},
        )
        self._session.add(row)
        self._session.add_all(
            JobTagRow(job_id=job_id, key=k, value=v, tenant_id=self.tenant_id, created_at=now)
            for k, v in tags.items()
        )
        self._session.flush()
        return job_record(row)

    def get(self, job_id: str) -> JobRecord | None:
        row = self._session.scalar(
            select(JobRow).where(JobRow.id == job_id, JobRow.tenant_id == self.tenant_id)
        )
        return job_record(row) if row else None

    def succeeded(self, job_id: str, *, to_become: str) -> JobRecord:
        """The job if it succeeded: ``NotFound`` when it is not this tenant's, else
        ``Conflict`` naming its state (``to_become``: what its output is wanted for)."""
        job = self.get(job_id)
        if job is None:
            raise NotFound(f"training job {job_id!r} not found")
        if job.status is not JobStatus.SUCCEEDED:
            raise Conflict(f"training job {job_id!r} is {job.status.value}; {to_become}")
        return job

    def env_vars(self, job_id: str) -> dict[str, str]:
        value = self._session.scalar(
            select(JobRow.env_vars).where(JobRow.id == job_id, JobRow.tenant_id == self.tenant_id)
        )
        return session_box(self._session).decrypt_values(value) if value else {}

    def search(
        self,
        *,
        status: JobStatus | None = None,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[JobRecord]:
        tags = tags or {}
        shape = _shape(status, framework, tags)
        values = self._values(status, framework, tags, offset=offset, limit=limit)
        if tags:
            rows = self._session.execute(_tagged_page_statement(*shape), values).all()
            items = [job_record(row) for row in rows]
            if rows:
                return Page(items=items, total=int(rows[0].total))
            # past the end: no row to carry the count
            return Page(items=items, total=self._scalar(_count_tagged_statement(*shape), values))
        # the walk stops after ``limit`` matches: only those rows are read; a window count
        # here would make LIMIT read every matching job (with its spec) first
        page = self._session.execute(_counted_page_statement(*shape[:2]), values).all()
        items = [job_record(row) for row in page]
        if page:
            return Page(items=items, total=int(page[0].total))
        # past the end: no row to carry the count
        return Page(items=items, total=self._scalar(_count_statement(*shape[:2]), values))

    def search_after(
        self,
        *,
        status: JobStatus | None = None,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[JobRecord]:
        """Keyset page: up to ``limit`` jobs strictly after ``after`` = (created_at, id) in
        ``created_at desc, id desc`` order. Jobs inserted meanwhile are newer than any cursor
        taken before them, so they never shift later pages (no duplicate, no gap)."""
        tags = tags or {}
        keyset = {"after_at": after[0], "after_id": after[1]} if after else {}
        statement = _page_statement(*_shape(status, framework, tags), after=bool(keyset))
        values = self._values(status, framework, tags, offset=0, limit=limit, **keyset)
        return [job_record(row) for row in self._session.execute(statement, values).all()]

    def count(self, status: JobStatus | None = None, framework: str | None = None) -> int:
        """Exact totals from the trigger-maintained ``job_counts`` (no scan of the jobs): the
        same whatever the queue's length, and exact in the transaction that reads it."""
        statement = _count_statement(status is not None, framework is not None)
        return self._scalar(statement, self._values(status, framework, {}))

    def _values(
        self,
        status: JobStatus | None,
        framework: str | None,
        tags: Mapping[str, str],
        **more: Any,
    ) -> dict[str, Any]:
        """The bound values of a list statement made for this filter's shape."""
        values: dict[str, Any] = {"tenant": self.tenant_id, **more}
        if status is not None:
            values["status"] = status.value
        if framework is not None:
            values["framework"] = framework
        for position, (key, value) in enumerate(tags.items()):
            values[f"key_{position}"] = key
            values[f"value_{position}"] = value
        return values

    def _scalar(self, statement: Select[Any], values: dict[str, Any]) -> int:
        return int(self._session.scalar(statement, values) or 0)

    def transition(
        self,
        job_id: str,
        *,
        expected: Iterable[JobStatus],
        target: JobStatus,
        reason: str | None = None,
        **fields: Any,
    ) -> bool:
        """``transition_job`` for this tenant: True, or ``Conflict`` / ``NotFound``."""
        transition_job(
            self._session,
            job_id,
            tenant_id=self.tenant_id,
            target=target,
            expected=expected,
            reason=reason,
            **fields,
        )
        return True

    def delete_all(self) -> None:
        """Remove every job of this tenant (used when a tenant is deleted)."""
        self._session.execute(delete(JobRow).where(JobRow.tenant_id == self.tenant_id))
