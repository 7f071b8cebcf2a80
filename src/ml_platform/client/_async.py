"""``AsyncClient``: the asyncio SDK (httpx.AsyncClient, grpc.aio channel). Mirrors ``_sync.py``.

Every method has the sync client's name and parameters; request building, retry decisions,
error mapping and parsing come from the same ``BaseClient``. Lists and log streams are async
iterators (``async for``), everything else a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from ml_platform.client import _grpc
from ml_platform.client._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    UPLOAD_CHUNK_BYTES,
    BaseClient,
    Req,
)
from ml_platform.client._errors import (
    APIConnectionError,
    ConflictError,
    JobFailedError,
    MLPlatformError,
    ResourceNotFoundError,
)
from ml_platform.client._models import (
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
)
from ml_platform.client._packaging import pack_directory
from ml_platform.client._pagination import AsyncPager, Page, next_page
from ml_platform.client._progress import WaitProgress
from ml_platform.client._shared import (
    DEFAULT_FRAMEWORK,
    DEFAULT_IMAGE,
    LOG_TAIL_MAX,
    SSE_READ_TIMEOUT,
    alias_body,
    artifact_filename,
    build_training_spec,
    data_files,
    data_path_url,
    data_remote_path,
    default_job_name,
    deployment_body,
    end_of_stream_error,
    existing_file,
    local_data,
    path_segment,
    resolve_dest,
    rollout_body,
    strip_data_prefix,
)
from ml_platform.client._views import POLL_FLOOR_SECONDS, DeploymentView, JobView, log_text

logger = logging.getLogger(__name__)

__all__ = [
    "AsyncClient",
    "AsyncData",
    "AsyncDeployment",
    "AsyncDeployments",
    "AsyncJobs",
    "AsyncModels",
    "AsyncTrainingJob",
]


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
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = max(polling_interval, POLL_FLOOR_SECONDS)
        with WaitProgress(self.id) as progress:
            while True:
                progress.update(self.status, self._data.metrics)
                if self.is_finished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} did not finish within {timeout} seconds")
                pause = interval if deadline is None else min(interval, deadline - time.monotonic())
                await asyncio.sleep(max(pause, 0.0))
                await self.refresh()
        if self.status != "succeeded":
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
        deadline = time.monotonic() + timeout
        while True:
            if self.is_ready:
                return self
            if self.status == "failed":
                raise MLPlatformError(
                    f"deployment {self.name} failed: {self.status_message or 'no reason given'}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"deployment {self.name} not ready within {timeout} s (status {self.status})"
                )
            await asyncio.sleep(0.2)
            await self.refresh()

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

    async def get(self, job_id: str) -> AsyncTrainingJob:
        response = await self._client._call(Req("GET", f"/v1/jobs/training/{path_segment(job_id)}"))
        return AsyncTrainingJob(self._client, self._client._parse(JobData, response))

    def list(
        self,
        status: str | None = None,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        page_size: int = 50,
    ) -> AsyncPager[AsyncTrainingJob]:
        params = {"status": status, "framework": framework, "tags": tags, "page_size": page_size}

        async def fetch(page: int) -> Page[AsyncTrainingJob]:
            response = await self._client._call(
                Req("GET", "/v1/jobs/training", params={**params, "page": page})
            )
            body = self._client._json(response)
            items = self._client._parse_items(
                JobData, body, "jobs", response.headers.get("x-request-id")
            )
            return [AsyncTrainingJob(self._client, d) for d in items], next_page(body, page)

        return AsyncPager(fetch)

    async def cancel(self, job_id: str) -> None:
        await self._client._call(Req("DELETE", f"/v1/jobs/training/{path_segment(job_id)}"))

    def logs(
        self, job_id: str, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[LogLine]:
        if follow:
            return self._follow(job_id, tail)
        return self._tail(job_id, tail)

    async def _tail(self, job_id: str, tail: int | None) -> AsyncIterator[LogLine]:
        response = await self._client._call(
            Req(
                "GET",
                f"/v1/jobs/training/{path_segment(job_id)}/logs",
                params={"tail": LOG_TAIL_MAX if tail is None else tail},
            )
        )
        body = self._client._json(response)
        rid = response.headers.get("x-request-id")
        for line in self._client._parse_items(LogLine, body, "logs", rid):
            yield line

    async def _follow(self, job_id: str, tail: int | None) -> AsyncIterator[LogLine]:
        path = f"/v1/jobs/training/{path_segment(job_id)}/logs"
        last_id: int | None = None if tail is not None else 0
        drops = 0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
            params: dict[str, Any] = {"follow": True}
            if last_id is None:
                params["tail"] = tail
            else:
                headers["Last-Event-ID"] = str(last_id)
            req = Req("GET", path, params=params, headers=headers, stream=True)
            req.timeout = httpx.Timeout(self._client.timeout, read=SSE_READ_TIMEOUT)
            try:
                async with self._client._stream(req) as response:
                    async for event in EventSource(response).aiter_sse():
                        if event.event == "log":
                            line: LogLine = LogLine.parse(event.json())
                            if last_id is not None and line.id <= last_id:
                                continue
                            last_id, drops = line.id, 0
                            yield line
                        elif event.event == "end":
                            return
                        elif event.event == "error":
                            raise end_of_stream_error(event.data)
            except (httpx.TransportError, SSEError, APIConnectionError) as exc:
                logger.info("log stream of %s dropped (%s); resuming", job_id, exc)
            delay = self._client._transport_delay(drops)
            if delay is None:
                raise APIConnectionError(
                    f"log stream of job {job_id} kept dropping after {drops} reconnects"
                )
            drops += 1
            await asyncio.sleep(delay)

    async def metrics(self, job_id: str) -> dict[str, float]:
        response = await self._client._call(
            Req("GET", f"/v1/jobs/training/{path_segment(job_id)}/metrics")
        )
        body = self._client._json(response) or {}
        return {str(k): float(v) for k, v in body.items()}

    def metrics_history(self, job_id: str, name: str | None = None) -> AsyncPager[MetricPoint]:
        path = f"/v1/jobs/training/{path_segment(job_id)}/metrics/history"

        async def fetch(after_id: int) -> Page[MetricPoint]:
            response = await self._client._call(
                Req("GET", path, params={"name": name, "after_id": after_id})
            )
            body = self._client._json(response)
            items = self._client._parse_items(
                MetricPoint, body, "metrics", response.headers.get("x-request-id")
            )
            return items, body.get("next_after_id") if body.get("has_more") else None

        return AsyncPager(fetch, first=0)


class AsyncModels:
    """``client.models``: the registry (models, versions, aliases, artifacts)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self, name: str, framework: str = DEFAULT_FRAMEWORK, description: str | None = None
    ) -> Model:
        body: dict[str, Any] = {"name": name, "framework": framework}
        if description is not None:
            body["description"] = description
        response = await self._client._call(Req("POST", "/v1/models", json=body))
        return self._client._parse(Model, response)

    async def get(self, name: str) -> Model:
        response = await self._client._call(Req("GET", f"/v1/models/{path_segment(name)}"))
        return self._client._parse(Model, response)

    def list(self) -> AsyncPager[Model]:
        async def fetch(page: int) -> Page[Model]:
            response = await self._client._call(
                Req("GET", "/v1/models", params={"page": page, "page_size": 100})
            )
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            return self._client._parse_items(Model, body, "models", rid), next_page(body, page)

        return AsyncPager(fetch)

    async def delete(self, name: str) -> None:
        await self._client._call(Req("DELETE", f"/v1/models/{path_segment(name)}"))

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
        response = await self._client._call(
            Req("POST", f"/v1/models/{path_segment(name)}/versions", json={"job_id": job_id})
        )
        return self._client._parse(ModelVersion, response)

    async def upload(
        self, name: str, path: str | Path, framework: str = DEFAULT_FRAMEWORK
    ) -> ModelVersion:
        """A new version from a local model file or archive (the model is created if absent)."""
        local = await asyncio.to_thread(existing_file, path, "model file")
        await self._ensure(name, framework)
        response = await self._client._call(
            Req(
                "POST",
                f"/v1/models/{path_segment(name)}/versions",
                upload=local,
                multipart_field="file",
            )
        )
        return self._client._parse(ModelVersion, response)

    def versions(self, name: str) -> AsyncPager[ModelVersion]:
        path = f"/v1/models/{path_segment(name)}/versions"

        async def fetch(page: int) -> Page[ModelVersion]:
            response = await self._client._call(
                Req("GET", path, params={"page": page, "page_size": 100})
            )
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            items = self._client._parse_items(ModelVersion, body, "versions", rid)
            return items, next_page(body, page)

        return AsyncPager(fetch)

    async def get_version(self, name: str, version: int | str) -> ModelVersion:
        response = await self._client._call(
            Req("GET", f"/v1/models/{path_segment(name)}/versions/{path_segment(version)}")
        )
        return self._client._parse(ModelVersion, response)

    async def set_alias(self, name: str, alias: str, version: int) -> ModelAlias:
        """Point ``alias`` at ``version``: reads the alias's ETag, then PUTs with If-Match."""
        path = f"/v1/models/{path_segment(name)}/aliases/{path_segment(alias)}"
        headers: dict[str, str] = {}
        try:
            current = await self._client._call(Req("GET", path))
            etag = current.headers.get("etag")
            if etag:
                headers["If-Match"] = etag
        except ResourceNotFoundError:
            pass  # a new alias needs no precondition
        response = await self._client._call(
            Req("PUT", path, json=alias_body(version), headers=headers)
        )
        return self._client._parse(ModelAlias, response)

    async def download(
        self, name: str, version: int | str = "latest", dest: str | Path = "."
    ) -> Path:
        """Stream a version's artifact to ``dest`` (a file, or a directory to put it in)."""
        path = f"/v1/models/{path_segment(name)}/versions/{path_segment(version)}/artifact"
        async with self._client._stream(Req("GET", path, stream=True)) as response:
            target = resolve_dest(dest, artifact_filename(response))
            partial = target.with_name(f".{target.name}.partial")
            digest = hashlib.sha256()
            handle = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                handle.close()
        expected = response.headers.get("x-content-sha256")
        if expected and expected != digest.hexdigest():
            partial.unlink(missing_ok=True)
            raise MLPlatformError(f"download of {name} v{version} is corrupt (sha256 mismatch)")
        partial.replace(target)
        return target


