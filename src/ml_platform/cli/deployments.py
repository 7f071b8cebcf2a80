"""``mlp deploy`` and ``mlp deployments``: serve model versions, roll them, delete them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ml_platform.cli._common import (
    Output,
    OutputOption,
    console,
    emit_json,
    err_console,
    new_app,
    show_fields,
    show_table,
)
from ml_platform.cli._sdk import connect

if TYPE_CHECKING:
    from ml_platform.client import Deployment

app = new_app(help="Deployments: list, get, rollout, delete.")

DeploymentArgument = Annotated[str, typer.Argument(help="Deployment name")]
VersionOption = Annotated[int | None, typer.Option("--version", min=1, help="Model version")]
AliasOption = Annotated[
    str | None, typer.Option("--alias", help="Model alias to follow, e.g. production")
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the target version serves")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for readiness")
]


def _print(deployment: Deployment, output: Output) -> None:
    if output is Output.JSON:
        emit_json(deployment.raw)
        return
    show_fields(
        [
            ("name", deployment.name),
            ("model", deployment.model),
            ("version", deployment.version),
            ("alias", deployment.alias),
            ("status", deployment.status),
            ("status_message", deployment.status_message or None),
            ("target_version", deployment.target_version),
            ("serving_version", deployment.serving_version),
            ("created_at", deployment.data.created_at),
            ("updated_at", deployment.data.updated_at),
        ]
    )


def _settle(deployment: Deployment, wait: bool, timeout: float) -> Deployment:
    if wait:
        err_console.print(f"waiting for {deployment.name} to serve ...", markup=False)
        deployment.wait_ready(timeout=timeout)
    return deployment


def deploy(
    ctx: typer.Context,
    name: DeploymentArgument,
    model: Annotated[
        str | None, typer.Option("--model", help="Model to serve (default: the deployment name)")
    ] = None,
    version: VersionOption = None,
    alias: AliasOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 120.0,
    output: OutputOption = Output.TEXT,
) -> None:
    """Deploy a model version (or the version an alias names) behind gRPC predict."""
    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both")
    with connect(ctx) as client:
        deployment = _settle(
            client.deploy(name, model, version=version, alias=alias), wait, timeout
        )
    _print(deployment, output)


@app.command("list")
def list_deployments(ctx: typer.Context, output: OutputOption = Output.TEXT) -> None:
    """Every deployment of your tenant."""
    with connect(ctx) as client:
        found = list(client.deployments.list())
    if output is Output.JSON:
        emit_json([d.raw for d in found])
        return
    show_table(
        None,
        ["name", "model", "version", "alias", "status", "serving"],
        [[d.name, d.model, d.version, d.alias, d.status, d.serving_version] for d in found],
    )


@app.command("get")
def get_deployment(
    ctx: typer.Context, name: DeploymentArgument, output: OutputOption = Output.TEXT
) -> None:
    """One deployment: target and serving version, status."""
    with connect(ctx) as client:
        deployment = client.deployments.get(name)
    _print(deployment, output)


@app.command("rollout")
def rollout(
    ctx: typer.Context,
    name: DeploymentArgument,
    version: VersionOption = None,
    alias: AliasOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 120.0,
    output: OutputOption = Output.TEXT,
) -> None:
    """Roll a deployment to another version or alias (exactly one of them)."""
    if (version is None) == (alias is None):
        raise typer.BadParameter("give exactly one of --version or --alias")
    with connect(ctx) as client:
        deployment = _settle(
            client.deployments.rollout(name, version=version, alias=alias), wait, timeout
        )
    _print(deployment, output)


@app.command("delete")
def delete(
    ctx: typer.Context, name: DeploymentArgument, output: OutputOption = Output.TEXT
) -> None:
    """Stop serving and delete a deployment."""
    with connect(ctx) as client:
        client.deployments.delete(name)
    if output is Output.JSON:
        emit_json({"name": name, "deleted": True})
    else:
        console.print(f"deleted deployment {name}", markup=False, highlight=False)
