"""``mlp train``: submit a training job (flags mirror ``client.train``), optionally follow it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from ml_platform.cli._common import (
    Output,
    OutputOption,
    console,
    emit_json,
    err_console,
    parse_pairs,
)
from ml_platform.cli._sdk import connect
from ml_platform.cli.jobs import follow_job

_MEMORY = re.compile(r"^\s*(\d+)\s*(g|gi|gb)?\s*$", re.IGNORECASE)


def parse_memory(value: str | None) -> int | None:
    """``8``, ``8G``, ``8Gi``, ``8GB`` -> 8 (the API counts memory in whole GB)."""
    if value is None:
        return None
    match = _MEMORY.match(value)
    if match is None or int(match.group(1)) < 1:
        raise typer.BadParameter(
            f"expected whole gigabytes like 2, 2G or 2Gi, got {value!r}", param_hint="--memory"
        )
    return int(match.group(1))


def parse_params(values: list[str] | None) -> dict[str, Any]:
    """``--param k=v``: v as JSON when it parses (``0.1``, ``10``, ``true``), else text."""
    params: dict[str, Any] = {}
    for value in values or []:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--param")
        try:
            params[key.strip()] = json.loads(raw)
        except ValueError:
            params[key.strip()] = raw
    return params


def train(
    ctx: typer.Context,
    entrypoint: Annotated[
        str, typer.Option("--entrypoint", help="Script or command to run, e.g. train.py")
    ] = "train.py",
    source_dir: Annotated[
        Path | None,
        typer.Option(
            "--source-dir",
            exists=True,
            file_okay=False,
            help="Local directory to pack and upload as the job's code",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Job name (default: from the source dir)")
    ] = None,
    framework: Annotated[
        str | None, typer.Option("--framework", help="sklearn, xgboost, pytorch, ...")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", "--docker-image", help="Container image")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="A local file or directory (uploaded to your data area) or a data/... path",
        ),
    ] = None,
    output_path: Annotated[
        str | None,
        typer.Option("--output-path", help="Where the model goes (default models/<name>)"),
    ] = None,
    cpu: Annotated[int | None, typer.Option("--cpu", min=1, help="CPU cores")] = None,
    memory: Annotated[
        str | None, typer.Option("--memory", help="Memory in GB: 2, 2G or 2Gi")
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=0, help="GPUs")] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Hyperparameter k=v, value parsed as JSON (repeatable)"),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="Environment variable K=V, V may hold commas (repeatable)"),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag k=v or k=v,k2=v2 (repeatable)")
    ] = None,
    max_runtime: Annotated[
        int | None, typer.Option("--max-runtime", min=1, help="Seconds before the job is stopped")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Stream the logs until the job ends; exit 0 if it succeeded, 1 otherwise",
        ),
    ] = False,
    output: OutputOption = Output.TEXT,
) -> None:
    """Submit a training job. Prints its id, or with --follow its logs and outcome.

    \b
    Example (the example project, a local CSV uploaded to your data area):
      mlp train --source-dir examples/sklearn_classifier --data train.csv \\
          --param epochs=5 --cpu 1 --memory 2 --follow
    """
    memory_gb = parse_memory(memory)
    hyperparameters = parse_params(param)
    env_vars = parse_pairs(env, "--env")
    tags = parse_pairs(tag, "--tag", commas=True)
    with connect(ctx) as client:
        job = client.train(
            name=name,
            framework=framework,
            docker_image=image,
            output_path=output_path,
            gpu_count=gpus,
            data=data,
            hyperparameters=hyperparameters or None,
            env_vars=env_vars or None,
            tags=tags or None,
            entrypoint=entrypoint,
            source_dir=source_dir,
            cpu_cores=cpu,
            memory_gb=memory_gb,
            max_runtime_seconds=max_runtime,
        )
        if not follow:
            if output is Output.JSON:
                emit_json(job.raw)
            else:
                console.print(job.id, markup=False, highlight=False)
            return
        waiting = f": pending, {job.pending_reason}" if job.pending_reason else ""
        err_console.print(
            f"submitted job {job.id} ({job.name}){waiting}", markup=False, highlight=False
        )
        code = follow_job(client, job, logs_to_stderr=output is Output.JSON)
        if output is Output.JSON:
            emit_json(job.raw)
    raise typer.Exit(code)
