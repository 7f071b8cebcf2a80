"""``mlp server``: the whole platform in one process on its embedded default."""

from __future__ import annotations

from typing import Annotated

import typer

from ml_platform import startup_heap
from ml_platform.cli._common import (
    DatabaseUrlOption,
    DataDirOption,
    console,
    fail,
    load_settings,
    open_platform,
    setup_logging,
)


def server(
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    host: Annotated[str | None, typer.Option("--host", help="REST bind address")] = None,
    port: Annotated[int | None, typer.Option("--port", help="REST port (0: any free port)")] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="gRPC data-plane port (default 50051)")
    ] = None,
    serving_rest_port: Annotated[
        int | None,
        typer.Option(
            "--serving-rest-port", help="Open Inference Protocol REST port (default 8081)"
        ),
    ] = None,
    serving: Annotated[
        bool, typer.Option("--serving/--no-serving", help="Run the serving plane in this process")
    ] = True,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Start the platform: REST API, job scheduler and executors, and the serving plane."""
    import uvicorn

    from ml_platform import logs_format
    from ml_platform.server.app import create_app
    from ml_platform.server.bootstrap import ensure_default_tenant, local_grpc_target
    from ml_platform.store.db import ensure_private_dir

    setup_logging(log_level)
    settings = load_settings(
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        port=port,
        grpc_port=grpc_port,
        serving_rest_port=serving_rest_port,
    )
    logs_format.install(settings.log_format)  # from here on: JSON lines when configured
    # 0700 (0711 with a job user): it holds the database and keys
    ensure_private_dir(settings.data_dir, traversable=settings.job_user is not None)
    context = open_platform(settings)
    base_url = f"http://{settings.host}:{settings.port}"
    grpc_target = local_grpc_target(settings.grpc_host, settings.grpc_port)
    created = ensure_default_tenant(
        context.auth, settings.credentials_file, base_url, grpc_target if serving else None
    )
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
    plane = None
    if serving:
        from ml_platform.server.serving_bridge import build_serving

        plane = build_serving(context)
        try:
            plane.start()
        except Exception as exc:
            fail(
                f"cannot start the serving plane: {exc.__cause__ or exc} "
                "(choose other ports with --grpc-port / "
                "--serving-rest-port, or --no-serving)"
            )
        console.print(
            f"gRPC data plane on {plane.grpc_target}  (Open Inference REST: {plane.rest_url})"
        )
    # the serving plane stops with the app: on SIGTERM uvicorn re-raises the signal once the
    # app has shut down, so nothing after uvicorn.run would run (its workers were orphaned)
    app = create_app(settings, context, on_shutdown=[plane.stop] if plane is not None else [])
    console.print(f"REST API on {base_url}  (docs: {base_url}/docs)")
    startup_heap.freeze()
    try:
        # log_config=None: uvicorn's own lines go through the root handlers setup_logging made
        # (and create_app formatted: request ids, JSON with ML_PLATFORM_LOG_FORMAT=json)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=False,
            log_config=None,
        )
    finally:
        if plane is not None:
            plane.stop()
