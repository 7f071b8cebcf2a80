"""The seams the rest of the platform plugs into, and a file-backed deployment source.

* ``DeploymentSource`` tells the serving plane what to serve (the deployments service
  implements it on top of the store).
* ``DeploymentStatusSink`` receives what the serving plane observed while loading.
* ``Authenticator`` turns request credentials into a ``Principal``.

Only the supervisor process calls them, so implementations may do blocking I/O; workers
see the desired set pushed to them and cache authentication results briefly. The
implementations over the store live in ``ml_platform.server.serving_bridge``; in-memory test
doubles live in ``tests/serving/doubles.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

from ml_platform.serving.models import (
    DeploymentSnapshot,
    DeploymentStatus,
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


class FileDeploymentSource:
    """The desired set in a JSON file (``{"models": [ServedModel.to_dict(), ...]}``).

    For operators who keep deployments in a file rather than the store (``mlp serve`` reads
    the store). The revision is the file's content hash, so rewriting the file rolls the
    deployments.
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
