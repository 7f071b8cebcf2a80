"""The serving plane: seams, records and entry points others call.

Layout (import-linter contracts in pyproject.toml keep it this way):

* ``plane/``     the transport-neutral data plane (DataPlane, model repository, batching, V2
                 semantics); imports no grpc/protobuf/FastAPI/Starlette and no adapter.
* ``adapters/``  gRPC (seed ModelServing, KServe V2) and V2 REST, converting to the plane.
* ``workers/``   the supervisor, worker processes and nodes, and the entry points.
* ``sandbox/``   the per-tenant sandbox process for untrusted models, and its client.
* ``runtimes/``  model runtimes (scikit-learn, XGBoost, ONNX); ``proto/`` generated code.
* ``models``, ``seams``, ``control``: records, the seams the platform plugs into, and the
  supervisor <-> child message channel, shared by all of the above.

This package re-exports what the composition root and the deployments service need.

The re-exports are lazy (PEP 562): ``from ml_platform.serving import ServingServer`` works as
before, but importing a submodule alone (``ml_platform.serving.proto``, which the SDK's gRPC
client needs) loads none of the server's modules or dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_platform.serving.models import (
        ArtifactFormat,
        DeploymentSnapshot,
        DeploymentStatus,
        FeatureSpec,
        LoadState,
        ModelSignature,
        Principal,
        ServedModel,
    )
    from ml_platform.serving.seams import (
        Authenticator,
        DeploymentSource,
        DeploymentStatusSink,
        FileDeploymentSource,
    )
    from ml_platform.serving.workers.server import ServingServer, run_serving, serve_until
    from ml_platform.serving.workers.supervisor import PortUnavailable

_EXPORTS: dict[str, str] = {
    "ArtifactFormat": "ml_platform.serving.models",
    "DeploymentSnapshot": "ml_platform.serving.models",
    "DeploymentStatus": "ml_platform.serving.models",
    "FeatureSpec": "ml_platform.serving.models",
    "LoadState": "ml_platform.serving.models",
    "ModelSignature": "ml_platform.serving.models",
    "Principal": "ml_platform.serving.models",
    "ServedModel": "ml_platform.serving.models",
    "Authenticator": "ml_platform.serving.seams",
    "DeploymentSource": "ml_platform.serving.seams",
    "DeploymentStatusSink": "ml_platform.serving.seams",
    "FileDeploymentSource": "ml_platform.serving.seams",
    "PortUnavailable": "ml_platform.serving.workers.supervisor",
    "ServingServer": "ml_platform.serving.workers.server",
    "run_serving": "ml_platform.serving.workers.server",
    "serve_until": "ml_platform.serving.workers.server",
}

__all__ = [
    "ArtifactFormat",
    "Authenticator",
    "DeploymentSnapshot",
    "DeploymentSource",
    "DeploymentStatus",
    "DeploymentStatusSink",
    "FeatureSpec",
    "FileDeploymentSource",
    "LoadState",
    "ModelSignature",
    "PortUnavailable",
    "Principal",
    "ServedModel",
    "ServingServer",
    "run_serving",
    "serve_until",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
