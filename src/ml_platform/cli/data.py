"""``mlp data``: your tenant's data area (what a job's ``--data data/...`` names)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ml_platform.cli._common import (
    Output,
    OutputOption,
    console,
    emit_json,
    new_app,
    show_table,
)
from ml_platform.cli._sdk import connect

app = new_app(help="Your data area: upload, list, delete.")


@app.command("upload")
def upload(
    ctx: typer.Context,
    local: Annotated[Path, typer.Argument(exists=True, help="A local file or directory")],
    to: Annotated[
        str | None, typer.Option("--to", help="Path in your data area (default: the file's name)")
    ] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Upload a file (or every file of a directory); prints the data/... path jobs take."""
    with connect(ctx) as client:
        uploaded = client.data.upload(local, to)
    if output is Output.JSON:
        emit_json(uploaded.raw)
    else:
        console.print(uploaded.path, markup=False, highlight=False)


@app.command("list")
def list_files(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only paths under this")] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """The files in your data area."""
    with connect(ctx) as client:
        files = list(client.data.list(prefix))
    if output is Output.JSON:
        emit_json([f.raw for f in files])
        return
    show_table(
        None,
        ["path", "size", "modified", "sha256"],
        [[f.path, f.size_bytes, f.modified_at, f.sha256[:12] or None] for f in files],
        keep=("modified",),
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="data/... path (as list shows it)")],
    output: OutputOption = Output.TEXT,
) -> None:
    """Delete a file from your data area."""
    with connect(ctx) as client:
        client.data.delete(path)
    if output is Output.JSON:
        emit_json({"path": path, "deleted": True})
    else:
        console.print(f"deleted {path}", markup=False, highlight=False)
