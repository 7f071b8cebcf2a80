"""I/O-free pieces shared by both clients: requests, pages, log-stream resumption, waits,
downloads, train's arguments, job specs, defaults, paths and file naming.

``Client`` and ``AsyncClient`` call these and add only their I/O (send, sleep, read, write).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, SSEError

from ml_platform.client._base import BaseClient, Req
from ml_platform.client._errors import (
    APIConnectionError,
    APIStatusError,
    MLPlatformError,
    status_error_class,
)
from ml_platform.client._models import DataFile, LogLine, MetricPoint, Model, ModelVersion
from ml_platform.client._packaging import ALWAYS_SKIPPED_DIRS, Package
from ml_platform.client._pagination import next_page
from ml_platform.client._progress import WaitProgress
from ml_platform.client._routes import Routes, path_segment
from ml_platform.client._views import POLL_FLOOR_SECONDS, DeploymentView, JobView

logger = logging.getLogger("ml_platform.client")

__all__ = [
    "DEFAULT_FRAMEWORK",
    "DEFAULT_IMAGE",
    "FOLLOW_DROPS",
    "LOG_TAIL_MAX",
    "SSE_READ_TIMEOUT",
    "ArtifactDownload",
    "JobWait",
    "Listing",
    "LogFollow",
    "ReadyWait",
    "TrainCall",
    "alias_body",
    "artifact_filename",
    "artifact_request",
    "build_training_spec",
    "data_files",
    "data_listing",
    "data_path_url",
    "data_remote_path",
    "default_job_name",
    "deployment_body",
    "deployments_listing",
    "directory_upload",
    "end_of_stream_error",
    "existing_file",
    "if_match",
    "job_path",
    "jobs_listing",
    "local_data",
    "log_lines",
    "logs_request",
    "metrics_from",
    "metrics_listing",
    "model_body",
    "models_listing",
    "normalize_entrypoint",
    "package_upload_request",
    "path_segment",
    "register_request",
    "resolve_dest",
    "rollout_body",
    "strip_data_prefix",
    "upload_version_request",
    "versions_listing",
]

LOG_TAIL_MAX = 10_000  # the server's largest `tail`
SSE_READ_TIMEOUT = 60.0  # > the server's 15 s heartbeats: a silent minute is a dead stream
DEFAULT_IMAGE = "python:3.11"
DEFAULT_FRAMEWORK = "sklearn"
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def data_path_url(remote: str) -> str:
    """``/v1/data/<path>``: every segment quoted, slashes kept."""
    return "/v1/data/" + quote(remote.lstrip("/"), safe="/")


def normalize_entrypoint(entrypoint: str) -> str:
    """``train.py`` -> ``python train.py`` (the server runs a command line)."""
    stripped = entrypoint.strip()
    if stripped.endswith(".py") and " " not in stripped:
        return f"python {stripped}"
    return stripped


def default_job_name(entrypoint: str | None, source_dir: str | Path | None) -> str:
    """A valid name (``^[a-z0-9-]+$``) from the source dir or entrypoint, plus a short suffix."""
    if source_dir is not None:
        base = Path(source_dir).resolve().name
    elif entrypoint:
        base = Path(entrypoint.split()[-1]).stem
    else:
        base = "job"
    slug = _NAME_CHARS.sub("-", base.lower().replace("_", "-")).strip("-")[:48] or "job"
    return f"{slug}-{secrets.token_hex(3)}"


def local_data(value: str | None) -> Path | None:
    """The local file or directory ``data=`` names, or None (a remote / server-side path)."""
    if not value or "://" in value:
        return None
    path = Path(value).expanduser()
    return path if path.exists() else None


def data_remote_path(local: Path, remote_path: str | None) -> str:
    """Where an upload goes inside the tenant's data area (without the ``data/`` prefix)."""
    if remote_path:
        return remote_path.strip().lstrip("/").removeprefix("data/")
    return local.resolve().name


