"""Audit events for the ``mlp admin`` commands that change the store directly (no REST request
passes the audit middleware for them).

One event per command run, success or refusal: the principal is ``cli:<OS user>`` (the CLI
has no API key; whoever can reach the database is the operator), the credential ``cli``, the
method ``CLI`` and the route the command line (``mlp admin quota set``). Actions are the ones
the equivalent REST route would record (``admin.tenants.quotas.update``). No option values
are recorded: the resource is an id, never a key or token.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ml_platform.core.errors import PlatformError
from ml_platform.core.problems import http_status
from ml_platform.store.audit import AuditEvent, AuditStore
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database

CLI_CREDENTIAL = "cli"
CLI_METHOD = "CLI"


@dataclass
class Target:
    """What the command acted on, filled in as the command learns it."""

    tenant_id: str | None = None
    resource: str | None = None
    outcome: int = 200


def operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli:unknown"


@contextmanager
def audited(db: Database, action: str, command: str) -> Iterator[Target]:
    """Record one event when the block ends: its ``outcome``, or the refusal's HTTP status."""
    target = Target()
    try:
        yield target
    except PlatformError as exc:
        _record(db, action, command, target, http_status(exc.code))
        raise
    _record(db, action, command, target, target.outcome)


def _record(db: Database, action: str, command: str, target: Target, outcome: int) -> None:
    AuditStore(db).record(
        AuditEvent(
            occurred_at=utcnow(),
            tenant_id=target.tenant_id,
            principal=operator(),
            credential=CLI_CREDENTIAL,
            action=action,
            resource=target.resource,
            method=CLI_METHOD,
            route=command,
            outcome=outcome,
            request_id=None,
            client="local",
        )
    )
