"""Where the SDK finds the platform: arguments, then the environment, then the credentials file.

The credentials file is the one the server writes on its first start (and ``mlp login``):
``$ML_PLATFORM_CONFIG_DIR/credentials.json`` (default ``~/.config/ml-platform/``), with
``base_url``, ``api_key``, ``tenant`` and, optionally, ``grpc_target``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ml_platform.client._errors import MLPlatformError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_GRPC_PORT = 50051
API_VERSIONS = ("v1", "v2")
DEFAULT_API_VERSION = "v1"
"""v1 until the seed's whole surface has v2 routes (jobs, models and deployments do)."""


def config_dir() -> Path:
    configured = os.environ.get("ML_PLATFORM_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".config" / "ml-platform"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def read_credentials(path: Path | None = None) -> dict[str, Any]:
    """The credentials file's content, ``{}`` when there is none."""
    target = path or credentials_path()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning("cannot read %s: %s", target, exc.strerror)
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MLPlatformError(f"{target} is not valid JSON ({exc}); fix or delete it") from exc
    return data if isinstance(data, dict) else {}


def grpc_target_for(base_url: str) -> str:
    host = urlsplit(base_url).hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{DEFAULT_GRPC_PORT}"


@dataclass(frozen=True)
class Connection:
    base_url: str
    api_key: str | None
    grpc_target: str


def resolve_connection(
    base_url: str | None, api_key: str | None, grpc_target: str | None
) -> Connection:
    """Each value from the argument, else ``ML_PLATFORM_*``, else the credentials file.

    The file's key and gRPC target are only used for the file's own ``base_url`` (a key is
    never sent to a server it was not issued by).
    """
    stored = read_credentials()
    stored_url = str(stored.get("base_url") or "").rstrip("/") or None
    url = (base_url or os.environ.get("ML_PLATFORM_URL") or stored_url or DEFAULT_BASE_URL).rstrip(
        "/"
    )
    same_server = stored_url is not None and stored_url == url

    def from_file(key: str) -> str | None:
        value = stored.get(key) if same_server else None
        return str(value) if value else None

    key = api_key or os.environ.get("ML_PLATFORM_API_KEY") or from_file("api_key")
    target = (
        grpc_target
        or os.environ.get("ML_PLATFORM_GRPC_TARGET")
        or from_file("grpc_target")
        or grpc_target_for(url)
    )
    return Connection(base_url=url, api_key=key, grpc_target=target)


def resolve_api_version(api_version: str | None) -> str:
    """The REST API version to use: the argument, else ``ML_PLATFORM_API_VERSION``, else v1."""
    from_env = os.environ.get("ML_PLATFORM_API_VERSION")
    given = api_version if api_version is not None else from_env
    version = (given or DEFAULT_API_VERSION).strip().lower()
    if version not in API_VERSIONS:
        source = "api_version" if api_version is not None else "ML_PLATFORM_API_VERSION"
        raise ValueError(
            f"{source} must be one of {', '.join(API_VERSIONS)} (got {(given or '')[:32]!r})"
        )
    return version
