"""``mlp serve``: only the serving plane, reading deployments from the shared store.

For installs that run the control plane (``mlp server --no-serving``) and the data plane on
different machines or in different processes, all pointing at one PostgreSQL database.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ml_platform.cli._common import (
    DatabaseUrlOption,
    DataDirOption,
    console,
    fail,
    load_settings,
    open_platform,
    setup_logging,
)


def serve(
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    grpc_host: Annotated[str | None, typer.Option("--grpc-host", help="Bind address")] = None,
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", help="gRPC port")] = None,
    serving_rest_port: Annotated[
        int | None, typer.Option("--serving-rest-port", help="Open Inference Protocol REST port")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes sharing the ports")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the gRPC data plane (seed ModelServing + KServe V2) and V2 REST until stopped."""
    from ml_platform.server.serving_bridge import bridge_seams
    from ml_platform.serving import PortUnavailable, run_serving

    setup_logging(log_level)
    settings = load_settings(
        data_dir=data_dir,
        database_url=database_url,
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        serving_rest_port=serving_rest_port,
        serving_workers=workers,
    )
    context = open_platform(settings)
    source, sink, authenticator = bridge_seams(context)
    console.print(
        f"serving on {settings.grpc_host}:{settings.grpc_port} (gRPC) and "
        f"{settings.grpc_host}:{settings.serving_rest_port} (V2 REST), "
        f"{settings.serving_workers} workers"
    )
    try:
        run_serving(settings, source, sink, authenticator)
    except PortUnavailable as exc:
        fail(
            f"cannot start the serving plane: {exc} "
            "(choose other ports with --grpc-port / --serving-rest-port)"
        )
