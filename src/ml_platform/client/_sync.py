"""``Client``: the synchronous SDK (httpx.Client, grpc channel). Mirrors ``_async.py`` exactly."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from ml_platform.client import _grpc
from ml_platform.client._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient, Req
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
from ml_platform.client._pagination import Page, SyncPager, next_page
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

__all__ = ["Client", "Data", "Deployment", "Deployments", "Jobs", "Models", "TrainingJob"]


# -- handles ---------------------------------------------------------------------------------


class TrainingJob(JobView):
    """A training job: the seed's properties plus refresh, wait, cancel, logs and metrics."""

    def __init__(self, client: Client, data: JobData) -> None:
        self._client = client
        self._data = data

    def refresh(self) -> TrainingJob:
        self._data = self._client.jobs.get(self.id)._data
        return self

    def wait(self, polling_interval: float = 2.0, timeout: float | None = None) -> TrainingJob:
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
                time.sleep(max(pause, 0.0))
                self.refresh()
        if self.status != "succeeded":
            raise JobFailedError(self, self.error_message, self._safe_tail())
        return self

    def _safe_tail(self) -> str:
        try:
            return self.get_logs(tail=50)
        except MLPlatformError as exc:
            return f"(logs unavailable: {exc})"

    def cancel(self) -> TrainingJob:
        """Cancel a pending or running job (a finished one: ``ConflictError``)."""
        self._client.jobs.cancel(self.id)
        return self.refresh()

    def get_logs(self, tail: int = 100) -> str:
        """The last ``tail`` lines as text."""
        return log_text(list(self._client.jobs.logs(self.id, tail=tail)))

    def get_metrics(self) -> dict[str, float]:
        """The latest value of each metric."""
        return self._client.jobs.metrics(self.id)

    def logs(self, follow: bool = True, tail: int | None = None) -> Iterator[LogLine]:
        """Every line (``follow``: live over SSE until the job ends, resuming after drops)."""
        return self._client.jobs.logs(self.id, follow=follow, tail=tail)

    def metrics_history(self, name: str | None = None) -> SyncPager[MetricPoint]:
        return self._client.jobs.metrics_history(self.id, name=name)


class Deployment(DeploymentView):
    """A deployment: status, readiness, rollouts and predictions over gRPC."""

    def __init__(self, client: Client, data: DeploymentData) -> None:
        self._client = client
        self._data = data

    def refresh(self) -> Deployment:
        self._data = self._client.deployments.get(self.name)._data
        return self

    def wait_ready(self, timeout: float = 120) -> Deployment:
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
            time.sleep(0.2)
            self.refresh()

    def rollout(self, version: int | None = None, alias: str | None = None) -> Deployment:
        self._data = self._client.deployments.rollout(self.name, version=version, alias=alias)._data
        return self

    def delete(self) -> None:
        self._client.deployments.delete(self.name)

    def predict(self, features: Mapping[str, _grpc.FeatureValue]) -> Prediction:
        return self._client.predict(self.name, features)

    def predict_batch(self, rows: Sequence[Mapping[str, _grpc.FeatureValue]]) -> list[Prediction]:
        return self._client._predict_batch(self.name, rows)


# -- resources -------------------------------------------------------------------------------


