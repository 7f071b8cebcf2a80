"""``mlp login`` (check a URL + key, store them where the SDK looks) and ``mlp whoami``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ml_platform.cli._common import Output, OutputOption, console, emit_json, show_fields
from ml_platform.cli._sdk import (
    Connection,
    connect,
    current_connection,
    handle_errors,
    set_connection,
)

if TYPE_CHECKING:
    from ml_platform.client import Client


def identify(client: Client) -> dict[str, Any]:
    """Who the key belongs to: ``GET /v1/me``; on a server without that route, any
    authenticated call proves the key (a one-item job list) and the identity stays unknown."""
    from ml_platform.client import APIStatusError, ResourceNotFoundError

    try:
        me = client.me()
    except ResourceNotFoundError:
        pass
    except APIStatusError as exc:
        if exc.status_code != 405:
            raise
    else:
        return {"base_url": client.base_url, **me.model_dump(mode="json")}
    client.jobs.list(page_size=1).to_list(1)
    return {"base_url": client.base_url, "principal": None, "tenant_name": None}


def write_credentials(path: Path, document: dict[str, Any]) -> None:
    """Atomically, mode 0600 from the first byte (the key is a secret), directory 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def login(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option("--url", help="Platform URL")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key (asked for when not given)")
    ] = None,
    grpc_target: Annotated[
        str | None, typer.Option("--grpc-target", help="host:port of the serving plane")
    ] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Check a URL and API key against the platform and store them for the SDK and CLI."""
    from ml_platform.client._config import credentials_path

    given = current_connection(ctx)
    url = url or given.url or os.environ.get("ML_PLATFORM_URL")
    if not url:
        raise typer.BadParameter("give the platform's URL", param_hint="--url")
    api_key = api_key or given.api_key or os.environ.get("ML_PLATFORM_API_KEY")
    if not api_key:
        api_key = typer.prompt("API key", hide_input=True)
    grpc_target = grpc_target or given.grpc_target
    set_connection(
        ctx, Connection(url=url, api_key=api_key, grpc_target=grpc_target, debug=given.debug)
    )
    with connect(ctx, max_retries=0) as client:
        who = identify(client)
        document: dict[str, Any] = {"base_url": client.base_url, "api_key": api_key}
        if who.get("tenant_name"):
            document["tenant"] = who["tenant_name"]
        if grpc_target:
            document["grpc_target"] = grpc_target
    path = credentials_path()
    with handle_errors(ctx):
        write_credentials(path, document)
    if output is Output.JSON:
        emit_json({**who, "credentials_file": str(path)})
        return
    identity = (
        f" as {who['principal']} (tenant {who['tenant_name']})" if who.get("principal") else ""
    )
    console.print(
        f"logged in to {who['base_url']}{identity}; credentials in {path}",
        markup=False,
        highlight=False,
    )


def whoami(ctx: typer.Context, output: OutputOption = Output.TEXT) -> None:
    """Which platform and identity the CLI uses (options, then env, then credentials)."""
    with connect(ctx) as client:
        who = identify(client)
    if output is Output.JSON:
        emit_json(who)
        return
    show_fields([(k, v) for k, v in who.items()])
