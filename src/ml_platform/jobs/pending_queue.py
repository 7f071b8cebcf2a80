"""The scheduler's picture of the pending queue, kept up to date incrementally (issue 15).

A submit wakes the scheduler; re-reading every pending job on each wake made submits slower
as the queue grew. Here the leader holds the pending jobs in memory, per tenant in FIFO order
(``created_at``, id), and a tick reads only what changed:

- one statement (one snapshot) gives the trigger-kept pending count and the pending jobs at
  or after the newest one seen: new jobs, from this replica or another;
- when the count still differs from what the queue holds (a pending job cancelled, a retry
  re-queued, a clock that went back), or a retry was re-queued here (``recheck``), or every
  ``RECHECK_SECONDS`` as a safety net, the queue is compared with the pending *ids* (one
  column) and only the jobs it lacks are read (``sync``);
- every job's row is read only when this process takes the scheduler lease (``stale``).

Queue positions are written only for jobs whose position or reason changed (``Ranker``): a
job appended to the longest queue moves no one, so a submit writes one row.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

from ml_platform.store.job_runtime import RuntimeRecord
from ml_platform.store.records import JobRecord

RECHECK_SECONDS = 30.0

PendingInfo = tuple[str, str | None, int | None]  # (tenant, reason, queue position)


@dataclass(eq=False)  # compared by identity: one object per job while it is known
class Queued:
    job: JobRecord
    runtime: RuntimeRecord | None

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.job.created_at, self.job.id)


@dataclass
class PendingQueue:
    items: dict[str, Queued] = field(default_factory=dict)
    queues: dict[str, list[Queued]] = field(default_factory=dict)  # due jobs, FIFO per tenant
    delayed: dict[str, Queued] = field(default_factory=dict)  # retries waiting their backoff
    newest: datetime | None = None  # the newest created_at ever seen (the delta cursor)
    stale: bool = True  # the next read must be a full one
    recheck: bool = False  # the next read compares the pending ids (``sync``)

    def reset(self, rows: list[tuple[JobRecord, RuntimeRecord | None]]) -> None:
        self.items, self.queues, self.delayed, self.newest = {}, {}, {}, None
        for job, runtime in rows:
            self.add(job, runtime)
        self.stale = False

    def add(self, job: JobRecord, runtime: RuntimeRecord | None) -> None:
        if job.id in self.items:
            return
        item = Queued(job, runtime)
        self.items[job.id] = item
        if self.newest is None or job.created_at > self.newest:
            self.newest = job.created_at
        if runtime is not None and runtime.not_before is not None:
            self.delayed[job.id] = item
        else:
            self._enqueue(item)

    def _enqueue(self, item: Queued) -> None:
        queue = self.queues.setdefault(item.job.tenant_id, [])
        bisect.insort(queue, item, key=lambda q: q.key)

    def remove(self, job_id: str) -> None:
        item = self.items.pop(job_id, None)
        if item is None:
            return
        if self.delayed.pop(job_id, None) is not None:
            return
        queue = self.queues.get(item.job.tenant_id, [])
        index = bisect.bisect_left(queue, item.key, key=lambda q: q.key)
        if index < len(queue) and queue[index] is item:
            queue.pop(index)
        if not queue:
            self.queues.pop(item.job.tenant_id, None)

    def release_due(self, now: datetime) -> None:
        """Retries whose backoff is over join their tenant's queue."""
        for job_id, item in list(self.delayed.items()):
            assert item.runtime is not None and item.runtime.not_before is not None
            if item.runtime.not_before <= now:
                del self.delayed[job_id]
                self._enqueue(item)

    def holds(self, pending: int) -> bool:
        """Whether the queue holds as many jobs as the store counts pending."""
        return pending == len(self.items)

    def sync(self, pending_ids: set[str]) -> tuple[list[str], set[str]]:
        """Drop the jobs no longer pending; (the dropped ids, the pending ids not held)."""
        gone = [job_id for job_id in self.items if job_id not in pending_ids]
        for job_id in gone:
            self.remove(job_id)
        return gone, pending_ids - self.items.keys()


def queued_reason(position: int, blocked: str | None = None) -> str:
    """A queued job's reason: why its tenant's head waits, or how many jobs are ahead."""
    if blocked is not None:
        return blocked
    if position == 0:
        return "queued: next to start"
    return f"queued: {position} job{'s' if position != 1 else ''} ahead"


class Ranker:
    """Queue positions in round-robin order across tenants (rank within the tenant first,
    then the tenant's head ``created_at``), recomputed only where they can have changed.

    The job at rank ``r`` of tenant ``t`` is at position
    ``r + sum(min(len(u), r) for every other tenant u) + #(tenants before t longer than r)``:
    it depends on the other queues' lengths only below ``r`` and on their order. So a tenant's
    positions are recomputed from the first rank where its own queue differs from last time
    or where another tenant's length changed; a change of tenant order recomputes everything.
    """

    def __init__(self) -> None:
        self._queues: dict[str, list[Queued]] = {}
        self._order: list[str] = []

    def reset(self) -> None:
        self._queues, self._order = {}, []

    def rank(
        self, queues: dict[str, list[Queued]], blocked: dict[str, str]
    ) -> dict[str, PendingInfo]:
        """Info for every job whose position or reason may have changed (heads always)."""
        order = sorted(queues, key=lambda t: (queues[t][0].job.created_at, t))
        lengths = {t: len(q) for t, q in queues.items()}
        previous = {t: len(q) for t, q in self._queues.items()}
        if order != self._order:
            moved_from = 0
        else:
            changed = [min(previous[t], lengths[t]) for t in order if previous[t] != lengths[t]]
            moved_from = min(changed, default=max(lengths.values(), default=0))
        info: dict[str, PendingInfo] = {}
        for index, tenant in enumerate(order):
            queue = queues[tenant]
            start = min(_common_prefix(self._queues.get(tenant, []), queue), moved_from)
            others = [lengths[u] for u in order if u != tenant]
            before = [lengths[u] for u in order[:index]]
            for rank in [0, *range(max(start, 1), len(queue))]:
                position = (
                    rank + sum(min(n, rank) for n in others) + sum(1 for n in before if n > rank)
                )
                reason = queued_reason(position, blocked.get(tenant) if rank == 0 else None)
                info[queue[rank].job.id] = (tenant, reason, position)
        self._queues, self._order = queues, order
        return info


def _common_prefix(old: list[Queued], new: list[Queued]) -> int:
    if len(new) >= len(old) and new[: len(old)] == old:  # identity compare, in C
        return len(old)
    for index, (a, b) in enumerate(zip(old, new, strict=False)):
        if a is not b:
            return index
    return min(len(old), len(new))
