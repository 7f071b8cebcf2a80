"""``AsyncClient``: the asyncio SDK (httpx.AsyncClient, grpc.aio channel). Mirrors ``_sync.py``.

Every method has the sync client's name and parameters; request building, pages, log-stream
resumption, waits, downloads and train's arguments come from the same ``_shared`` / ``_base``,
so each method here is only its I/O. Lists and log streams are async iterators
(``async for``), everything else a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from ml_platform.client import _grpc
from ml_platform.client._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    UPLOAD_CHUNK_BYTES,
    BaseClient,
    Req,
)
from ml_platform.client._errors import (
    ConflictError,
    JobFailedError,
    MLPlatformError,
    ResourceNotFoundError,
)
from ml_platform.client._features import AsyncFeatures
from ml_platform.client._models import (
    APIObject,
    DataFile,
    DeploymentData,
    JobData,
    LogLine,
    Me,
    MetricPoint,
    Model,
    ModelAlias,
    ModelVersion,
    Prediction,
    Quotas,
)
from ml_platform.client._packaging import pack_directory
from ml_platform.client._pagination import AsyncPager
from ml_platform.client._progress import WaitProgress
from ml_platform.client._shared import (
    DEFAULT_FRAMEWORK,
    FOLLOW_DROPS,
    ArtifactDownload,
    JobWait,
    Listing,
    LogFollow,
    ReadyWait,
    TrainCall,
    alias_body,
    artifact_request,
    data_files,
    data_listing,
    data_path_url,
    data_remote_path,
    deployment_body,
    deployments_listing,
    directory_upload,
    existing_file,
    if_match,
    job_path,
    jobs_listing,
    log_lines,
    logs_request,
    metrics_from,
    metrics_listing,
    model_body,
    models_listing,
    package_upload_request,
    register_request,
    rollout_body,
    strip_data_prefix,
    upload_version_request,
    versions_listing,
)
from ml_platform.client._views import DeploymentView, JobView, log_text

__all__ = [
    "AsyncClient",
    "AsyncData",
    "AsyncDeployment",
    "AsyncDeployments",
    "AsyncJobs",
    "AsyncModels",
    "AsyncTrainingJob",
]

M = TypeVar("M", bound=APIObject)
T = TypeVar("T")


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, UPLOAD_CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


# -- handles ---------------------------------------------------------------------------------


class AsyncTrainingJob(JobView):
    """A training job: the seed's properties plus refresh, wait, cancel, logs and metrics."""

    def __init__(self, client: AsyncClient, data: JobData) -> None:
        self._client = client
        self._data = data

    async def refresh(self) -> AsyncTrainingJob:
        self._data = (await self._client.jobs.get(self.id))._data
        return self

    async def wait(
        self,
        polling_interval: float = 2.0,
        timeout: float | None = None,  # noqa: ASYNC109 (the seed's signature, as in Client)
    ) -> AsyncTrainingJob:
        """Poll until the job ends. Raises ``TimeoutError`` or ``JobFailedError``."""
        with WaitProgress(self.id) as progress:
            waiting = JobWait(self, progress, polling_interval, timeout)
            while not waiting.finished():
                await asyncio.sleep(waiting.pause())
                await self.refresh()
        if waiting.failed():
            raise JobFailedError(self, self.error_message, await self._safe_tail())
        return self

    async def _safe_tail(self) -> str:
        try:
            return await self.get_logs(tail=50)
        except MLPlatformError as exc:
            return f"(logs unavailable: {exc})"

    async def cancel(self) -> AsyncTrainingJob:
        """Cancel a pending or running job (a finished one: ``ConflictError``)."""
        await self._client.jobs.cancel(self.id)
        return await self.refresh()

    async def get_logs(self, tail: int = 100) -> str:
        """The last ``tail`` lines as text."""
        return log_text([line async for line in self._client.jobs.logs(self.id, tail=tail)])

    async def get_metrics(self) -> dict[str, float]:
        """The latest value of each metric."""
        return await self._client.jobs.metrics(self.id)

    def logs(self, follow: bool = True, tail: int | None = None) -> AsyncIterator[LogLine]:
        """Every line (``follow``: live over SSE until the job ends, resuming after drops)."""
        return self._client.jobs.logs(self.id, follow=follow, tail=tail)

    def metrics_history(self, name: str | None = None) -> AsyncPager[MetricPoint]:
        return self._client.jobs.metrics_history(self.id, name=name)


