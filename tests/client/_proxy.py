"""A real, misbehaving HTTP proxy on loopback in front of a live platform.

``FailingProxy(upstream)`` runs a small Starlette app under uvicorn on 127.0.0.1 and forwards
every request to ``upstream`` with httpx, unless the test queued a failure for it: a status
(503, 429 with ``Retry-After`` / ``retry-after-ms``), a dropped connection (the response starts,
then the socket closes mid-body), a stall past the client's timeout, either before forwarding
(the platform never sees the attempt) or after it (the platform did the work, the client never
hears). Streams (``text/event-stream``) can be cut after K ``log`` events. Every arrival is
recorded with its monotonic time and headers, so tests assert what the SDK actually sent and
when.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.conftest import ServerThread

__all__ = ["Arrival", "Fail", "FailingProxy"]

_HOP_BY_HOP = {
    "connection",
    "content-length",
    "content-encoding",
    "host",
    "keep-alive",
    "transfer-encoding",
}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Fail:
    """How to fail one attempt.

    ``status``: answer this status (with ``headers``); ``drop``: start a 200 and close the
    connection mid-body; ``stall``: answer nothing for this many seconds (or until the client
    hangs up).
    ``after_forward``: forward to the platform first, then fail (the work happened).
    ``in_flight``: forward in the background with the last body byte held back (the platform
    has claimed the request's Idempotency-Key and is still reading it), fail at once, and
    send that byte only after the platform answered some later request 409.
    """

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    stall: float = 0.0
    after_forward: bool = False
    in_flight: bool = False


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the request reached the proxy
    method: str
    path: str
    headers: dict[str, str]
    failed: Fail | None


class _Dropped(Exception):
    """Raised after the response started: uvicorn closes the connection mid-response."""


class _DropResponse:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"partial', "more_body": True})
        raise _Dropped("connection dropped by the test proxy")


class _StreamResponse:
    """Relays an upstream event stream event by event; may cut it after ``cut_after`` logs."""

    def __init__(
        self,
        upstream: httpx.Response,
        client: httpx.AsyncClient,
        cut_after: int | None,
        relayed: list[int],
    ) -> None:
        self._upstream = upstream
        self._client = client
        self._cut_after = cut_after
        self._relayed = relayed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in self._upstream.headers.items()
            if k.lower() not in _HOP_BY_HOP
        ]
        status = self._upstream.status_code
        await send({"type": "http.response.start", "status": status, "headers": headers})
        logs = 0
        try:
            async for event in _events(self._upstream.aiter_raw()):
                await send({"type": "http.response.body", "body": event, "more_body": True})
                if b"event: log" in event:
                    logs += 1
                    self._relayed.extend(_event_ids(event))
                    if self._cut_after is not None and logs >= self._cut_after:
                        raise _Dropped(f"stream cut by the test proxy after {logs} log events")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self._upstream.aclose()
            await self._client.aclose()


def _event_ids(event: bytes) -> list[int]:
    return [int(line[3:].strip()) for line in event.split(b"\n") if line.startswith(b"id:")]


async def _events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole SSE events (each ending in a blank line), whatever the chunking upstream."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            yield event + b"\n\n"
    if buffer:
        yield buffer


async def _stall(request: Request, seconds: float) -> None:
    """Answer nothing for ``seconds``, or until the client gives up and hangs up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


class FailingProxy:
    """``with FailingProxy(platform.base_url) as proxy: proxy.fail(Fail(status=503), ...)``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.arrivals: list[Arrival] = []
        self._plan: deque[tuple[str | None, str | None, Fail]] = deque()
        self._cuts: deque[int] = deque()
        self.streams: list[list[int]] = []  # per event stream: the log event ids relayed
        self.answers: list[tuple[str, int, dict[str, str]]] = []  # (path, status, headers)
        self._conflict: asyncio.Event | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=_METHODS)])
        self._server = ServerThread(app)
        self.base_url = ""

    def __enter__(self) -> FailingProxy:
        self.base_url = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    # -- what the test controls and reads -----------------------------------------------------

    def fail(self, *failures: Fail, method: str | None = None, path: str | None = None) -> None:
        """Fail the next ``len(failures)`` requests, in order: any request, or only those with
        this ``method`` and a path starting with ``path``."""
        with self._lock:
            self._plan.extend((method, path, failure) for failure in failures)

    def _next_failure(self, method: str, path: str) -> Fail | None:
        for index, (want_method, prefix, failure) in enumerate(self._plan):
            if (want_method is None or want_method == method) and (
                prefix is None or path.startswith(prefix)
            ):
                del self._plan[index]
                return failure
        return None

    def cut_streams(self, *after_logs: int) -> None:
        """Cut the next event streams after this many ``log`` events each."""
        with self._lock:
            self._cuts.extend(after_logs)

    def to(self, method: str, path_prefix: str) -> list[Arrival]:
        """The arrivals of ``method`` on paths starting with ``path_prefix``, in order."""
        return [a for a in self.arrivals if a.method == method and a.path.startswith(path_prefix)]

    # -- the app --------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Any:
        with self._lock:
            failure = self._next_failure(request.method, request.url.path)
            self.arrivals.append(
                Arrival(
                    at=time.monotonic(),
                    method=request.method,
                    path=request.url.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    failed=failure,
                )
            )
        if failure is not None and failure.stall:
            await _stall(request, failure.stall)
        if failure is not None and failure.in_flight:
            task = asyncio.create_task(self._forward_held(request, await request.body()))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return self._failure(failure)
        if failure is not None and not failure.after_forward:
            return self._failure(failure)
        forwarded = await self._forward(request)
        if failure is not None:
            if isinstance(forwarded, _StreamResponse):
                await forwarded._upstream.aclose()
                await forwarded._client.aclose()
            return self._failure(failure)
        return forwarded

    @staticmethod
    def _failure(failure: Fail) -> Any:
        if failure.drop:
            return _DropResponse()
        status = failure.status or 503
        return Response(
            content=b'{"type":"about:blank","title":"proxy failure","status":%d}' % status,
            status_code=status,
            headers=failure.headers,
            media_type="application/problem+json",
        )

    def _conflict_seen(self) -> asyncio.Event:
        if self._conflict is None:
            self._conflict = asyncio.Event()
        return self._conflict

    def _answered(self, path: str, response: httpx.Response) -> None:
        with self._lock:
            self.answers.append((path, response.status_code, dict(response.headers)))
        if response.status_code == 409:
            self._conflict_seen().set()

    async def _forward_held(self, request: Request, body: bytes) -> None:
        seen = self._conflict_seen()

        async def trickle() -> AsyncIterator[bytes]:
            yield body[:-1]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.wait(), timeout=20)
            yield body[-1:]

        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as client:
            response = await client.request(
                request.method,
                request.url.path,
                params=request.url.query or None,
                headers=headers,
                content=trickle(),
            )
        self._answered(request.url.path, response)

    async def _forward(self, request: Request) -> Any:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.body()
        client = httpx.AsyncClient(base_url=self.upstream, timeout=httpx.Timeout(60.0))
        upstream_request = client.build_request(
            request.method,
            request.url.path,
            params=request.url.query or None,
            headers=headers,
            content=body,
        )
        upstream = await client.send(upstream_request, stream=True)
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            with self._lock:
                cut = self._cuts.popleft() if self._cuts else None
                relayed: list[int] = []
                self.streams.append(relayed)
            return _StreamResponse(upstream, client, cut, relayed)
        try:
            content = await upstream.aread()
            self._answered(request.url.path, upstream)
        finally:
            await upstream.aclose()
            await client.aclose()
        return Response(
            content=content,
            status_code=upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP},
        )
