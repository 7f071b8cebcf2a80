"""Materialization survives the death of its process, on SQLite and PostgreSQL: a run whose
owner is SIGKILLed is taken over once its lease lapses and ends ``succeeded`` with the right
online values; two replicas sweeping at once claim each abandoned run exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from ml_platform.api.context import ApiContext
from ml_platform.auth.principal import CredentialKind, Principal
from ml_platform.features.service import MAX_ATTEMPTS, FeatureService
from ml_platform.schemas.features import EntityCreate, FeatureViewCreate
from ml_platform.server.context import build_context
from ml_platform.store.base import utcnow
from ml_platform.store.features import FeatureMaterializationRow, FeatureRepository
from tests.conftest import BACKENDS, make_settings
from tests.features.events import FEATURES, Events, generate

ROOT = Path(__file__).resolve().parents[2]
VIEW = "recovered"
REFS = [f"{VIEW}:{name}" for name, _ in FEATURES]


def _replica(data_dir: Path, url: str) -> ApiContext:
    context = build_context(make_settings(data_dir, url, scheduler_lease_seconds=3.0))
    context.db.upgrade()
    return context


def _features(context: ApiContext) -> FeatureService:
    assert context.features is not None
    return context.features


def _define(context: ApiContext, data_dir: Path) -> tuple[Principal, Events]:
    tenant = context.auth.create_tenant(f"rec-{os.urandom(4).hex()}")
    principal = Principal(tenant.id, "alice", CredentialKind.API_KEY)
    events = generate(n_customers=25, n_rows=300, seed=13)
    area = data_dir / "tenants" / tenant.id / "data"
    area.mkdir(parents=True)
    (area / "events.csv").write_bytes(events.csv())
    features = _features(context)
    features.create_entity(
        principal, EntityCreate(name="customer", join_keys={"customer_id": "int64"})
    )
    features.create_view(
        principal,
        FeatureViewCreate.model_validate(
            {
                "name": VIEW,
                "entity": "customer",
                "features": dict(FEATURES),
                "source": {"path": "events.csv"},
                "timestamp_field": "event_timestamp",
            }
        ),
    )
    return principal, events


def _check_online(features: FeatureService, principal: Principal, events: Events) -> None:
    latest = events.latest()
    ids = sorted(latest)
    found = features.online.lookup(principal.tenant_id, REFS, [{"customer_id": i} for i in ids])
    for customer, values in zip(ids, found, strict=True):
        assert [v.value for v in values] == [latest[customer][n] for n, _ in FEATURES]


def _run_row(context: ApiContext, tenant_id: str, run_id: str) -> FeatureMaterializationRow:
    with context.db.read() as session:
        row = session.get(FeatureMaterializationRow, run_id)
        assert row is not None and row.tenant_id == tenant_id
        session.expunge(row)
        return row


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_whose_process_was_killed_is_taken_over_and_succeeds(
    backend: str, tmp_path: Path, database_url_factory: object
) -> None:
    url: str = database_url_factory(backend)  # type: ignore[operator]
    restarted = _replica(tmp_path, url)
    principal, events = _define(restarted, tmp_path)
    owner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.features.materialization_owner",
            str(tmp_path),
            url,
            principal.tenant_id,
            VIEW,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        assert run_id.startswith("mat_"), run_id
        first = _run_row(restarted, principal.tenant_id, run_id)
        assert first.status == "running" and first.lease_owner and first.attempts == 1
        deadline = time.monotonic() + 30
        while _run_row(restarted, principal.tenant_id, run_id).lease_expires_at == (
            first.lease_expires_at
        ):  # the owner renews its lease while it lives
            assert time.monotonic() < deadline, "the owner never renewed its lease"
            time.sleep(0.1)
        # a live owner's run is not taken
        assert [r.id for r in _features(restarted).claim_abandoned()] == []
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    assert owner.returncode == -signal.SIGKILL

    async def sweep_until_done() -> str:
        features = _features(restarted)
        await features.start()  # as the restarted server's lifespan does
        try:
            deadline = time.monotonic() + 60
            while True:
                status = features.get_materialization(principal, VIEW, run_id).status.value
                if status != "running":
                    return status
                assert time.monotonic() < deadline, "the abandoned run was never taken over"
                await asyncio.sleep(0.1)
        finally:
            await features.stop()

    assert asyncio.run(sweep_until_done()) == "succeeded"
    done = _run_row(restarted, principal.tenant_id, run_id)
    assert done.attempts == 2 and done.lease_owner == _features(restarted).owner
    assert done.rows_read == len(events.rows) and done.keys_written == len(events.latest())
    _check_online(_features(restarted), principal, events)
    restarted.db.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_sweepers_claim_each_abandoned_run_once(
    backend: str, tmp_path: Path, database_url_factory: object
) -> None:
    url: str = database_url_factory(backend)  # type: ignore[operator]
    first, second = _replica(tmp_path, url), _replica(tmp_path, url)
    principal, events = _define(first, tmp_path)
    dead = _replica(tmp_path, url)  # the process that recorded the runs, then "died"
    runs = [_features(dead).start_materialization(principal, VIEW).id for _ in range(8)]
    with dead.db.transaction() as session:  # its lease lapses, as when it stops renewing
        session.execute(
            update(FeatureMaterializationRow)
            .where(FeatureMaterializationRow.id.in_(runs))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    barrier = threading.Barrier(2)
    claimed: dict[str, list[str]] = {}

    def sweep(name: str, features: FeatureService) -> None:
        barrier.wait()
        claimed[name] = [r.id for r in features.claim_abandoned()]

    threads = [
        threading.Thread(target=sweep, args=("first", _features(first))),
        threading.Thread(target=sweep, args=("second", _features(second))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claimed["first"] + claimed["second"]) == sorted(runs)  # each once, none lost
    assert not set(claimed["first"]) & set(claimed["second"])
    assert _features(first).claim_abandoned() == [] == _features(second).claim_abandoned()

    # each claimer runs its runs; the dead owner, back, cannot record an end over them
    for name, context in (("first", first), ("second", second)):
        for run_id in claimed[name]:
            ended = _features(context).run_materialization(principal.tenant_id, run_id, VIEW)
            assert ended.status.value == "succeeded"
    with dead.db.transaction() as session:
        assert not FeatureRepository(session, principal.tenant_id).finish_run(
            runs[0],
            status="failed",
            rows_read=0,
            keys_written=0,
            watermark_to=None,
            error="late",
            owner=_features(dead).owner,
        )
    for run_id in runs:
        row = _run_row(first, principal.tenant_id, run_id)
        assert (row.status, row.attempts, row.error) == ("succeeded", 2, None)
    _check_online(_features(first), principal, events)

    # a run abandoned MAX_ATTEMPTS times is failed, not started again
    again = _features(dead).start_materialization(principal, VIEW).id
    with dead.db.transaction() as session:
        session.execute(
            update(FeatureMaterializationRow)
            .where(FeatureMaterializationRow.id == again)
            .values(attempts=MAX_ATTEMPTS, lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert _features(first).claim_abandoned() == []
    failed = _features(first).get_materialization(principal, VIEW, again)
    assert failed.status.value == "failed" and failed.error is not None
    assert f"stopped {MAX_ATTEMPTS} times" in failed.error
    for context in (first, second, dead):
        context.db.dispose()
