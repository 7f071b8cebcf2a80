"""v1 job runtime routes: logs (JSON or SSE), metrics, metric history, a WebSocket stream.

SSE (`GET /v1/jobs/training/{id}/logs?follow=true`): one `log` event per line whose `id` is
the line number; reconnect with `Last-Event-ID` to resume with nothing lost or repeated;
comment heartbeats every 15 s; a final `end` event with the job's status.

WebSocket (`/v1/jobs/training/{id}/stream`): typed JSON messages (`status`, `log`, `metric`,
`end`). Authenticate with `X-API-Key` / `Authorization: Bearer` headers, or (browsers) with
subprotocols `["mlp.v1", "mlp.auth.<api key or JWT>"]`: only `mlp.v1` is echoed. Close codes:
4401 unauthenticated, 4403 origin not allowed, 4404 no such job in your tenant, 1000 when the
job has ended and everything was sent. Messages go through a bounded queue: a slow reader
slows only its own producers, never grows server memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Header, Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ml_platform.api.deps import ContextDep, PrincipalDep
from ml_platform.api.responses import AUTHED, problems
from ml_platform.api.v1.jobs import JobId
from ml_platform.auth.principal import Principal
from ml_platform.core.errors import NotFound, PlatformError, Unavailable
from ml_platform.core.jobs import JobStatus
from ml_platform.jobs.engine import JobEngine
from ml_platform.jobs.logs import LogLine
from ml_platform.schemas._types import INT64_MAX, SafeStr, unsafe_character
from ml_platform.schemas.job_runtime import (
    JobLogLine,
    JobLogsResponse,
    MetricHistoryResponse,
    MetricPointOut,
    StreamEnd,
    StreamLog,
    StreamMetric,
    StreamStatus,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs/training", tags=["Training"])

SSE_RETRY_MS = 2000
HEARTBEAT_SECONDS = 15.0
STATUS_RECHECK_SECONDS = 2.0
WS_QUEUE_SIZE = 256
WS_SUBPROTOCOL = "mlp.v1"
WS_AUTH_PREFIX = "mlp.auth."


def _engine(context: Any) -> JobEngine:
    engine: JobEngine | None = context.engine
    if engine is None:
        raise Unavailable("the job runtime is not enabled on this server")
    return engine


def _line(line: LogLine) -> JobLogLine:
    return JobLogLine(id=line.id, timestamp=line.timestamp, stream=line.stream, line=line.text)


class _Finished:
    """``is_finished`` for log follows: cheap while the job runs (in-process signals),
    re-checked in the store at most every few seconds (another process may finish it)."""

    def __init__(self, engine: JobEngine, tenant_id: str, job_id: str) -> None:
        self._engine = engine
        self._tenant = tenant_id
        self._job = job_id
        self._seen = -1
        self._checked = 0.0
        self.status: JobStatus | None = None

    async def __call__(self) -> bool:
        version = self._engine.signals.version(self._job)
        now = time.monotonic()
        if version != self._seen or now - self._checked > STATUS_RECHECK_SECONDS:
            self._seen, self._checked = version, now
            self.status = await run_in_threadpool(self._engine.status, self._tenant, self._job)
        return self.status is not None and self.status.is_terminal


SSE_DOC = {
    "description": (
        "With `follow=true`: `text/event-stream`. Events: `log` (data: a `JobLogLine`, id: "
        'the line id), `end` (data: `{"status": ...}`), `error` (data: a problem).'
    ),
    "content": {
        "text/event-stream": {
            "schema": {"type": "string"},
            "example": 'event: log\nid: 1\ndata: {"id": 1, "line": "epoch 1"}\n\n',
            # each event's name, id and the JSON Schema of its `data`
            "x-sse-events": {
                "log": {
                    "id": "the line id: send it back as Last-Event-ID to resume",
                    "data": {"$ref": "#/components/schemas/JobLogLine"},
                },
                "end": {
                    "data": {
                        "type": "object",
                        "properties": {
                            "status": {
                                "anyOf": [
                                    {"$ref": "#/components/schemas/JobStatus"},
                                    {"type": "null"},
                                ]
                            }
                        },
                        "required": ["status"],
                    }
                },
                "error": {
                    "data": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "detail": {"type": "string"}},
                        "required": ["code", "detail"],
                    }
                },
            },
        }
    },
}


@router.get(
    "/{job_id}/logs",
    name="get_training_job_logs",
    summary="Get or follow a training job's logs",
    response_model=JobLogsResponse,
    responses={**problems(404, 422, *AUTHED), 200: SSE_DOC},
)
async def get_training_job_logs(
    job_id: JobId,
    request: Request,
    context: ContextDep,
    principal: PrincipalDep,
    follow: Annotated[bool, Query(description="Stream lines as Server-Sent Events")] = False,
    tail: Annotated[int, Query(ge=0, le=10000, description="Number of lines to return")] = 100,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this line id")
    ] = None,
) -> Any:
    """The last `tail` lines (`{"logs": [...]}`), or with `follow=true` an SSE stream that
    starts with them, continues while the job runs and ends with an `end` event."""
    engine = _engine(context)
    await run_in_threadpool(engine.status, principal.tenant_id, job_id)  # 404 if not yours
    if not follow:
        lines = await run_in_threadpool(engine.logs.tail, job_id, tail)
        return JobLogsResponse(logs=[_line(line) for line in lines])
    after = None
    resume = (last_event_id or "").strip()
    if resume.isascii() and resume.isdigit():  # "²".isdigit() too; int() refuses it
        after = min(int(resume[:20]), INT64_MAX)  # line ids are int64
    if after is None:
        total = await run_in_threadpool(engine.logs.count, job_id)
        after = max(total - tail, 0)
    return EventSourceResponse(
        _sse_events(engine, principal.tenant_id, job_id, after),
        ping=HEARTBEAT_SECONDS,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


_FRAME_CACHE_SIZE = 8192
_frames: OrderedDict[tuple[str, LogLine], bytes] = OrderedDict()
"""The encoded ``log`` event of recent lines (touched by the event loop only): the followers
of a job share one encoding of each line instead of one each."""


def _log_frame(job_id: str, line: LogLine, *, retry: int | None = None) -> bytes:
    """The SSE ``log`` event of ``line``; the usual one (no ``retry``) from the shared cache."""
    if retry is not None:
        return _encode_log(line, retry)
    key = (job_id, line)
    frame = _frames.get(key)
    if frame is None:
        frame = _frames[key] = _encode_log(line, None)
        if len(_frames) > _FRAME_CACHE_SIZE:
            _frames.popitem(last=False)
    return frame


def _encode_log(line: LogLine, retry: int | None) -> bytes:
    event = ServerSentEvent(
        data=_line(line).model_dump_json(), event="log", id=str(line.id), retry=retry
    )
    return event.encode()


async def _sse_events(
    engine: JobEngine, tenant_id: str, job_id: str, after: int
) -> AsyncIterator[bytes | ServerSentEvent]:
    """Every batch of lines a read brought goes out as one write of their events."""
    finished = _Finished(engine, tenant_id, job_id)
    first = True
    try:
        async for lines in engine.logs.follow_batches(job_id, after, finished):
            frames = [_log_frame(job_id, line) for line in lines]
            if first:  # the first event also tells the client how soon to reconnect
                frames[0] = _log_frame(job_id, lines[0], retry=SSE_RETRY_MS)
                first = False
            yield frames[0] if len(frames) == 1 else b"".join(frames)
        status = finished.status.value if finished.status else None
        yield ServerSentEvent(data=json.dumps({"status": status}), event="end")
    except PlatformError as exc:
        yield ServerSentEvent(
            data=json.dumps({"code": exc.code.value, "detail": exc.message}), event="error"
        )


@router.get(
    "/{job_id}/metrics",
    name="get_training_job_metrics",
    summary="Latest value of each metric",
    response_model=dict[str, float],
    responses=problems(404, *AUTHED),
)
async def get_training_job_metrics(
    job_id: JobId, context: ContextDep, principal: PrincipalDep
) -> dict[str, float]:
    """The latest value of every metric the job logged (`{}` before the first)."""
    job = await run_in_threadpool(context.jobs.get, principal, job_id)
    return job.metrics


@router.get(
    "/{job_id}/metrics/history",
    name="get_training_job_metric_history",
    summary="Metric time series",
    response_model=MetricHistoryResponse,
    responses=problems(404, 422, *AUTHED),
)
async def get_training_job_metric_history(
    job_id: JobId,
    context: ContextDep,
    principal: PrincipalDep,
    name: Annotated[SafeStr | None, Query(max_length=250, description="Only this metric")] = None,
    after_id: Annotated[int, Query(ge=0, le=INT64_MAX, description="Points after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000, description="Page size")] = 1000,
) -> MetricHistoryResponse:
    """Every logged point (name, step, value, timestamp) in logging order, paginated."""
    engine = _engine(context)
    await run_in_threadpool(engine.status, principal.tenant_id, job_id)
    points = await run_in_threadpool(
        lambda: engine.metric_history(
            principal.tenant_id, job_id, name=name, after_id=after_id, limit=limit + 1
        )
    )
    has_more = len(points) > limit
    points = points[:limit]
    return MetricHistoryResponse(
        metrics=[
            MetricPointOut(id=p.id, name=p.name, step=p.step, value=p.value, timestamp=p.timestamp)
            for p in points
        ],
        has_more=has_more,
        next_after_id=points[-1].id if has_more and points else None,
    )


# -- WebSocket -----------------------------------------------------------------------------------


def _credentials(websocket: WebSocket) -> tuple[str | None, str | None, bool]:
    """(api_key, bearer, via_subprotocol) from headers or the ``mlp.auth.`` subprotocol."""
    api_key = websocket.headers.get("x-api-key")
    bearer = None
    authorization = websocket.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        bearer = authorization[7:].strip()
    via_protocol = False
    for protocol in websocket.scope.get("subprotocols", []):
        if protocol.startswith(WS_AUTH_PREFIX) and api_key is None and bearer is None:
            credential = protocol[len(WS_AUTH_PREFIX) :]
            via_protocol = True
            if credential.startswith("mlp_"):
                api_key = credential
            else:
                bearer = credential
    return api_key, bearer, via_protocol


def _origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    if origin in allowed or "*" in allowed:
        return True
    host = websocket.headers.get("host", "")
    return urlparse(origin).netloc == host


@router.websocket("/{job_id}/stream", name="stream_training_job")
async def stream_training_job(websocket: WebSocket, job_id: str) -> None:
    context = websocket.app.state.context
    offered = websocket.scope.get("subprotocols", [])
    subprotocol = WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None
    api_key, bearer, _ = _credentials(websocket)
    engine: JobEngine | None = context.engine
    close: tuple[int, str] | None = None
    principal: Principal | None = None
    if not _origin_allowed(websocket, list(context.settings.cors_origins)):
        close = (4403, "origin not allowed")
    else:
        try:
            principal = await run_in_threadpool(
                context.auth.authenticate, api_key=api_key, bearer=bearer
            )
        except PlatformError:
            close = (4401, "missing or invalid credentials")
    if close is None and principal is not None:
        try:
            if engine is None:
                raise NotFound("the job runtime is not enabled")
            if len(job_id) > 64 or unsafe_character(job_id) is not None:
                raise NotFound("not a job id")  # never sent to the store (NUL on PostgreSQL)
            await run_in_threadpool(engine.status, principal.tenant_id, job_id)
        except NotFound:
            # a close reason holds at most 123 bytes: echo only an id that fits
            shown = f" {job_id!r}" if job_id.isascii() and len(job_id) <= 64 else ""
            close = (4404, f"training job{shown} not found")
    await websocket.accept(subprotocol=subprotocol)
    if close is not None or principal is None or engine is None:
        code, reason = close or (4401, "missing or invalid credentials")
        await websocket.close(code=code, reason=reason)
        return
    await _stream(websocket, engine, context, principal, job_id)


async def _stream(
    websocket: WebSocket, engine: JobEngine, context: Any, principal: Principal, job_id: str
) -> None:
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=WS_QUEUE_SIZE)
    finished = _Finished(engine, principal.tenant_id, job_id)

    async def produce_logs() -> None:
        async for line in engine.logs.follow(job_id, 0, finished):
            message = StreamLog(
                id=line.id, timestamp=line.timestamp, stream=line.stream, line=line.text
            )
            await queue.put(message.model_dump(mode="json"))

    async def produce_state() -> None:
        seen_version = -1
        last_status: tuple[Any, ...] | None = None
        after_metric = 0
        while True:
            seen_version = await engine.signals.wait(job_id, seen_version, 1.0)
            job = await run_in_threadpool(context.jobs.get, principal, job_id)
            key = (job.status, job.pending_reason, job.queue_position, job.attempt)
            if key != last_status:
                last_status = key
                reason = job.status_history[-1].reason if job.status_history else None
                await queue.put(
                    StreamStatus(
                        status=job.status,
                        reason=reason,
                        pending_reason=job.pending_reason,
                        queue_position=job.queue_position,
                        attempt=job.attempt,
                    ).model_dump(mode="json")
                )
            while True:
                points = await run_in_threadpool(
                    engine.metric_history_after, principal.tenant_id, job_id, after_metric
                )
                for p in points:
                    await queue.put(
                        StreamMetric(
                            id=p.id, name=p.name, step=p.step, value=p.value, timestamp=p.timestamp
                        ).model_dump(mode="json")
                    )
                if not points:
                    break
                after_metric = points[-1].id
            if job.status.is_terminal:
                return

    async def produce() -> None:
        state = asyncio.create_task(produce_state())
        try:
            await produce_logs()
            await state
            job = await run_in_threadpool(context.jobs.get, principal, job_id)
            await queue.put(
                StreamEnd(status=job.status, error_message=job.error_message).model_dump(
                    mode="json"
                )
            )
        finally:
            state.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await state
            await queue.put(None)

    async def watch_client() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()  # we ignore client messages; detect close

    producer = asyncio.create_task(produce())
    watcher = asyncio.create_task(watch_client())
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return  # the client went away
            message = getter.result()
            if message is None:
                break
            await websocket.send_json(message)
        if websocket.client_state is WebSocketState.CONNECTED:
            await websocket.close(code=1000, reason="job ended")
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        producer.cancel()
        watcher.cancel()
        for task in (producer, watcher):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