class Jobs:
    """``client.jobs``: get, list (auto-paginating), cancel, logs, metrics."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, job_id: str) -> TrainingJob:
        response = self._client._call(Req("GET", f"/v1/jobs/training/{path_segment(job_id)}"))
        return TrainingJob(self._client, self._client._parse(JobData, response))

    def list(
        self,
        status: str | None = None,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        page_size: int = 50,
    ) -> SyncPager[TrainingJob]:
        params = {"status": status, "framework": framework, "tags": tags, "page_size": page_size}

        def fetch(page: int) -> Page[TrainingJob]:
            response = self._client._call(
                Req("GET", "/v1/jobs/training", params={**params, "page": page})
            )
            body = self._client._json(response)
            items = self._client._parse_items(
                JobData, body, "jobs", response.headers.get("x-request-id")
            )
            return [TrainingJob(self._client, d) for d in items], next_page(body, page)

        return SyncPager(fetch)

    def cancel(self, job_id: str) -> None:
        self._client._call(Req("DELETE", f"/v1/jobs/training/{path_segment(job_id)}"))

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[LogLine]:
        if follow:
            return self._follow(job_id, tail)
        response = self._client._call(
            Req(
                "GET",
                f"/v1/jobs/training/{path_segment(job_id)}/logs",
                params={"tail": LOG_TAIL_MAX if tail is None else tail},
            )
        )
        body = self._client._json(response)
        return iter(
            self._client._parse_items(LogLine, body, "logs", response.headers.get("x-request-id"))
        )

    def _follow(self, job_id: str, tail: int | None) -> Iterator[LogLine]:
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
                with self._client._stream(req) as response:
                    for event in EventSource(response).iter_sse():
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
            time.sleep(delay)

    def metrics(self, job_id: str) -> dict[str, float]:
        response = self._client._call(
            Req("GET", f"/v1/jobs/training/{path_segment(job_id)}/metrics")
        )
        body = self._client._json(response) or {}
        return {str(k): float(v) for k, v in body.items()}

    def metrics_history(self, job_id: str, name: str | None = None) -> SyncPager[MetricPoint]:
        path = f"/v1/jobs/training/{path_segment(job_id)}/metrics/history"

        def fetch(after_id: int) -> Page[MetricPoint]:
            response = self._client._call(
                Req("GET", path, params={"name": name, "after_id": after_id})
            )
            body = self._client._json(response)
            items = self._client._parse_items(
                MetricPoint, body, "metrics", response.headers.get("x-request-id")
            )
            return items, body.get("next_after_id") if body.get("has_more") else None

        return SyncPager(fetch, first=0)


class Models:
    """``client.models``: the registry (models, versions, aliases, artifacts)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, name: str, framework: str = DEFAULT_FRAMEWORK, description: str | None = None
    ) -> Model:
        body: dict[str, Any] = {"name": name, "framework": framework}
        if description is not None:
            body["description"] = description
        return self._client._parse(Model, self._client._call(Req("POST", "/v1/models", json=body)))

    def get(self, name: str) -> Model:
        response = self._client._call(Req("GET", f"/v1/models/{path_segment(name)}"))
        return self._client._parse(Model, response)

    def list(self) -> SyncPager[Model]:
        def fetch(page: int) -> Page[Model]:
            response = self._client._call(
                Req("GET", "/v1/models", params={"page": page, "page_size": 100})
            )
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            return self._client._parse_items(Model, body, "models", rid), next_page(body, page)

        return SyncPager(fetch)

    def delete(self, name: str) -> None:
        self._client._call(Req("DELETE", f"/v1/models/{path_segment(name)}"))

    def _ensure(self, name: str, framework: str) -> None:
        try:
            self.get(name)
        except ResourceNotFoundError:
            with contextlib.suppress(ConflictError):  # created concurrently: fine
                self.create(name, framework=framework)

    def register(self, name: str, job: TrainingJob | str) -> ModelVersion:
        """A new version from a succeeded job's output (the model is created if absent)."""
        job_id = job if isinstance(job, str) else job.id
        framework = DEFAULT_FRAMEWORK if isinstance(job, str) else job.framework
        self._ensure(name, framework or DEFAULT_FRAMEWORK)
        response = self._client._call(
            Req("POST", f"/v1/models/{path_segment(name)}/versions", json={"job_id": job_id})
        )
        return self._client._parse(ModelVersion, response)

    def upload(
        self, name: str, path: str | Path, framework: str = DEFAULT_FRAMEWORK
    ) -> ModelVersion:
        """A new version from a local model file or archive (the model is created if absent)."""
        local = existing_file(path, "model file")
        self._ensure(name, framework)
        response = self._client._call(
            Req(
                "POST",
                f"/v1/models/{path_segment(name)}/versions",
                upload=local,
                multipart_field="file",
            )
        )
        return self._client._parse(ModelVersion, response)

    def versions(self, name: str) -> SyncPager[ModelVersion]:
        path = f"/v1/models/{path_segment(name)}/versions"

        def fetch(page: int) -> Page[ModelVersion]:
            response = self._client._call(Req("GET", path, params={"page": page, "page_size": 100}))
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            items = self._client._parse_items(ModelVersion, body, "versions", rid)
            return items, next_page(body, page)

        return SyncPager(fetch)

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        response = self._client._call(
            Req("GET", f"/v1/models/{path_segment(name)}/versions/{path_segment(version)}")
        )
        return self._client._parse(ModelVersion, response)

    def set_alias(self, name: str, alias: str, version: int) -> ModelAlias:
        """Point ``alias`` at ``version``: reads the alias's ETag, then PUTs with If-Match."""
        path = f"/v1/models/{path_segment(name)}/aliases/{path_segment(alias)}"
        headers: dict[str, str] = {}
        try:
            current = self._client._call(Req("GET", path))
            etag = current.headers.get("etag")
            if etag:
                headers["If-Match"] = etag
        except ResourceNotFoundError:
            pass  # a new alias needs no precondition
        response = self._client._call(Req("PUT", path, json=alias_body(version), headers=headers))
        return self._client._parse(ModelAlias, response)

    def download(self, name: str, version: int | str = "latest", dest: str | Path = ".") -> Path:
        """Stream a version's artifact to ``dest`` (a file, or a directory to put it in)."""
        path = f"/v1/models/{path_segment(name)}/versions/{path_segment(version)}/artifact"
        with self._client._stream(Req("GET", path, stream=True)) as response:
            target = resolve_dest(dest, artifact_filename(response))
            partial = target.with_name(f".{target.name}.partial")
            digest = hashlib.sha256()
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    handle.write(chunk)
        expected = response.headers.get("x-content-sha256")
        if expected and expected != digest.hexdigest():
            partial.unlink(missing_ok=True)
            raise MLPlatformError(f"download of {name} v{version} is corrupt (sha256 mismatch)")
        partial.replace(target)
        return target


