"""ml-platform: train, register and serve models without learning Kubernetes.

    from ml_platform import Client
    client = Client()      # URL and key: arguments, ML_PLATFORM_URL / ML_PLATFORM_API_KEY,
                           # or the credentials file the server wrote on its first start

The SDK (``ml_platform.client``) is light: importing it pulls no server code and no grpc.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
