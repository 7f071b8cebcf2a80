"""The two seams the rest of the platform plugs into, plus small in-memory implementations.

* ``DeploymentSource`` tells the serving plane what to serve (the deployments service
  implements it on top of the store).
* ``DeploymentStatusSink`` receives what the serving plane observed while loading.
* ``Authenticator`` turns request credentials into a ``Principal``.

Only the supervisor process calls them, so implementations may do blocking I/O; workers
see the desired set pushed to them and cache authentication results briefly.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

from ml_platform.core.errors import Unauthenticated
from ml_platform.serving.models import (
    DeploymentSnapshot,
    DeploymentStatus,
    LoadState,
    Principal,
    ServedModel,
)


@runtime_checkable
class DeploymentSource(Protocol):
    def snapshot(self) -> DeploymentSnapshot:
        """Return the current desired set; cheap when nothing changed."""
        ...


@runtime_checkable
class DeploymentStatusSink(Protocol):
    def report(self, status: DeploymentStatus) -> None:
        """Record a deployment version's load state (loading, ready, failed, unloaded)."""
        ...


@runtime_checkable
class Authenticator(Protocol):
    def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        """Return the caller or raise ``core.errors.Unauthenticated``."""
        ...


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


class FileDeploymentSource:
    """The desired set in a JSON file (``{"models": [ServedModel.to_dict(), ...]}``).

    For ``mlp serve`` without a store, and for operators who keep deployments in files. The
    revision is the file's content hash, so rewriting the file rolls the deployments.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._cached: tuple[int, int, DeploymentSnapshot] | None = None

    def snapshot(self) -> DeploymentSnapshot:
        stat = self._path.stat()
        if self._cached is not None and self._cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return self._cached[2]
        raw = self._path.read_bytes()
        doc = json.loads(raw)
        models = tuple(ServedModel.from_dict(m) for m in doc.get("models", []))
        snap = DeploymentSnapshot(revision=hashlib.sha256(raw).hexdigest()[:16], models=models)
        self._cached = (stat.st_mtime_ns, stat.st_size, snap)
        return snap


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
    """API keys known up front (tests, single-user installs); compared in constant time."""

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