class Deployments:
    """``client.deployments``: serve model versions, roll them, delete them."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        model: str,
        version: int | None = None,
        alias: str | None = None,
        max_batch_size: int | None = None,
        max_batch_delay_ms: float | None = None,
    ) -> Deployment:
        body = deployment_body(name, model, version, alias, max_batch_size, max_batch_delay_ms)
        response = self._client._call(Req("POST", "/v1/deployments", json=body))
        return Deployment(self._client, self._client._parse(DeploymentData, response))

    def get(self, name: str) -> Deployment:
        response = self._client._call(Req("GET", f"/v1/deployments/{path_segment(name)}"))
        return Deployment(self._client, self._client._parse(DeploymentData, response))

    def list(self) -> SyncPager[Deployment]:
        def fetch(page: int) -> Page[Deployment]:
            response = self._client._call(
                Req("GET", "/v1/deployments", params={"page": page, "page_size": 100})
            )
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            items = self._client._parse_items(DeploymentData, body, "deployments", rid)
            return [Deployment(self._client, d) for d in items], next_page(body, page)

        return SyncPager(fetch)

    def rollout(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> Deployment:
        response = self._client._call(
            Req("PATCH", f"/v1/deployments/{path_segment(name)}", json=rollout_body(version, alias))
        )
        return Deployment(self._client, self._client._parse(DeploymentData, response))

    def delete(self, name: str) -> None:
        self._client._call(Req("DELETE", f"/v1/deployments/{path_segment(name)}"))


class Data:
    """``client.data``: your tenant's data area (what jobs' ``data_path`` names)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, local_path: str | Path, remote_path: str | None = None) -> DataFile:
        """Upload a file (or every file of a directory) and return where it is."""
        local = Path(local_path)
        remote = data_remote_path(local, remote_path)
        files = data_files(local)
        if files is not None:
            uploaded = [self._put(path, f"{remote}/{rel}") for rel, path in files]
            total = sum(f.size_bytes for f in uploaded)
            return DataFile.parse({"path": f"data/{remote}", "size_bytes": total, "sha256": ""})
        return self._put(existing_file(local, "data file"), remote)

    def _put(self, local: Path, remote: str) -> DataFile:
        response = self._client._call(Req("PUT", data_path_url(remote), upload=local))
        return self._client._parse(DataFile, response)

    def list(self, prefix: str | None = None) -> SyncPager[DataFile]:
        def fetch(page: int) -> Page[DataFile]:
            params = {"prefix": strip_data_prefix(prefix), "page": page, "page_size": 500}
            response = self._client._call(Req("GET", "/v1/data", params=params))
            body = self._client._json(response)
            rid = response.headers.get("x-request-id")
            return self._client._parse_items(DataFile, body, "files", rid), next_page(body, page)

        return SyncPager(fetch)

    def delete(self, path: str) -> None:
        self._client._call(Req("DELETE", data_path_url(strip_data_prefix(path) or "")))


# -- the client ------------------------------------------------------------------------------


class _Channel:
    """The client's one gRPC channel, created on first use and shared by its copies."""

    def __init__(self, target: str, secure: bool) -> None:
        self.target = target
        self._secure = secure
        self._lock = threading.Lock()
        self._channel: Any = None
        self._stub: Any = None

    def stub(self) -> Any:
        with self._lock:
            if self._stub is None:
                grpc = _grpc.import_grpc()
                _, pb2_grpc = _grpc.proto_modules()
                if self._secure:
                    credentials = grpc.ssl_channel_credentials()
                    self._channel = grpc.secure_channel(
                        self.target, credentials, options=_grpc.CHANNEL_OPTIONS
                    )
                else:
                    self._channel = grpc.insecure_channel(
                        self.target, options=_grpc.CHANNEL_OPTIONS
                    )
                self._stub = pb2_grpc.ModelServingStub(self._channel)
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None


