"""Test doubles for the serving seams: a desired set in memory, a waitable status sink and
API keys known up front. Real enough to drive the real multi-process serving plane; not
shipped in the package (the platform's own implementations are in
``ml_platform.server.serving_bridge``)."""

from __future__ import annotations

import hmac
import itertools
import threading
import time

from ml_platform.core.errors import Unauthenticated
from ml_platform.serving import (
    DeploymentSnapshot,
    DeploymentStatus,
    LoadState,
    Principal,
    ServedModel,
)


class InMemoryDeploymentSource:
    """A desired set held in memory; every ``set_models`` bumps the revision."""

    def __init__(self, models: tuple[ServedModel, ...] | list[ServedModel] = ()) -> None:
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._snapshot = DeploymentSnapshot(revision=str(next(self._counter)), models=tuple(models))

    def set_models(self, models: tuple[ServedModel, ...] | list[ServedModel]) -> None:
        with self._lock:
            self._snapshot = DeploymentSnapshot(
                revision=str(next(self._counter)), models=tuple(models)
            )

    def snapshot(self) -> DeploymentSnapshot:
        with self._lock:
            return self._snapshot


class InMemoryStatusSink:
    """Keeps the latest status per deployment and the full history; waitable in tests."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: dict[tuple[str, str], DeploymentStatus] = {}
        self.history: list[DeploymentStatus] = []

    def report(self, status: DeploymentStatus) -> None:
        with self._cond:
            self._latest[(status.tenant_id, status.deployment)] = status
            self.history.append(status)
            self._cond.notify_all()

    def latest(self, tenant_id: str, deployment: str) -> DeploymentStatus | None:
        with self._cond:
            return self._latest.get((tenant_id, deployment))

    def wait_for(
        self,
        tenant_id: str,
        deployment: str,
        states: tuple[LoadState, ...] = (LoadState.READY, LoadState.FAILED),
        version: int | None = None,
        timeout: float = 60.0,
    ) -> DeploymentStatus:
        """Block until the deployment reaches one of ``states`` (for ``version`` if given)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                status = self._latest.get((tenant_id, deployment))
                if (
                    status is not None
                    and status.state in states
                    and (version is None or status.version == version)
                ):
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{tenant_id}/{deployment} did not reach {states}: {status}")
                self._cond.wait(remaining)


class StaticKeyAuthenticator:
    """API keys known up front, compared in constant time."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self._keys = dict(keys)

    def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        presented = api_key or bearer
        if not presented:
            raise Unauthenticated("missing credentials: send x-api-key or authorization: Bearer")
        for key, principal in self._keys.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                return principal
        raise Unauthenticated("invalid API key or token")
