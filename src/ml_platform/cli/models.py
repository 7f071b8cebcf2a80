"""``mlp models``: the registry (models, versions, aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ml_platform.cli._common import (
    Output,
    OutputOption,
    console,
    emit_json,
    new_app,
    show_fields,
    show_table,
)
from ml_platform.cli._sdk import connect

if TYPE_CHECKING:
    from ml_platform.client import ModelVersion

app = new_app(help="Registered models: list, get, versions, register, upload, alias.")

ModelArgument = Annotated[str, typer.Argument(help="Model name")]


def _print_version(version: ModelVersion, output: Output, verb: str) -> None:
    if output is Output.JSON:
        emit_json(version.raw)
        return
    console.print(
        f"{verb} {version.model} version {version.version} ({version.format or version.framework})",
        markup=False,
        highlight=False,
    )


def _source(version: ModelVersion) -> str | None:
    """Where a version came from, in a few words: ``job job_...`` or ``upload model.joblib``."""
    source = version.source
    if source.get("job_id"):
        return f"job {source['job_id']}"
    if source.get("filename"):
        return f"upload {source['filename']}"
    return str(source.get("kind") or "") or None


@app.command("list")
def list_models(ctx: typer.Context, output: OutputOption = Output.TEXT) -> None:
    """Every model of your tenant."""
    with connect(ctx) as client:
        found = list(client.models.list())
    if output is Output.JSON:
        emit_json([m.raw for m in found])
        return
    show_table(
        None,
        ["name", "framework", "latest", "aliases", "updated"],
        [[m.name, m.framework, m.latest_version, m.aliases, m.updated_at] for m in found],
    )


@app.command("get")
def get_model(ctx: typer.Context, name: ModelArgument, output: OutputOption = Output.TEXT) -> None:
    """One model: framework, latest version, aliases."""
    with connect(ctx) as client:
        model = client.models.get(name)
    if output is Output.JSON:
        emit_json(model.raw)
        return
    show_fields(
        [
            ("name", model.name),
            ("id", model.id),
            ("framework", model.framework),
            ("description", model.description),
            ("latest_version", model.latest_version),
            ("aliases", model.aliases),
            ("tags", model.tags),
            ("created_at", model.created_at),
            ("updated_at", model.updated_at),
        ]
    )


@app.command("versions")
def versions(ctx: typer.Context, name: ModelArgument, output: OutputOption = Output.TEXT) -> None:
    """A model's versions, with their format, size, aliases and source."""
    with connect(ctx) as client:
        found = list(client.models.versions(name))
    if output is Output.JSON:
        emit_json([v.raw for v in found])
        return
    show_table(
        f"{name}",
        ["version", "format", "size", "aliases", "inputs", "source", "created"],
        [
            [
                v.version,
                v.format,
                v.size_bytes,
                v.aliases,
                v.input_features,
                _source(v),
                v.created_at,
            ]
            for v in found
        ],
    )


@app.command("register")
def register(
    ctx: typer.Context,
    name: ModelArgument,
    job: Annotated[str, typer.Option("--job", help="A succeeded job whose output to register")],
    output: OutputOption = Output.TEXT,
) -> None:
    """A new version from a succeeded job's output (the model is created if absent)."""
    with connect(ctx) as client:
        version = client.models.register(name, job)
    _print_version(version, output, "registered")


@app.command("upload")
def upload(
    ctx: typer.Context,
    name: ModelArgument,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Model file (joblib, skops, onnx)")
    ],
    framework: Annotated[str, typer.Option("--framework", help="sklearn, xgboost, onnx, ...")] = (
        "sklearn"
    ),
    output: OutputOption = Output.TEXT,
) -> None:
    """A new version from a local model file (the model is created if absent)."""
    with connect(ctx) as client:
        version = client.models.upload(name, file, framework=framework)
    _print_version(version, output, "uploaded")


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: ModelArgument,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production")],
    version: Annotated[int, typer.Argument(help="Version the alias points at")],
    output: OutputOption = Output.TEXT,
) -> None:
    """Point an alias of a model at a version."""
    with connect(ctx) as client:
        result = client.models.set_alias(name, alias_name, version)
    if output is Output.JSON:
        emit_json(result.raw)
    else:
        console.print(
            f"{name}@{result.alias} -> version {result.version}", markup=False, highlight=False
        )


@app.command("download")
def download(
    ctx: typer.Context,
    name: ModelArgument,
    version: Annotated[str, typer.Argument(help="Version number or alias")] = "latest",
    dest: Annotated[
        Path, typer.Option("--dest", help="File, or directory to put the artifact in")
    ] = Path(),
    output: OutputOption = Output.TEXT,
) -> None:
    """Download a version's artifact (checked against its sha256)."""
    with connect(ctx) as client:
        target = client.models.download(name, version, dest)
    if output is Output.JSON:
        emit_json({"model": name, "version": version, "path": str(target)})
    else:
        console.print(str(target), markup=False, highlight=False)
