"""The serving data plane: seams, records and entry points others call.

Transport adapters (gRPC, REST) and the worker machinery live in their own modules; this
package re-exports what the composition root and the deployments service need.
"""

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
    InMemoryDeploymentSource,
    InMemoryStatusSink,
    StaticKeyAuthenticator,
)
from ml_platform.serving.server import ServingServer, run_serving, serve_until

__all__ = [
    "ArtifactFormat",
    "Authenticator",
    "DeploymentSnapshot",
    "DeploymentSource",
    "DeploymentStatus",
    "DeploymentStatusSink",
    "FeatureSpec",
    "FileDeploymentSource",
    "InMemoryDeploymentSource",
    "InMemoryStatusSink",
    "LoadState",
    "ModelSignature",
    "Principal",
    "ServedModel",
    "ServingServer",
    "StaticKeyAuthenticator",
    "run_serving",
    "serve_until",
]