class AsyncDeployment(DeploymentView):
    """A deployment: status, readiness, rollouts and predictions over gRPC."""

    def __init__(self, client: AsyncClient, data: DeploymentData) -> None:
        self._client = client
        self._data = data

    async def refresh(self) -> AsyncDeployment:
        self._data = (await self._client.deployments.get(self.name))._data
        return self

    async def wait_ready(
        self,
        timeout: float = 120,  # noqa: ASYNC109 (the same signature as Deployment.wait_ready)
    ) -> AsyncDeployment:
        """Poll until the target version serves. Raises ``MLPlatformError`` when it failed."""
        waiting = ReadyWait(self, timeout)
        while not waiting.ready():
            await asyncio.sleep(waiting.PAUSE)
            await self.refresh()
        return self

    async def rollout(
        self, version: int | None = None, alias: str | None = None
    ) -> AsyncDeployment:
        rolled = await self._client.deployments.rollout(self.name, version=version, alias=alias)
        self._data = rolled._data
        return self

    async def delete(self) -> None:
        await self._client.deployments.delete(self.name)

    async def predict(self, features: Mapping[str, _grpc.FeatureValue]) -> Prediction:
        return await self._client.predict(self.name, features)

    async def predict_batch(
        self, rows: Sequence[Mapping[str, _grpc.FeatureValue]]
    ) -> list[Prediction]:
        return await self._client._predict_batch(self.name, rows)


# -- resources -------------------------------------------------------------------------------


