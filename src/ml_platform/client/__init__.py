"""The Python SDK: ``Client`` (sync) and ``AsyncClient`` (asyncio) over one shared base.

Both resolve the platform's URL and key from their arguments, then ``ML_PLATFORM_URL`` /
``ML_PLATFORM_API_KEY``, then the credentials file the server wrote; retry what is safe
(idempotency keys on every POST); raise one exception tree for HTTP and gRPC; and parse
into tolerant models. Importing this package pulls no server code and no grpc.

``api_version="v2"`` (or ``ML_PLATFORM_API_VERSION=v2``) sends jobs, models and deployments
to their v2 routes (``links`` on every object, lists paged by cursor behind the same
iterators); v1 stays the default until every route has a v2.
"""

from __future__ import annotations

from ml_platform.client._async import (
    AsyncClient,
    AsyncData,
    AsyncDeployment,
    AsyncDeployments,
    AsyncJobs,
    AsyncModels,
    AsyncTrainingJob,
)
from ml_platform.client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    FieldError,
    JobFailedError,
    MLPlatformError,
    PermissionDeniedError,
    RateLimitError,
    ResourceNotFoundError,
    ServerError,
    ValidationError,
)
from ml_platform.client._models import (
    DataFile,
    LogLine,
    Me,
    MetricPoint,
    Model,
    ModelAlias,
    ModelVersion,
    Prediction,
    Quota,
    Quotas,
)
from ml_platform.client._pagination import AsyncPager, SyncPager
from ml_platform.client._sync import (
    Client,
    Data,
    Deployment,
    Deployments,
    Jobs,
    Models,
    TrainingJob,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncData",
    "AsyncDeployment",
    "AsyncDeployments",
    "AsyncJobs",
    "AsyncModels",
    "AsyncPager",
    "AsyncTrainingJob",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Data",
    "DataFile",
    "Deployment",
    "Deployments",
    "FieldError",
    "JobFailedError",
    "Jobs",
    "LogLine",
    "MLPlatformError",
    "Me",
    "MetricPoint",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "Models",
    "PermissionDeniedError",
    "Prediction",
    "Quota",
    "Quotas",
    "RateLimitError",
    "ResourceNotFoundError",
    "ServerError",
    "SyncPager",
    "TrainingJob",
    "ValidationError",
]
