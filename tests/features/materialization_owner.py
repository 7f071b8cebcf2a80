"""A process that records a materialization and keeps its lease alive without ever doing it,
until it is killed: the owner the recovery test kills with SIGKILL.

``python -m tests.features.materialization_owner <data_dir> <database_url> <tenant_id> <view>``
prints the run id, then renews the lease until it dies.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ml_platform.auth.principal import CredentialKind, Principal
from ml_platform.server.context import build_context
from tests.conftest import make_settings

LEASE_SECONDS = 3.0


async def main(data_dir: str, url: str, tenant_id: str, view: str) -> None:
    settings = make_settings(Path(data_dir), url, scheduler_lease_seconds=LEASE_SECONDS)
    features = build_context(settings).features
    assert features is not None
    await features.start()  # renews the leases of the runs it holds
    principal = Principal(tenant_id, "owner", CredentialKind.API_KEY)
    run = await asyncio.to_thread(features.start_materialization, principal, view)
    print(run.id, flush=True)
    await asyncio.sleep(3600)  # never runs it: it is killed first


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