class AsyncJobs:
    """``client.jobs``: get, list (auto-paginating), cancel, logs, metrics."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._routes = client._routes

    def _job(self, data: Any, request_id: str | None = None) -> AsyncTrainingJob:
        return AsyncTrainingJob(self._client, JobData.parse(data, request_id))

    async def get(self, job_id: str) -> AsyncTrainingJob:
        data = await self._client._fetch(JobData, Req("GET", self._routes.job(job_id)))
        return AsyncTrainingJob(self._client, data)

    def list(
        self,
        status: str | None = None,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        page_size: int = 50,
    ) -> AsyncPager[AsyncTrainingJob]:
        listing = jobs_listing(self._routes, status, framework, tags, page_size, self._job)
        return self._client._pager(listing)

    async def cancel(self, job_id: str) -> None:
        await self._client._call(Req("DELETE", self._routes.job(job_id)))

    def logs(
        self, job_id: str, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[LogLine]:
        if follow:
            return self._follow(LogFollow(self._client, job_id, tail))
        return self._tail(job_id, tail)

    async def _tail(self, job_id: str, tail: int | None) -> AsyncIterator[LogLine]:
        for line in log_lines(await self._client._call(logs_request(job_id, tail))):
            yield line

    async def _follow(self, follow: LogFollow) -> AsyncIterator[LogLine]:
        while True:
            try:
                async with self._client._stream(follow.request()) as response:
                    async for event in EventSource(response).aiter_sse():
                        line = follow.accept(event)
                        if line is not None:
                            yield line
                        elif follow.ended:
                            return
            except FOLLOW_DROPS as exc:
                follow.dropped(exc)
            await asyncio.sleep(follow.reconnect_delay())

    async def metrics(self, job_id: str) -> dict[str, float]:
        response = await self._client._call(Req("GET", f"{job_path(job_id)}/metrics"))
        return metrics_from(self._client._json(response))

    def metrics_history(self, job_id: str, name: str | None = None) -> AsyncPager[MetricPoint]:
        return self._client._pager(metrics_listing(job_id, name))


class AsyncModels:
    """``client.models``: the registry (models, versions, aliases, artifacts)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._routes = client._routes

    async def create(
        self, name: str, framework: str = DEFAULT_FRAMEWORK, description: str | None = None
    ) -> Model:
        body = model_body(name, framework, description)
        return await self._client._fetch(Model, Req("POST", self._routes.models, json=body))

    async def get(self, name: str) -> Model:
        return await self._client._fetch(Model, Req("GET", self._routes.model(name)))

    def list(self) -> AsyncPager[Model]:
        return self._client._pager(models_listing(self._routes))

    async def delete(self, name: str) -> None:
        await self._client._call(Req("DELETE", self._routes.model(name)))

    async def _ensure(self, name: str, framework: str) -> None:
        try:
            await self.get(name)
        except ResourceNotFoundError:
            with contextlib.suppress(ConflictError):  # created concurrently: fine
                await self.create(name, framework=framework)

    async def register(self, name: str, job: AsyncTrainingJob | str) -> ModelVersion:
        """A new version from a succeeded job's output (the model is created if absent)."""
        job_id = job if isinstance(job, str) else job.id
        framework = DEFAULT_FRAMEWORK if isinstance(job, str) else job.framework
        await self._ensure(name, framework or DEFAULT_FRAMEWORK)
        return await self._client._fetch(ModelVersion, register_request(self._routes, name, job_id))

    async def upload(
        self,
        name: str,
        path: str | Path,
        framework: str = DEFAULT_FRAMEWORK,
        format: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """A new version from a local model file or archive (the model is created if absent).

        ``format`` (``joblib``, ``onnx``, ...) when the file's name does not tell it.
        """
        local = await asyncio.to_thread(existing_file, path, "model file")
        await self._ensure(name, framework)
        req = upload_version_request(self._routes, name, local, format, description, metadata)
        return await self._client._fetch(ModelVersion, req)

    def versions(self, name: str) -> AsyncPager[ModelVersion]:
        return self._client._pager(versions_listing(self._routes, name))

    async def get_version(self, name: str, version: int | str) -> ModelVersion:
        req = Req("GET", self._routes.model_version(name, version))
        return await self._client._fetch(ModelVersion, req)

    async def set_alias(self, name: str, alias: str, version: int) -> ModelAlias:
        """Point ``alias`` at ``version``: reads the alias's ETag, then PUTs with If-Match."""
        path = self._routes.alias(name, alias)
        try:
            headers = if_match(await self._client._call(Req("GET", path)))
        except ResourceNotFoundError:
            headers = {}  # a new alias needs no precondition
        req = Req("PUT", path, json=alias_body(version), headers=headers)
        return await self._client._fetch(ModelAlias, req)

    async def download(
        self, name: str, version: int | str = "latest", dest: str | Path = "."
    ) -> Path:
        """Stream a version's artifact to ``dest`` (a file, or a directory to put it in)."""
        async with self._client._stream(artifact_request(self._routes, name, version)) as response:
            download = ArtifactDownload(name, version, dest, response)
            handle = await asyncio.to_thread(download.partial.open, "wb")
            try:
                async for chunk in response.aiter_bytes():
                    await asyncio.to_thread(handle.write, download.chunk(chunk))
            finally:
                handle.close()
        return download.finish()


class AsyncDeployments:
    """``client.deployments``: serve model versions, roll them, delete them."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._routes = client._routes

    def _deployment(self, data: Any, request_id: str | None = None) -> AsyncDeployment:
        return AsyncDeployment(self._client, DeploymentData.parse(data, request_id))

    async def create(
        self,
        name: str,
        model: str,
        version: int | None = None,
        alias: str | None = None,
        max_batch_size: int | None = None,
        max_batch_delay_ms: float | None = None,
    ) -> AsyncDeployment:
        body = deployment_body(name, model, version, alias, max_batch_size, max_batch_delay_ms)
        req = Req("POST", self._routes.deployments, json=body)
        data = await self._client._fetch(DeploymentData, req)
        return AsyncDeployment(self._client, data)

    async def get(self, name: str) -> AsyncDeployment:
        data = await self._client._fetch(DeploymentData, Req("GET", self._routes.deployment(name)))
        return AsyncDeployment(self._client, data)

    def list(self) -> AsyncPager[AsyncDeployment]:
        return self._client._pager(deployments_listing(self._routes, self._deployment))

    async def rollout(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> AsyncDeployment:
        req = Req("PATCH", self._routes.deployment(name), json=rollout_body(version, alias))
        return AsyncDeployment(self._client, await self._client._fetch(DeploymentData, req))

    async def delete(self, name: str) -> None:
        await self._client._call(Req("DELETE", self._routes.deployment(name)))


class AsyncData:
    """``client.data``: your tenant's data area (what jobs' ``data_path`` names)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def upload(self, local_path: str | Path, remote_path: str | None = None) -> DataFile:
        """Upload a file (or every file of a directory) and return where it is."""
        local = Path(local_path)
        remote = data_remote_path(local, remote_path)
        files = await asyncio.to_thread(data_files, local)
        if files is not None:
            uploaded = [await self._put(p, f"{remote}/{rel}") for rel, p in files]
            return directory_upload(remote, uploaded)
        return await self._put(await asyncio.to_thread(existing_file, local, "data file"), remote)

    async def _put(self, local: Path, remote: str) -> DataFile:
        return await self._client._fetch(DataFile, Req("PUT", data_path_url(remote), upload=local))

    def list(self, prefix: str | None = None) -> AsyncPager[DataFile]:
        return self._client._pager(data_listing(prefix))

    async def delete(self, path: str) -> None:
        await self._client._call(Req("DELETE", data_path_url(strip_data_prefix(path) or "")))


