"""First start: a default tenant and an API key, written to the user's credentials file."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ml_platform.auth.service import AuthService
from ml_platform.core.errors import NotFound

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class BootstrapResult:
    api_key: str
    tenant: str
    credentials_file: Path


LOOPBACK_HOSTS = {"", "0.0.0.0", "::", "[::]"}  # wildcard binds: clients dial loopback


def local_grpc_target(host: str, port: int) -> str:
    """``host:port`` a client on this machine dials (a wildcard bind is reached on loopback)."""
    if host in LOOPBACK_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}"


def write_credentials(
    path: Path, *, base_url: str, api_key: str, tenant: str, grpc_target: str | None = None
) -> None:
    """Write the credentials atomically with mode 0600 (never world-readable, even briefly).

    ``grpc_target`` (the key the SDK's ``Client()`` reads) lets it predict with no arguments.
    """
    content = {"base_url": base_url, "api_key": api_key, "tenant": tenant}
    if grpc_target:
        content["grpc_target"] = grpc_target
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def ensure_default_tenant(
    auth: AuthService, credentials_file: Path, base_url: str, grpc_target: str | None = None
) -> BootstrapResult | None:
    """Create the default tenant and key when the store has no tenant at all.

    Returns the new key (to print once) or None when the platform was already set up.
    """
    if auth.tenants():
        return None
    try:
        auth.tenant(DEFAULT_TENANT)
    except NotFound:
        auth.create_tenant(DEFAULT_TENANT)
    created = auth.create_api_key(DEFAULT_TENANT, "default-admin")
    write_credentials(
        credentials_file,
        base_url=base_url,
        api_key=created.plaintext,
        tenant=DEFAULT_TENANT,
        grpc_target=grpc_target,
    )
    return BootstrapResult(
        api_key=created.plaintext, tenant=DEFAULT_TENANT, credentials_file=credentials_file
    )
