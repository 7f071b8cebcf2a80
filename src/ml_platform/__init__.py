"""ml-platform: train, register and serve models without learning Kubernetes.

    from ml_platform import Client
    client = Client()      # URL and key: arguments, ML_PLATFORM_URL / ML_PLATFORM_API_KEY,
                           # or the credentials file the server wrote on its first start

The SDK (``ml_platform.client``) is light: importing it pulls no server code and no grpc.
Its names are imported here on first use, so the platform's own processes (server, serving
workers, sandboxes), which import ``ml_platform.<module>`` and never the SDK, do not pay for
it (about 0.3 s per process start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ml_platform.client import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AsyncClient,
        AsyncDeployment,
        AsyncTrainingJob,
        AuthenticationError,
        Client,
        ConflictError,
        DataFile,
        Deployment,
        JobFailedError,
        LogLine,
        Me,
        MetricPoint,
        MLPlatformError,
        Model,
        ModelVersion,
        PermissionDeniedError,
        Prediction,
        RateLimitError,
        ResourceNotFoundError,
        ServerError,
        TrainingJob,
        ValidationError,
    )

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncDeployment",
    "AsyncTrainingJob",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "DataFile",
    "Deployment",
    "JobFailedError",
    "LogLine",
    "MLPlatformError",
    "Me",
    "MetricPoint",
    "Model",
    "ModelVersion",
    "PermissionDeniedError",
    "Prediction",
    "RateLimitError",
    "ResourceNotFoundError",
    "ServerError",
    "TrainingJob",
    "ValidationError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """``from ml_platform import Client`` (and every name in ``__all__``): the SDK's own."""
    if name in __all__ and name != "__version__":
        from ml_platform import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ml_platform' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