# -- the client ------------------------------------------------------------------------------


class _AsyncChannel:
    """The client's one grpc.aio channel, created on first use and shared by its copies."""

    def __init__(self, target: str, secure: bool) -> None:
        self.target = target
        self._secure = secure
        self._channel: Any = None
        self._stub: Any = None

    def stub(self) -> Any:
        if self._stub is None:
            self._channel, self._stub = _grpc.open_channel(self.target, self._secure, True)
        return self._stub

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()


class AsyncClient(BaseClient):
    """The ML platform, from asyncio code.

    >>> async with AsyncClient() as client:
    ...     job = await client.train(entrypoint="train.py", source_dir=".", data="train.csv")
    ...     async for line in job.logs(follow=True):
    ...         print(line.line)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        grpc_target: str | None = None,
        api_version: str | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, grpc_target, api_version)
        self._http = httpx.AsyncClient(base_url=self.base_url, follow_redirects=False)
        self._channel = _AsyncChannel(self.grpc_target, self.base_url.startswith("https://"))
        self._owner = True
        self._bind()

    def _bind(self) -> None:
        self.jobs = AsyncJobs(self)
        self.models = AsyncModels(self)
        self.deployments = AsyncDeployments(self)
        self.data = AsyncData(self)
        self.features = AsyncFeatures(self)

    def with_options(
        self, timeout: float | None = None, max_retries: int | None = None
    ) -> AsyncClient:
        """A copy with other defaults, sharing this client's connections."""
        return self._copy(timeout, max_retries)

    async def close(self) -> None:
        """Close the HTTP connections and the gRPC channel (copies leave them to the original)."""
        if self._owner:
            await self._http.aclose()
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- I/O: the one retry loop -------------------------------------------------------------

    async def _send(self, req: Req) -> httpx.Response:
        attempt = 0
        while True:
            kwargs, handle = self._attempt(req, attempt, _file_chunks)
            request = self._http.build_request(**kwargs)
            try:
                response = await self._http.send(request, stream=req.stream)
                if response.is_error and req.stream:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TransportError as exc:
                await asyncio.sleep(self._retry_transport(req, exc, str(request.url), attempt))
                attempt += 1
                continue
            finally:
                if handle is not None:
                    handle.close()
            if not response.is_error:
                return response
            await asyncio.sleep(self._retry_status(req, response, attempt))
            attempt += 1

    async def _call(self, req: Req) -> httpx.Response:
        return await self._send(req)

    async def _fetch(self, model: type[M], req: Req) -> M:
        return self._parse(model, await self._send(req))

    def _pager(self, listing: Listing[T]) -> AsyncPager[T]:
        async def fetch(cursor: Any) -> tuple[list[T], Any]:
            return listing.page(await self._send(listing.request(cursor)), cursor)

        return AsyncPager(fetch, first=listing.first)

    @asynccontextmanager
    async def _stream(self, req: Req) -> AsyncIterator[httpx.Response]:
        req.stream = True
        response = await self._send(req)
        try:
            yield response
        finally:
            await response.aclose()

    async def _rpc(self, method: str, request: Any) -> Any:
        attempt = 0
        while True:
            stub = self._channel.stub()
            try:
                return await getattr(stub, method)(
                    request, metadata=self._rpc_metadata(), timeout=self.timeout
                )
            except _grpc.import_grpc().RpcError as exc:
                await asyncio.sleep(self._retry_rpc(exc, attempt))
                attempt += 1

    # -- the seed's methods and shortcuts ----------------------------------------------------

    async def train(
        self,
        name: str | None = None,
        framework: str | None = None,
        docker_image: str | None = None,
        data_path: str | None = None,
        output_path: str | None = None,
        gpu_count: int = 0,
        *,
        model_type: str | None = None,
        data: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        env_vars: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        entrypoint: str = "train.py",
        source_dir: str | Path | None = None,
        source: str | None = None,
        cpu_cores: int | None = None,
        memory_gb: int | None = None,
        max_runtime_seconds: int | None = None,
        job_max_retries: int | None = None,
        tenant_id: str | None = None,
    ) -> AsyncTrainingJob:
        """Submit a training job (the seed's simple and full forms).

        ``source_dir`` is packed (deterministic zip) and uploaded unless the platform already
        holds the same package; ``data``/``data_path`` naming a local file or directory is
        uploaded into your data area first.
        """
        call = TrainCall(
            name,
            framework,
            docker_image,
            data_path,
            output_path,
            gpu_count,
            model_type,
            data,
            hyperparameters,
            env_vars,
            tags,
            entrypoint,
            source_dir,
            source,
            cpu_cores,
            memory_gb,
            max_runtime_seconds,
            job_max_retries,
            tenant_id,
        )
        if call.source_dir is not None:
            source = await self._upload_package(Path(call.source_dir))
        remote_data = call.remote_data
        if (local := call.local_data()) is not None:
            remote_data = (await self.data.upload(local)).path
        req = call.request(self._routes, source, remote_data)
        return AsyncTrainingJob(self, await self._fetch(JobData, req))

    async def _upload_package(self, source_dir: Path) -> str:
        package = await asyncio.to_thread(pack_directory, source_dir)
        with contextlib.suppress(ResourceNotFoundError):
            await self._call(Req("GET", f"/v1/code-packages/{package.id}"))
            return package.id  # the platform already holds these bytes
        body = self._json(await self._call(package_upload_request(package))) or {}
        return str(body.get("id", package.id))

    async def get_job(self, job_id: str) -> AsyncTrainingJob:
        return await self.jobs.get(job_id)

    async def list_jobs(
        self, status: str | None = None, framework: str | None = None, limit: int = 50
    ) -> list[AsyncTrainingJob]:
        """The newest ``limit`` jobs, optionally filtered."""
        page_size = max(1, min(limit, 500))
        pager = self.jobs.list(status=status, framework=framework, page_size=page_size)
        return await pager.to_list(limit)

    async def deploy(
        self,
        name: str,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
    ) -> AsyncDeployment:
        """Deploy ``model`` (default: the model named like the deployment)."""
        return await self.deployments.create(
            name, model=model or name, version=version, alias=alias
        )

    async def predict(self, name: str, features: Mapping[str, _grpc.FeatureValue]) -> Prediction:
        """One prediction from deployment ``name`` over gRPC."""
        return _grpc.prediction_from_reply(await self._rpc(*_grpc.predict_call(name, features)))

    async def _predict_batch(
        self, name: str, rows: Sequence[Mapping[str, _grpc.FeatureValue]]
    ) -> list[Prediction]:
        return _grpc.batch_predictions(await self._rpc(*_grpc.predict_batch_call(name, rows)))

    async def me(self) -> Me:
        """Who this client is authenticated as (principal, tenant, data area)."""
        return await self._fetch(Me, Req("GET", "/v1/me"))

    async def quotas(self) -> Quotas:
        """This tenant's quotas, each limit beside the current usage (``GET /v1/quotas``)."""
        return await self._fetch(Quotas, Req("GET", "/v1/quotas"))
