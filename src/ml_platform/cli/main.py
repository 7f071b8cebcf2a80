"""The ``mlp`` entry point: one Typer app, one module per noun."""

from __future__ import annotations

from typing import Annotated

import typer

from ml_platform.cli import (
    admin,
    data,
    db,
    deployments,
    jobs,
    login,
    models,
    predict,
    quotas,
    train,
)
from ml_platform.cli._common import new_app
from ml_platform.cli._sdk import EXIT_CODES_HELP, Connection, set_connection
from ml_platform.cli.serve import serve
from ml_platform.cli.server import server

app = new_app(
    name="mlp",
    help="ml-platform: train, register and serve models.",
    epilog=EXIT_CODES_HELP,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Platform URL (else ML_PLATFORM_URL, else the credentials file of `mlp login`)",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key (else ML_PLATFORM_API_KEY, else credentials)"),
    ] = None,
    grpc_target: Annotated[
        str | None,
        typer.Option(
            "--grpc-target",
            help="host:port of the serving plane for predict (else ML_PLATFORM_GRPC_TARGET, "
            "else the URL's host:50051)",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors")] = False,
) -> None:
    """ml-platform: train, register and serve models."""
    set_connection(ctx, Connection(url=url, api_key=api_key, grpc_target=grpc_target, debug=debug))


app.command("train")(train.train)
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.command("deploy")(deployments.deploy)
app.add_typer(deployments.app, name="deployments")
app.command("predict")(predict.predict)
app.add_typer(data.app, name="data")
app.command("login")(login.login)
app.command("whoami")(login.whoami)
app.command("quotas")(quotas.quotas)
app.add_typer(admin.app, name="admin")
app.add_typer(db.app, name="db")
app.command("server")(server)
app.command("serve")(serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
