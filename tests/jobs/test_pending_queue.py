"""The incremental queue positions (issue 15) equal the full round-robin order, whatever
changes between two ticks; and a submit to the longest queue recomputes nothing else."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from ml_platform.core.jobs import JobStatus
from ml_platform.jobs.pending_queue import PendingQueue, Queued, Ranker, queued_reason
from ml_platform.store.records import JobRecord

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def job(n: int, tenant: str) -> JobRecord:
    at = BASE + timedelta(seconds=n)
    return JobRecord(
        id=f"job-{n:05d}", tenant_id=tenant, name="j", framework="sklearn",
        status=JobStatus.PENDING, spec={}, created_by="t", created_at=at, updated_at=at,
        started_at=None, completed_at=None, error_message=None, metrics={}, resource_usage=None,
    )  # fmt: skip


def full_order(queues: dict[str, list[Queued]], blocked: dict[str, str]) -> dict[str, tuple]:
    """The scheduler's former definition: sort every job by (rank, head created_at, tenant)."""
    order = sorted(
        (rank, queue[0].job.created_at, tenant, item.job.id)
        for tenant, queue in queues.items()
        for rank, item in enumerate(queue)
    )
    info = {}
    for position, (rank, _, tenant, job_id) in enumerate(order):
        reason = queued_reason(position, blocked.get(tenant) if rank == 0 else None)
        info[job_id] = (tenant, reason, position)
    return info


def test_incremental_positions_match_the_full_order_through_random_changes() -> None:
    rng = random.Random(15)
    queue, ranker = PendingQueue(), Ranker()
    queue.reset([])
    written: dict[str, tuple] = {}  # what the rows would say
    counter = 0
    for _ in range(300):
        action = rng.random()
        if action < 0.6 or not queue.items:
            for _ in range(rng.randint(1, 4)):
                counter += 1
                queue.add(job(counter, f"t{rng.randint(0, 3)}"), None)
        elif action < 0.85:  # a head starts
            tenant = rng.choice(list(queue.queues))
            queue.remove(queue.queues[tenant][0].job.id)
        else:  # a job anywhere is cancelled
            queue.remove(rng.choice(list(queue.items)))
        blocked = {t: "tenant quota: 1 of 1" for t in queue.queues if rng.random() < 0.3}
        snapshot = {t: list(q) for t, q in queue.queues.items()}
        changed = ranker.rank(snapshot, blocked)
        for job_id in list(written):
            if job_id not in queue.items:
                del written[job_id]
        written.update(changed)
        assert written == full_order(snapshot, blocked)


def test_a_submit_to_the_longest_queue_recomputes_only_itself_and_the_heads() -> None:
    queue, ranker = PendingQueue(), Ranker()
    queue.reset([(job(n, "a" if n % 3 else "b"), None) for n in range(3000)])
    ranker.rank({t: list(q) for t, q in queue.queues.items()}, {})
    queue.add(job(5000, "a"), None)
    changed = ranker.rank({t: list(q) for t, q in queue.queues.items()}, {})
    assert set(changed) == {"job-05000", queue.queues["a"][0].job.id, queue.queues["b"][0].job.id}
    assert changed["job-05000"] == ("a", "queued: 3000 jobs ahead", 3000)
