"""``Client``: the synchronous SDK (httpx.Client, grpc channel). Mirrors ``_async.py`` exactly.

Request building, pages, log-stream resumption, waits, downloads and train's arguments come
from ``_shared`` / ``_base``; each method here is the I/O around them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from ml_platform.client import _grpc
from ml_platform.client._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    BaseClient,
    Req,
    file_chunks,
)
from ml_platform.client._errors import (
    ConflictError,
    JobFailedError,
    MLPlatformError,
    ResourceNotFoundError,
)
from ml_platform.client._features import Features
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
from ml_platform.client._pagination import SyncPager
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

__all__ = ["Client", "Data", "Deployment", "Deployments", "Jobs", "Models", "TrainingJob"]

M = TypeVar("M", bound=APIObject)
T = TypeVar("T")


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
        with WaitProgress(self.id) as progress:
            waiting = JobWait(self, progress, polling_interval, timeout)
            while not waiting.finished():
                time.sleep(waiting.pause())
                self.refresh()
        if waiting.failed():
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
        waiting = ReadyWait(self, timeout)
        while not waiting.ready():
            time.sleep(waiting.PAUSE)
            self.refresh()
        return self

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
        self._routes = client._routes

    def _job(self, data: Any, request_id: str | None = None) -> TrainingJob:
        return TrainingJob(self._client, JobData.parse(data, request_id))

    def get(self, job_id: str) -> TrainingJob:
        data = self._client._fetch(JobData, Req("GET", self._routes.job(job_id)))
        return TrainingJob(self._client, data)

    def list(
        self,
        status: str | None = None,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        page_size: int = 50,
    ) -> SyncPager[TrainingJob]:
        listing = jobs_listing(self._routes, status, framework, tags, page_size, self._job)
        return self._client._pager(listing)

    def cancel(self, job_id: str) -> None:
        self._client._call(Req("DELETE", self._routes.job(job_id)))

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[LogLine]:
        if follow:
            return self._follow(LogFollow(self._client, job_id, tail))
        return iter(log_lines(self._client._call(logs_request(job_id, tail))))

    def _follow(self, follow: LogFollow) -> Iterator[LogLine]:
        while True:
            try:
                with self._client._stream(follow.request()) as response:
                    for event in EventSource(response).iter_sse():
                        line = follow.accept(event)
                        if line is not None:
                            yield line
                        elif follow.ended:
                            return
            except FOLLOW_DROPS as exc:
                follow.dropped(exc)
            time.sleep(follow.reconnect_delay())

    def metrics(self, job_id: str) -> dict[str, float]:
        response = self._client._call(Req("GET", f"{job_path(job_id)}/metrics"))
        return metrics_from(self._client._json(response))

    def metrics_history(self, job_id: str, name: str | None = None) -> SyncPager[MetricPoint]:
        return self._client._pager(metrics_listing(job_id, name))


class Models:
    """``client.models``: the registry (models, versions, aliases, artifacts)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._routes = client._routes

    def create(
        self, name: str, framework: str = DEFAULT_FRAMEWORK, description: str | None = None
    ) -> Model:
        body = model_body(name, framework, description)
        return self._client._fetch(Model, Req("POST", self._routes.models, json=body))

    def get(self, name: str) -> Model:
        return self._client._fetch(Model, Req("GET", self._routes.model(name)))

    def list(self) -> SyncPager[Model]:
        return self._client._pager(models_listing(self._routes))

    def delete(self, name: str) -> None:
        self._client._call(Req("DELETE", self._routes.model(name)))

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
        return self._client._fetch(ModelVersion, register_request(self._routes, name, job_id))

    def upload(
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
        local = existing_file(path, "model file")
        self._ensure(name, framework)
        req = upload_version_request(self._routes, name, local, format, description, metadata)
        return self._client._fetch(ModelVersion, req)

    def versions(self, name: str) -> SyncPager[ModelVersion]:
        return self._client._pager(versions_listing(self._routes, name))

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        req = Req("GET", self._routes.model_version(name, version))
        return self._client._fetch(ModelVersion, req)

    def set_alias(self, name: str, alias: str, version: int) -> ModelAlias:
        """Point ``alias`` at ``version``: reads the alias's ETag, then PUTs with If-Match."""
        path = self._routes.alias(name, alias)
        try:
            headers = if_match(self._client._call(Req("GET", path)))
        except ResourceNotFoundError:
            headers = {}  # a new alias needs no precondition
        req = Req("PUT", path, json=alias_body(version), headers=headers)
        return self._client._fetch(ModelAlias, req)

    def download(self, name: str, version: int | str = "latest", dest: str | Path = ".") -> Path:
        """Stream a version's artifact to ``dest`` (a file, or a directory to put it in)."""
        with self._client._stream(artifact_request(self._routes, name, version)) as response:
            download = ArtifactDownload(name, version, dest, response)
            with download.partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(download.chunk(chunk))
        return download.finish()


class Deployments:
    """``client.deployments``: serve model versions, roll them, delete them."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._routes = client._routes

    def _deployment(self, data: Any, request_id: str | None = None) -> Deployment:
        return Deployment(self._client, DeploymentData.parse(data, request_id))

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
        data = self._client._fetch(DeploymentData, Req("POST", self._routes.deployments, json=body))
        return Deployment(self._client, data)

    def get(self, name: str) -> Deployment:
        data = self._client._fetch(DeploymentData, Req("GET", self._routes.deployment(name)))
        return Deployment(self._client, data)

    def list(self) -> SyncPager[Deployment]:
        return self._client._pager(deployments_listing(self._routes, self._deployment))

    def rollout(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> Deployment:
        req = Req("PATCH", self._routes.deployment(name), json=rollout_body(version, alias))
        return Deployment(self._client, self._client._fetch(DeploymentData, req))

    def delete(self, name: str) -> None:
        self._client._call(Req("DELETE", self._routes.deployment(name)))


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
            return directory_upload(remote, [self._put(p, f"{remote}/{rel}") for rel, p in files])
        return self._put(existing_file(local, "data file"), remote)

    def _put(self, local: Path, remote: str) -> DataFile:
        return self._client._fetch(DataFile, Req("PUT", data_path_url(remote), upload=local))

    def list(self, prefix: str | None = None) -> SyncPager[DataFile]:
        return self._client._pager(data_listing(prefix))

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
                self._channel, self._stub = _grpc.open_channel(self.target, self._secure, False)
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
        api_version: str | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, grpc_target, api_version)
        self._http = httpx.Client(base_url=self.base_url, follow_redirects=False)
        self._channel = _Channel(self.grpc_target, self.base_url.startswith("https://"))
        self._owner = True
        self._bind()

    def _bind(self) -> None:
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.deployments = Deployments(self)
        self.data = Data(self)
        self.features = Features(self)

    def with_options(self, timeout: float | None = None, max_retries: int | None = None) -> Client:
        """A copy with other defaults, sharing this client's connections."""
        return self._copy(timeout, max_retries)

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
            kwargs, handle = self._attempt(req, attempt, file_chunks)
            request = self._http.build_request(**kwargs)
            try:
                response = self._http.send(request, stream=req.stream)
                if response.is_error and req.stream:
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                time.sleep(self._retry_transport(req, exc, str(request.url), attempt))
                attempt += 1
                continue
            finally:
                if handle is not None:
                    handle.close()
            if not response.is_error:
                return response
            time.sleep(self._retry_status(req, response, attempt))
            attempt += 1

    def _call(self, req: Req) -> httpx.Response:
        return self._send(req)

    def _fetch(self, model: type[M], req: Req) -> M:
        return self._parse(model, self._send(req))

    def _pager(self, listing: Listing[T]) -> SyncPager[T]:
        return SyncPager(
            lambda cursor: listing.page(self._send(listing.request(cursor)), cursor),
            first=listing.first,
        )

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
        while True:
            stub = self._channel.stub()
            try:
                return getattr(stub, method)(
                    request, metadata=self._rpc_metadata(), timeout=self.timeout
                )
            except _grpc.import_grpc().RpcError as exc:
                time.sleep(self._retry_rpc(exc, attempt))
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
            source = self._upload_package(Path(call.source_dir))
        remote_data = call.remote_data
        if (local := call.local_data()) is not None:
            remote_data = self.data.upload(local).path
        req = call.request(self._routes, source, remote_data)
        return TrainingJob(self, self._fetch(JobData, req))

    def _upload_package(self, source_dir: Path) -> str:
        package = pack_directory(source_dir)
        with contextlib.suppress(ResourceNotFoundError):
            self._call(Req("GET", f"/v1/code-packages/{package.id}"))
            return package.id  # the platform already holds these bytes
        body = self._json(self._call(package_upload_request(package))) or {}
        return str(body.get("id", package.id))

    def get_job(self, job_id: str) -> TrainingJob:
        return self.jobs.get(job_id)

    def list_jobs(
        self, status: str | None = None, framework: str | None = None, limit: int = 50
    ) -> list[TrainingJob]:
        """The newest ``limit`` jobs, optionally filtered."""
        page_size = max(1, min(limit, 500))
        pager = self.jobs.list(status=status, framework=framework, page_size=page_size)
        return pager.to_list(limit)

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
        return _grpc.prediction_from_reply(self._rpc(*_grpc.predict_call(name, features)))

    def _predict_batch(
        self, name: str, rows: Sequence[Mapping[str, _grpc.FeatureValue]]
    ) -> list[Prediction]:
        return _grpc.batch_predictions(self._rpc(*_grpc.predict_batch_call(name, rows)))

    def me(self) -> Me:
        """Who this client is authenticated as (principal, tenant, data area)."""
        return self._fetch(Me, Req("GET", "/v1/me"))

    def quotas(self) -> Quotas:
        """This tenant's quotas, each limit beside the current usage (``GET /v1/quotas``)."""
        return self._fetch(Quotas, Req("GET", "/v1/quotas"))
