"""I/O-free pieces shared by both clients: job specs, defaults, paths, bodies, file naming."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ml_platform.client._errors import APIStatusError, MLPlatformError, status_error_class
from ml_platform.client._packaging import ALWAYS_SKIPPED_DIRS

__all__ = [
    "DEFAULT_FRAMEWORK",
    "DEFAULT_IMAGE",
    "LOG_TAIL_MAX",
    "SSE_READ_TIMEOUT",
    "alias_body",
    "artifact_filename",
    "build_training_spec",
    "data_files",
    "data_path_url",
    "data_remote_path",
    "default_job_name",
    "deployment_body",
    "end_of_stream_error",
    "existing_file",
    "local_data",
    "normalize_entrypoint",
    "path_segment",
    "resolve_dest",
    "rollout_body",
    "strip_data_prefix",
]

LOG_TAIL_MAX = 10_000  # the server's largest `tail`
SSE_READ_TIMEOUT = 60.0  # > the server's 15 s heartbeats: a silent minute is a dead stream
DEFAULT_IMAGE = "python:3.11"
DEFAULT_FRAMEWORK = "sklearn"
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def path_segment(value: str | int) -> str:
    """One URL path segment (ids and names are opaque: quote anything unusual)."""
    return quote(str(value), safe="")


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