def build_training_spec(
    *,
    name: str,
    framework: str,
    docker_image: str,
    entrypoint: str,
    data_path: str | None,
    output_path: str,
    gpu_count: int,
    hyperparameters: Mapping[str, Any] | None,
    env_vars: Mapping[str, str] | None,
    tags: Mapping[str, str] | None,
    source: str | None,
    cpu_cores: int | None,
    memory_gb: int | None,
    max_runtime_seconds: int | None,
    job_max_retries: int | None,
    tenant_id: str | None,
) -> dict[str, Any]:
    """The ``POST /v1/jobs/training`` body; optional fields only when given."""
    compute: dict[str, Any] = {
        "compute_type": "gpu" if gpu_count > 0 else "cpu",
        "gpu_count": gpu_count,
    }
    if cpu_cores is not None:
        compute["cpu_cores"] = cpu_cores
    if memory_gb is not None:
        compute["memory_gb"] = memory_gb
    spec: dict[str, Any] = {
        "name": name,
        "framework": framework,
        "docker_image": docker_image,
        "entrypoint": normalize_entrypoint(entrypoint),
        "output_path": output_path,
        "compute": compute,
    }
    if data_path is not None:
        spec["data_path"] = data_path
    optional: dict[str, Any] = {
        "hyperparameters": dict(hyperparameters) if hyperparameters else None,
        "env_vars": dict(env_vars) if env_vars else None,
        "tags": dict(tags) if tags else None,
        "source": source,
        "max_runtime_seconds": max_runtime_seconds,
        "max_retries": job_max_retries,
        "tenant_id": tenant_id,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def strip_data_prefix(path: str | None) -> str | None:
    """``data/x.csv`` (as the server names files) -> ``x.csv`` (the path under /v1/data)."""
    if path is None:
        return None
    return path.strip().lstrip("/").removeprefix("data/")


def existing_file(path: str | Path, what: str) -> Path:
    local = Path(path).expanduser()
    if not local.is_file():
        raise FileNotFoundError(f"{what} {str(local)!r} does not exist or is not a file")
    return local


def data_files(directory: Path) -> list[tuple[str, Path]] | None:
    """(relative posix path, file) of every file under a directory, sorted, caches skipped;
    None when ``directory`` is not a directory."""
    directory = directory.expanduser()
    if not directory.is_dir():
        return None
    found = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part in ALWAYS_SKIPPED_DIRS for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            found.append((rel.as_posix(), path))
    return found


def deployment_body(
    name: str,
    model: str,
    version: int | None,
    alias: str | None,
    max_batch_size: int | None,
    max_batch_delay_ms: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "model": model}
    optional = {
        "version": version,
        "alias": alias,
        "max_batch_size": max_batch_size,
        "max_batch_delay_ms": max_batch_delay_ms,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def rollout_body(version: int | None, alias: str | None) -> dict[str, Any]:
    if (version is None) == (alias is None):
        raise ValueError("roll out to exactly one of version= or alias=")
    return {"version": version} if version is not None else {"alias": alias}


def alias_body(version: int) -> dict[str, Any]:
    return {"version": version}


def artifact_filename(response: httpx.Response) -> str:
    """The file name from ``Content-Disposition`` (sanitized), else ``model``."""
    header = response.headers.get("content-disposition", "")
    message = Message()
    message["content-disposition"] = header
    raw = message.get_param("filename", header="content-disposition")
    name = raw if isinstance(raw, str) else "model"
    name = Path(name.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else "model"


def resolve_dest(given: str | Path, filename: str) -> Path:
    """A directory (existing, or written with a trailing slash) gets ``filename`` inside it."""
    dest = Path(given).expanduser()
    if dest.is_dir() or (isinstance(given, str) and given.endswith(("/", "\\"))):
        dest.mkdir(parents=True, exist_ok=True)
        return dest / filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def end_of_stream_error(data: str) -> MLPlatformError:
    """The exception for an in-band SSE ``error`` event (a problem-like JSON object)."""
    try:
        body = json.loads(data)
    except ValueError:
        body = {"detail": data}
    if not isinstance(body, dict):
        body = {"detail": str(body)}
    status = int(body.get("status") or _STATUS_FOR_CODE.get(str(body.get("code")), 500))
    cls = status_error_class(status)
    error: APIStatusError = cls(
        str(body.get("detail", "stream error")), status_code=status, body=body
    )
    return error


_STATUS_FOR_CODE = {
    "NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "INVALID_ARGUMENT": 422,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}


# -- what both clients run the same way: requests, pages, streams, waits, downloads, train --


def job_path(job_id: str) -> str:
    """A job under v1, where its logs and metrics live whatever the client's API version."""
    return f"/v1/jobs/training/{path_segment(job_id)}"


def logs_request(job_id: str, tail: int | None) -> Req:
    params = {"tail": LOG_TAIL_MAX if tail is None else tail}
    return Req("GET", f"{job_path(job_id)}/logs", params=params)


def model_body(name: str, framework: str, description: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "framework": framework}
    if description is not None:
        body["description"] = description
    return body


def upload_version_request(
    routes: Routes,
    name: str,
    local: Path,
    format: str | None,
    description: str | None,
    metadata: Mapping[str, Any] | None,
) -> Req:
    """The multipart POST of a model file, with the optional form fields the server reads."""
    fields = {
        "format": format,
        "description": description,
        "metadata": json.dumps(dict(metadata)) if metadata is not None else None,
    }
    form = {k: v for k, v in fields.items() if v is not None}
    return Req(
        "POST",
        routes.versions(name),
        upload=local,
        multipart_field="file",
        form=form or None,
    )


def register_request(routes: Routes, name: str, job_id: str) -> Req:
    return Req("POST", routes.versions(name), json={"job_id": job_id})


def if_match(response: httpx.Response) -> dict[str, str]:
    """The precondition for changing what ``response`` showed (its ETag), if it had one."""
    etag = response.headers.get("etag")
    return {"If-Match": etag} if etag else {}


def package_upload_request(package: Package) -> Req:
    return Req(
        "POST",
        "/v1/code-packages",
        content=package.data,
        headers={"Content-Type": "application/zip"},
    )


def metrics_from(body: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in (body or {}).items()}


def directory_upload(remote: str, uploaded: list[DataFile]) -> DataFile:
    """What uploading a directory made: its path and the total size."""
    total = sum(f.size_bytes for f in uploaded)
    return DataFile.parse({"path": f"data/{remote}", "size_bytes": total, "sha256": ""})


T = TypeVar("T")


class Listing(Generic[T]):
    """One paginated list: the request for a cursor, and the page parsed from its answer.

    ``cursor`` is ``page`` (v1 lists: ``page``/``has_more``), ``page_token`` (v2 lists:
    ``next_page_token`` until null; the first page sends none) or ``after_id`` (metric
    history: ``next_after_id``/``has_more``); ``item`` turns one listed document into the
    result.
    """

    def __init__(
        self,
        path: str,
        key: str,
        item: Callable[[Any, str | None], T],
        params: Mapping[str, Any] | None = None,
        cursor: str = "page",
    ) -> None:
        self.path = path
        self.key = key
        self.item = item
        self.params = dict(params or {})
        self.cursor = cursor
        self.first: int | str = "" if cursor == "page_token" else 0 if cursor == "after_id" else 1

    def request(self, cursor: Any) -> Req:
        value = cursor if cursor != "" else None  # the first v2 page has no token
        return Req("GET", self.path, params={**self.params, self.cursor: value})

    def page(self, response: httpx.Response, cursor: Any) -> tuple[list[T], Any]:
        body = BaseClient._json(response)
        request_id = response.headers.get("x-request-id")
        entries = body.get(self.key, []) if isinstance(body, dict) else []
        items = [self.item(entry, request_id) for entry in entries]
        if self.cursor == "after_id":
            more = isinstance(body, dict) and body.get("has_more")
            return items, body.get("next_after_id") if more else None
        if self.cursor == "page_token":
            token = body.get("next_page_token") if isinstance(body, dict) else None
            return items, token or None
        return items, next_page(body, cursor)


def jobs_listing(
    routes: Routes,
    status: str | None,
    framework: str | None,
    tags: Mapping[str, str] | None,
    page_size: int,
    item: Callable[[Any, str | None], T],
) -> Listing[T]:
    params = {"status": status, "framework": framework, "tags": tags, "page_size": page_size}
    return Listing(routes.jobs, "jobs", item, params, cursor=routes.list_cursor)


def metrics_listing(job_id: str, name: str | None) -> Listing[MetricPoint]:
    path = f"{job_path(job_id)}/metrics/history"
    return Listing(path, "metrics", MetricPoint.parse, {"name": name}, cursor="after_id")


def models_listing(routes: Routes) -> Listing[Model]:
    params = {"page_size": 100}
    return Listing(routes.models, "models", Model.parse, params, cursor=routes.list_cursor)


def versions_listing(routes: Routes, name: str) -> Listing[ModelVersion]:
    path = routes.versions(name)
    params = {"page_size": 100}
    return Listing(path, "versions", ModelVersion.parse, params, cursor=routes.list_cursor)


def deployments_listing(routes: Routes, item: Callable[[Any, str | None], T]) -> Listing[T]:
    params = {"page_size": 100}
    return Listing(routes.deployments, "deployments", item, params, cursor=routes.list_cursor)


def data_listing(prefix: str | None) -> Listing[DataFile]:
    params = {"prefix": strip_data_prefix(prefix), "page_size": 500}
    return Listing("/v1/data", "files", DataFile.parse, params)


FOLLOW_DROPS = (httpx.TransportError, SSEError, APIConnectionError)


class LogFollow:
    """``logs(follow=True)``: the request for each (re)connection and what each event means.

    Lines come from the ``log`` events; ``end`` ends the stream, ``error`` raises. A stream
    that drops (or ends without ``end``) is reopened with ``Last-Event-ID`` of the last line
    delivered, after the client's backoff; lines at or below it are never yielded twice.
    """

    def __init__(self, client: BaseClient, job_id: str, tail: int | None) -> None:
        self._client = client
        self.job_id = job_id
        self.tail = tail
        self.last_id: int | None = None if tail is not None else 0
        self.drops = 0
        self.ended = False

    def request(self) -> Req:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        params: dict[str, Any] = {"follow": True}
        if self.last_id is None:
            params["tail"] = self.tail
        else:
            headers["Last-Event-ID"] = str(self.last_id)
        req = Req("GET", f"{job_path(self.job_id)}/logs", params=params, headers=headers)
        req.stream = True
        req.timeout = httpx.Timeout(self._client.timeout, read=SSE_READ_TIMEOUT)
        return req

    def accept(self, event: ServerSentEvent) -> LogLine | None:
        """The new line this event carries, or None (also when it ended the stream)."""
        if event.event == "log":
            line: LogLine = LogLine.parse(event.json())
            if self.last_id is not None and line.id <= self.last_id:
                return None
            self.last_id, self.drops = line.id, 0
            return line
        if event.event == "end":
            self.ended = True
        elif event.event == "error":
            raise end_of_stream_error(event.data)
        return None

    def dropped(self, exc: Exception) -> None:
        logger.info("log stream of %s dropped (%s); resuming", self.job_id, exc)

    def reconnect_delay(self) -> float:
        """Seconds before reopening the stream; raises when the retries are used up."""
        delay = self._client._transport_delay(self.drops)
        if delay is None:
            raise APIConnectionError(
                f"log stream of job {self.job_id} kept dropping after {self.drops} reconnects"
            )
        self.drops += 1
        return delay


class JobWait:
    """``job.wait()``: when to stop polling (finished, or past ``timeout``) and for how long."""

    def __init__(
        self, job: JobView, progress: WaitProgress, polling_interval: float, timeout: float | None
    ) -> None:
        self._job = job
        self._progress = progress
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._interval = max(polling_interval, POLL_FLOOR_SECONDS)

    def finished(self) -> bool:
        """True once the job ended; raises ``TimeoutError`` past the deadline."""
        self._progress.update(self._job.status, self._job.metrics)
        if self._job.is_finished:
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise TimeoutError(f"job {self._job.id} did not finish within {self._timeout} seconds")
        return False

    def pause(self) -> float:
        if self._deadline is None:
            return self._interval
        return max(min(self._interval, self._deadline - time.monotonic()), 0.0)

    def failed(self) -> bool:
        return self._job.status != "succeeded"


class ReadyWait:
    """``deployment.wait_ready()``: ready, failed (raises) or past ``timeout`` (raises)."""

    PAUSE = 0.2

    def __init__(self, deployment: DeploymentView, timeout: float) -> None:
        self._deployment = deployment
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    def ready(self) -> bool:
        d = self._deployment
        if d.is_ready:
            return True
        if d.status == "failed":
            raise MLPlatformError(
                f"deployment {d.name} failed: {d.status_message or 'no reason given'}"
            )
        if time.monotonic() >= self._deadline:
            raise TimeoutError(
                f"deployment {d.name} not ready within {self._timeout} s (status {d.status})"
            )
        return False


class ArtifactDownload:
    """A version's artifact streamed into ``.<name>.partial`` beside its target, checked
    against the server's ``x-content-sha256`` and renamed into place only when whole."""

    def __init__(
        self, name: str, version: int | str, dest: str | Path, response: httpx.Response
    ) -> None:
        self._what = f"{name} v{version}"
        self._response = response
        self.target = resolve_dest(dest, artifact_filename(response))
        self.partial = self.target.with_name(f".{self.target.name}.partial")
        self._digest = hashlib.sha256()

    def chunk(self, data: bytes) -> bytes:
        self._digest.update(data)
        return data

    def finish(self) -> Path:
        expected = self._response.headers.get("x-content-sha256")
        if expected and expected != self._digest.hexdigest():
            self.partial.unlink(missing_ok=True)
            raise MLPlatformError(f"download of {self._what} is corrupt (sha256 mismatch)")
        self.partial.replace(self.target)
        return self.target


def artifact_request(routes: Routes, name: str, version: int | str) -> Req:
    return Req("GET", f"{routes.model_version(name, version)}/artifact", stream=True)


@dataclass
class TrainCall:
    """The arguments of ``train()`` (both forms of the seed), checked and turned into a body."""

    name: str | None
    framework: str | None
    docker_image: str | None
    data_path: str | None
    output_path: str | None
    gpu_count: int
    model_type: str | None
    data: str | None
    hyperparameters: Mapping[str, Any] | None
    env_vars: Mapping[str, str] | None
    tags: Mapping[str, str] | None
    entrypoint: str
    source_dir: str | Path | None
    source: str | None
    cpu_cores: int | None
    memory_gb: int | None
    max_runtime_seconds: int | None
    job_max_retries: int | None
    tenant_id: str | None

    def __post_init__(self) -> None:
        if self.data is not None and self.data_path is not None and self.data != self.data_path:
            raise ValueError("give data= or data_path=, not both")
        if self.source is not None and self.source_dir is not None:
            raise ValueError("give source= or source_dir=, not both")

    @property
    def remote_data(self) -> str | None:
        return self.data if self.data is not None else self.data_path

    def local_data(self) -> Path | None:
        """The local file or directory to upload first, if ``data``/``data_path`` names one."""
        return local_data(self.remote_data)

    def request(self, routes: Routes, source: str | None, data_path: str | None) -> Req:
        name = self.name or default_job_name(self.entrypoint, self.source_dir)
        spec = build_training_spec(
            name=name,
            framework=self.framework or self.model_type or DEFAULT_FRAMEWORK,
            docker_image=self.docker_image or DEFAULT_IMAGE,
            entrypoint=self.entrypoint,
            data_path=data_path,
            output_path=self.output_path or f"models/{name}",
            gpu_count=self.gpu_count,
            hyperparameters=self.hyperparameters,
            env_vars=self.env_vars,
            tags=self.tags,
            source=source,
            cpu_cores=self.cpu_cores,
            memory_gb=self.memory_gb,
            max_runtime_seconds=self.max_runtime_seconds,
            job_max_retries=self.job_max_retries,
            tenant_id=self.tenant_id,
        )
        return Req("POST", routes.jobs, json=spec)


def log_lines(response: httpx.Response) -> list[LogLine]:
    """The lines of a (non-streamed) logs answer."""
    body = BaseClient._json(response)
    return BaseClient._parse_items(LogLine, body, "logs", response.headers.get("x-request-id"))
