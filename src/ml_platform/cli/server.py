"""``mlp server``: the whole platform in one process on its embedded default."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ml_platform.cli._common import DatabaseUrlOption, DataDirOption, console, fail, load_settings


def server(
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    host: Annotated[str | None, typer.Option("--host", help="REST bind address")] = None,
    port: Annotated[int | None, typer.Option("--port", help="REST port (0: any free port)")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Start the platform: REST API (and, when present, scheduler and serving plane)."""
    import uvicorn

    from ml_platform.server.app import build_context, create_app
    from ml_platform.server.bootstrap import ensure_default_tenant

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(data_dir=data_dir, database_url=database_url, host=host, port=port)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    context = build_context(settings)
    try:
        context.db.upgrade()
    except Exception as exc:
        fail(f"cannot migrate the store: {exc}")
    base_url = f"http://{settings.host}:{settings.port}"
    created = ensure_default_tenant(context.auth, settings.credentials_file, base_url)
    if created is not None:
        console.rule("[bold green]ml-platform is set up")
        console.print(f"tenant: [bold]{created.tenant}[/]")
        console.print("API key (shown once; also saved to the credentials file):")
        console.print(created.api_key, markup=False, highlight=False)
        console.print(f"credentials file: {created.credentials_file}")
        console.rule()
    if settings.uses_dev_secret:
        console.print(
            "[bold yellow]WARNING:[/] using the built-in development JWT secret; "
            "set ML_PLATFORM_JWT_SECRET before exposing this server."
        )
    app = create_app(settings, context)
    console.print(f"REST API on {base_url}  (docs: {base_url}/docs)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False)
