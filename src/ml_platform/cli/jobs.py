"""``mlp jobs``: list, inspect, follow and cancel training jobs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from ml_platform.cli._common import (
    Output,
    OutputOption,
    console,
    emit_json,
    err_console,
    new_app,
    parse_pairs,
    show_fields,
    show_table,
)
from ml_platform.cli._sdk import EXIT_FAILED, EXIT_OK, connect

if TYPE_CHECKING:
    from ml_platform.client import Client, TrainingJob

app = new_app(help="Training jobs: list, get, logs, metrics, cancel.")

JobIdArgument = Annotated[str, typer.Argument(help="The job id (job_...)")]


def show_job(job: TrainingJob) -> None:
    data = job.data
    show_fields(
        [
            ("id", job.id),
            ("name", job.name),
            ("status", job.status),
            ("framework", job.framework),
            ("image", data.spec.docker_image),
            ("entrypoint", data.spec.entrypoint),
            ("data_path", data.spec.data_path),
            ("output_path", data.spec.output_path),
            ("compute", data.spec.compute),
            ("hyperparameters", job.hyperparameters),
            ("tags", job.tags),
            ("metrics", job.metrics),
            ("pending_reason", job.pending_reason),
            ("error", job.error_message),
            ("created_at", job.created_at),
            ("started_at", job.started_at),
            ("completed_at", job.completed_at),
        ]
    )


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="Only jobs in this state")] = None,
    framework: Annotated[
        str | None, typer.Option("--framework", help="Only this framework")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only jobs with this tag, k=v (repeatable)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many jobs")] = 20,
    output: OutputOption = Output.TEXT,
) -> None:
    """The newest jobs of your tenant."""
    tags = parse_pairs(tag, "--tag", commas=True) or None
    with connect(ctx) as client:
        found = client.jobs.list(
            status=status, framework=framework, tags=tags, page_size=min(limit, 500)
        ).to_list(limit)
    if output is Output.JSON:
        emit_json([job.raw for job in found])
        return
    show_table(
        None,
        ["id", "name", "status", "framework", "created", "metrics"],
        [[j.id, j.name, j.status, j.framework, j.created_at, j.metrics] for j in found],
    )


@app.command("get")
def get_job(ctx: typer.Context, job_id: JobIdArgument, output: OutputOption = Output.TEXT) -> None:
    """One job: spec, status, metrics."""
    with connect(ctx) as client:
        job = client.jobs.get(job_id)
    if output is Output.JSON:
        emit_json(job.raw)
    else:
        show_job(job)


def print_log_line(text: str, *, to_stderr: bool = False) -> None:
    (err_console if to_stderr else console).print(
        text, markup=False, highlight=False, soft_wrap=True
    )


@app.command("logs")
def logs(
    ctx: typer.Context,
    job_id: JobIdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new lines until the job ends")
    ] = False,
    tail: Annotated[int | None, typer.Option("--tail", min=0, help="Only the last N lines")] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """A job's log (stdout and stderr of its process)."""
    with connect(ctx) as client:
        lines = client.jobs.logs(job_id, follow=follow, tail=tail)
        if output is Output.JSON:
            emit_json([line.raw for line in lines])
            return
        for line in lines:
            print_log_line(line.line)


@app.command("metrics")
def metrics(
    ctx: typer.Context,
    job_id: JobIdArgument,
    history: Annotated[
        bool, typer.Option("--history", help="Every logged point, not only the latest values")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Only this metric")] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """The latest value of each metric a job logged (or their history)."""
    with connect(ctx) as client:
        if history:
            points = list(client.jobs.metrics_history(job_id, name=name))
            if output is Output.JSON:
                emit_json([p.raw for p in points])
            else:
                show_table(
                    None,
                    ["name", "step", "value", "timestamp"],
                    [[p.name, p.step, p.value, p.timestamp] for p in points],
                )
            return
        latest = client.jobs.metrics(job_id)
    if name is not None:
        latest = {k: v for k, v in latest.items() if k == name}
    if output is Output.JSON:
        emit_json(latest)
    else:
        show_table(None, ["name", "value"], [[k, v] for k, v in sorted(latest.items())])


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobIdArgument, output: OutputOption = Output.TEXT) -> None:
    """Cancel a pending or running job (a finished one is a conflict, exit 5)."""
    with connect(ctx) as client:
        client.jobs.cancel(job_id)
        job = client.jobs.get(job_id)
    if output is Output.JSON:
        emit_json(job.raw)
    else:
        console.print(f"job {job.id} is {job.status}", markup=False)


@app.command("wait")
def wait(
    ctx: typer.Context,
    job_id: JobIdArgument,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Give up after this many seconds")
    ] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Wait until a job ends; exit 0 if it succeeded, 1 if it failed, was cancelled or timed
    out (a progress line on a terminal)."""
    from ml_platform.client import JobFailedError

    with connect(ctx) as client:
        job = client.jobs.get(job_id)
        try:
            job.wait(polling_interval=0.5, timeout=timeout)
        except JobFailedError:
            if output is Output.JSON:
                emit_json(job.refresh().raw)
            raise
    if output is Output.JSON:
        emit_json(job.raw)
    else:
        console.print(f"job {job.id} {job.status}", markup=False)


def follow_job(client: Client, job: TrainingJob, *, logs_to_stderr: bool) -> int:
    """Print the job's log lines as they arrive, then a status line; the job's exit code."""
    started = time.monotonic()
    try:
        for line in client.jobs.logs(job.id, follow=True):
            print_log_line(line.line, to_stderr=logs_to_stderr)
        job.refresh()
        while not job.is_finished:  # the stream ended with the process; the status follows it
            time.sleep(0.2)
            job.refresh()
    except KeyboardInterrupt:
        err_console.print(
            f"stopped following; job {job.id} keeps running (mlp jobs cancel {job.id})",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None
    elapsed = time.monotonic() - started
    succeeded = job.status == "succeeded"
    style = "green" if succeeded else "red"
    reason = f": {job.error_message}" if job.error_message and not succeeded else ""
    err_console.print(f"[bold {style}]job {job.id} {job.status}[/] after {elapsed:.1f} s", end="")
    err_console.print(reason, markup=False, highlight=False)
    return EXIT_OK if succeeded else EXIT_FAILED