class AsyncDeployments:
    """``client.deployments``: serve model versions, roll them, delete them."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

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
        response = await self._client._call(Req("POST", "/v1/deployments", json=body))
        return AsyncDeployment(self._client, self._client._parse(DeploymentData, response))

    async def get(self, name: str) -> AsyncDeployment:
        response = await self._client._call(Req("GET", f"/v1/deployments/{path_segment(name)}"))
        return AsyncDeployment(self._client, self._client._parse(DeploymentData, response))

    def list(self) -> AsyncPager[AsyncDeployment]:
        async def fetch(page: int) -> Page[AsyncDeployment]:
            response = await self._client._call(
                Req("GET", "/v1/deployments", params={"page": page, "page_size": 100})
            )
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            items = self._client._parse_items(DeploymentData, body, "deployments", rid)
            return [AsyncDeployment(self._client, d) for d in items], next_page(body, page)

        return AsyncPager(fetch)

    async def rollout(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> AsyncDeployment:
        response = await self._client._call(
            Req(
                "PATCH",
                f"/v1/deployments/{path_segment(name)}",
                json=rollout_body(version, alias),
            )
        )
        return AsyncDeployment(self._client, self._client._parse(DeploymentData, response))

    async def delete(self, name: str) -> None:
        await self._client._call(Req("DELETE", f"/v1/deployments/{path_segment(name)}"))


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
            uploaded = [await self._put(path, f"{remote}/{rel}") for rel, path in files]
            total = sum(f.size_bytes for f in uploaded)
            return DataFile.parse({"path": f"data/{remote}", "size_bytes": total, "sha256": ""})
        return await self._put(await asyncio.to_thread(existing_file, local, "data file"), remote)

    async def _put(self, local: Path, remote: str) -> DataFile:
        response = await self._client._call(Req("PUT", data_path_url(remote), upload=local))
        return self._client._parse(DataFile, response)

    def list(self, prefix: str | None = None) -> AsyncPager[DataFile]:
        async def fetch(page: int) -> Page[DataFile]:
            params = {"prefix": strip_data_prefix(prefix), "page": page, "page_size": 500}
            response = await self._client._call(Req("GET", "/v1/data", params=params))
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            return self._client._parse_items(DataFile, body, "files", rid), next_page(body, page)

        return AsyncPager(fetch)

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
            grpc = _grpc.import_grpc()
            _, pb2_grpc = _grpc.proto_modules()
            if self._secure:
                self._channel = grpc.aio.secure_channel(
                    self.target, grpc.ssl_channel_credentials(), options=_grpc.CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.insecure_channel(
                    self.target, options=_grpc.CHANNEL_OPTIONS
                )
            self._stub = pb2_grpc.ModelServingStub(self._channel)
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
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, grpc_target)
        self._http = httpx.AsyncClient(base_url=self.base_url, follow_redirects=False)
        self._channel = _AsyncChannel(self.grpc_target, self.base_url.startswith("https://"))
        self._owner = True
        self._bind()

    def _bind(self) -> None:
        self.jobs = AsyncJobs(self)
        self.models = AsyncModels(self)
        self.deployments = AsyncDeployments(self)
        self.data = AsyncData(self)

    def with_options(
        self, timeout: float | None = None, max_retries: int | None = None
    ) -> AsyncClient:
        """A copy with other defaults, sharing this client's connections."""
        clone = copy.copy(self)
        if timeout is not None:
            if timeout <= 0:
                raise ValueError("timeout must be > 0 seconds")
            clone.timeout = float(timeout)
        if max_retries is not None:
            if max_retries < 0:
                raise ValueError("max_retries must be >= 0")
            clone.max_retries = int(max_retries)
        clone._owner = False
        clone._bind()
        return clone

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
            kwargs = self._request_kwargs(req, attempt)
            handle: Any = None
            if req.upload is not None:
                if req.multipart_field is not None:
                    upload = self._sync_upload_kwargs(req)  # httpx streams multipart in async too
                    handle = upload["files"][req.multipart_field][1]
                    kwargs.update(upload)
                else:
                    kwargs["content"] = _file_chunks(req.upload)
            request = self._http.build_request(**kwargs)
            try:
                response = await self._http.send(request, stream=req.stream)
                if response.is_error and req.stream:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TransportError as exc:
                delay = self._transport_delay(attempt)
                if delay is None:
                    raise self._transport_error(exc, str(request.url)) from exc
                logger.info("%s %s: %s; retrying in %.2f s", req.method, req.path, exc, delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            finally:
                if handle is not None:
                    handle.close()
            if not response.is_error:
                return response
            retry_in = self._next_delay(response, attempt)
            if retry_in is None:
                raise self._status_error(response)
            logger.info(
                "%s %s: %s; retrying in %.2f s",
                req.method,
                req.path,
                response.status_code,
                retry_in,
            )
            await asyncio.sleep(retry_in)
            attempt += 1

    async def _call(self, req: Req) -> httpx.Response:
        return await self._send(req)

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
        metadata = (("x-api-key", self.api_key),) if self.api_key else ()
        while True:
            stub = self._channel.stub()
            grpc = _grpc.import_grpc()
            try:
                return await getattr(stub, method)(request, metadata=metadata, timeout=self.timeout)
            except grpc.RpcError as exc:
                delay = self._transport_delay(attempt) if _grpc.retryable_rpc(exc) else None
                if delay is None:
                    raise _grpc.error_from_rpc(exc, self.grpc_target) from None
                await asyncio.sleep(delay)
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
        if data is not None and data_path is not None and data != data_path:
            raise ValueError("give data= or data_path=, not both")
        if source is not None and source_dir is not None:
            raise ValueError("give source= or source_dir=, not both")
        if source_dir is not None:
            source = await self._upload_package(Path(source_dir))
        remote_data = data if data is not None else data_path
        local = local_data(remote_data)
        if local is not None:
            remote_data = (await self.data.upload(local)).path
        job_name = name or default_job_name(entrypoint, source_dir)
        spec = build_training_spec(
            name=job_name,
            framework=framework or model_type or DEFAULT_FRAMEWORK,
            docker_image=docker_image or DEFAULT_IMAGE,
            entrypoint=entrypoint,
            data_path=remote_data,
            output_path=output_path or f"models/{job_name}",
            gpu_count=gpu_count,
            hyperparameters=hyperparameters,
            env_vars=env_vars,
            tags=tags,
            source=source,
            cpu_cores=cpu_cores,
            memory_gb=memory_gb,
            max_runtime_seconds=max_runtime_seconds,
            job_max_retries=job_max_retries,
            tenant_id=tenant_id,
        )
        response = await self._call(Req("POST", "/v1/jobs/training", json=spec))
        return AsyncTrainingJob(self, self._parse(JobData, response))

    async def _upload_package(self, source_dir: Path) -> str:
        package = await asyncio.to_thread(pack_directory, source_dir)
        try:
            await self._call(Req("GET", f"/v1/code-packages/{package.id}"))
            logger.info("code package %s already on the platform", package.id)
            return package.id
        except ResourceNotFoundError:
            pass
        response = await self._call(
            Req(
                "POST",
                "/v1/code-packages",
                content=package.data,
                headers={"Content-Type": "application/zip"},
            )
        )
        body = self._json(response) or {}
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
        pb2, _ = _grpc.proto_modules()
        reply = await self._rpc("Predict", _grpc.predict_request(pb2, name, features))
        return _grpc.prediction_from_reply(reply)

    async def _predict_batch(
        self, name: str, rows: Sequence[Mapping[str, _grpc.FeatureValue]]
    ) -> list[Prediction]:
        pb2, _ = _grpc.proto_modules()
        reply = await self._rpc("PredictBatch", _grpc.predict_batch_request(pb2, name, rows))
        return [_grpc.prediction_from_reply(r) for r in reply.responses]

    async def me(self) -> Me:
        """Who this client is authenticated as (principal, tenant, data area)."""
        return self._parse(Me, await self._call(Req("GET", "/v1/me")))