class Client(BaseClient):
    """The ML platform, from Python.

    >>> with Client() as client:            # URL and key: args, env, or the credentials file
    ...     job = client.train(entrypoint="train.py", source_dir=".", data="train.csv")
    ...     job.wait()
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
        self._http = httpx.Client(base_url=self.base_url, follow_redirects=False)
        self._channel = _Channel(self.grpc_target, self.base_url.startswith("https://"))
        self._owner = True
        self._bind()

    def _bind(self) -> None:
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.deployments = Deployments(self)
        self.data = Data(self)

    def with_options(self, timeout: float | None = None, max_retries: int | None = None) -> Client:
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

    def close(self) -> None:
        """Close the HTTP connections and the gRPC channel (copies leave them to the original)."""
        if self._owner:
            self._http.close()
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- I/O: the one retry loop -------------------------------------------------------------

    def _send(self, req: Req) -> httpx.Response:
        attempt = 0
        while True:
            kwargs = self._request_kwargs(req, attempt)
            handle: Any = None
            if req.upload is not None:
                upload = self._sync_upload_kwargs(req)
                handle = upload.get("files", {}).get(req.multipart_field, (None, None))[1]
                kwargs.update(upload)
            request = self._http.build_request(**kwargs)
            try:
                response = self._http.send(request, stream=req.stream)
                if response.is_error and req.stream:
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                delay = self._transport_delay(attempt)
                if delay is None:
                    raise self._transport_error(exc, str(request.url)) from exc
                logger.info("%s %s: %s; retrying in %.2f s", req.method, req.path, exc, delay)
                time.sleep(delay)
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
            time.sleep(retry_in)
            attempt += 1

    def _call(self, req: Req) -> httpx.Response:
        return self._send(req)

    @contextmanager
    def _stream(self, req: Req) -> Iterator[httpx.Response]:
        req.stream = True
        response = self._send(req)
        try:
            yield response
        finally:
            response.close()

    def _rpc(self, method: str, request: Any) -> Any:
        attempt = 0
        metadata = (("x-api-key", self.api_key),) if self.api_key else ()
        while True:
            stub = self._channel.stub()
            grpc = _grpc.import_grpc()
            try:
                return getattr(stub, method)(request, metadata=metadata, timeout=self.timeout)
            except grpc.RpcError as exc:
                delay = self._transport_delay(attempt) if _grpc.retryable_rpc(exc) else None
                if delay is None:
                    raise _grpc.error_from_rpc(exc, self.grpc_target) from None
                time.sleep(delay)
                attempt += 1

    # -- the seed's methods and shortcuts ----------------------------------------------------

    def train(
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
    ) -> TrainingJob:
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
            source = self._upload_package(Path(source_dir))
        remote_data = data if data is not None else data_path
        local = local_data(remote_data)
        if local is not None:
            remote_data = self.data.upload(local).path
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
        response = self._call(Req("POST", "/v1/jobs/training", json=spec))
        return TrainingJob(self, self._parse(JobData, response))

    def _upload_package(self, source_dir: Path) -> str:
        package = pack_directory(source_dir)
        try:
            self._call(Req("GET", f"/v1/code-packages/{package.id}"))
            logger.info("code package %s already on the platform", package.id)
            return package.id
        except ResourceNotFoundError:
            pass
        response = self._call(
            Req(
                "POST",
                "/v1/code-packages",
                content=package.data,
                headers={"Content-Type": "application/zip"},
            )
        )
        body = self._json(response) or {}
        return str(body.get("id", package.id))

    def get_job(self, job_id: str) -> TrainingJob:
        return self.jobs.get(job_id)

    def list_jobs(
        self, status: str | None = None, framework: str | None = None, limit: int = 50
    ) -> list[TrainingJob]:
        """The newest ``limit`` jobs, optionally filtered."""
        page_size = max(1, min(limit, 500))
        return self.jobs.list(status=status, framework=framework, page_size=page_size).to_list(
            limit
        )

    def deploy(
        self,
        name: str,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
    ) -> Deployment:
        """Deploy ``model`` (default: the model named like the deployment)."""
        return self.deployments.create(name, model=model or name, version=version, alias=alias)

    def predict(self, name: str, features: Mapping[str, _grpc.FeatureValue]) -> Prediction:
        """One prediction from deployment ``name`` over gRPC."""
        pb2, _ = _grpc.proto_modules()
        reply = self._rpc("Predict", _grpc.predict_request(pb2, name, features))
        return _grpc.prediction_from_reply(reply)

    def _predict_batch(
        self, name: str, rows: Sequence[Mapping[str, _grpc.FeatureValue]]
    ) -> list[Prediction]:
        pb2, _ = _grpc.proto_modules()
        reply = self._rpc("PredictBatch", _grpc.predict_batch_request(pb2, name, rows))
        return [_grpc.prediction_from_reply(r) for r in reply.responses]

    def me(self) -> Me:
        """Who this client is authenticated as (principal, tenant, data area)."""
        parsed: Me = self._parse(Me, self._call(Req("GET", "/v1/me")))
        return parsed
