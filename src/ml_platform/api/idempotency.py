"""``Idempotency-Key`` on every POST (API-GUIDE rule 12), Stripe's semantics, as pure ASGI.

The rules, in the order they apply:

- Only POST requests that carry the header take part; everything else passes straight through.
- The caller must authenticate: the middleware resolves the principal with the same
  ``AuthService`` the routes use. When that fails the request passes through untouched and
  the route answers 401; a failed or anonymous request never claims a key.
- The key is 1..255 printable ASCII characters (0x20-0x7E), sent once; anything else is a
  422 problem naming ``header.Idempotency-Key``.
- Scope: (tenant, ``POST`` + the path as requested, key). The claim is an INSERT of a row in
  the database (``ml_platform.store.idempotency``), so it holds across replicas and restarts.
- The first request runs. Its fingerprint is the sha256 of the content type, the query
  string and the body bytes, hashed while the route streams the body (nothing is buffered;
  multipart bodies are hashed without their boundary, which a client picks anew on each
  attempt). A body the route did not read is read here, up to ``DRAIN_LIMIT_BYTES``.
- Its response (status, ``content-type``/``location``/``etag``, body) is stored before it is
  sent, so a retry that follows the answer sees the stored one, never a stale in-flight row.
- Never stored (the claim is released and a retry runs again): 5xx, 429, a response the
  route gave before the whole request body arrived (over ``DRAIN_LIMIT_BYTES`` unread, or a
  disconnect), a response body over ``MAX_STORED_RESPONSE_BYTES``, and an exception.
- A later request with the key: completed and same fingerprint -> the stored response with
  ``Idempotent-Replayed: true``; another fingerprint -> 422 ``IDEMPOTENCY_KEY_REUSED``;
  still in flight -> 409 ``IDEMPOTENCY_KEY_IN_USE`` with ``Retry-After: 1``.
- Rows are kept 24 h. While a request runs its claim's lease (60 s) is renewed every third of
  it; a claim whose lease lapsed (its server died) is taken over by the next request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.api.credentials import authenticate, bearer_credential
from ml_platform.auth.service import AuthService
from ml_platform.core.errors import (
    Conflict,
    ErrorCode,
    FieldViolation,
    InvalidArgument,
    PlatformError,
)
from ml_platform.core.problems import (
    PROBLEM_JSON,
    field_errors,
    http_status,
    problem_bytes,
    problem_document,
    problem_headers,
)
from ml_platform.store.idempotency import (
    Claim,
    Completed,
    IdempotencyStore,
    InFlight,
    StoredResponse,
)

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
_HEADER_NAME = HEADER.lower().encode()
_FIELD = f"header.{HEADER}"
MAX_KEY_LENGTH = 255
STORED_HEADERS = frozenset({b"content-type", b"location", b"etag"})
MAX_STORED_RESPONSE_BYTES = 1024 * 1024
DRAIN_LIMIT_BYTES = 1024 * 1024
# a replay's body may differ in length from the original only by its multipart boundaries
REPLAY_SLACK_BYTES = 64 * 1024
REUSED_CODE = "IDEMPOTENCY_KEY_REUSED"
IN_USE_CODE = "IDEMPOTENCY_KEY_IN_USE"


class IdempotencyKeyReused(InvalidArgument):
    problem_code = REUSED_CODE

    def __init__(self) -> None:
        super().__init__(
            f"this {HEADER} was already used with another request body (or content type or "
            "query) on this route; send a new key for a new request",
            [FieldViolation(_FIELD, "already used with another request body")],
        )


class IdempotencyKeyInUse(Conflict):
    problem_code = IN_USE_CODE

    def __init__(self) -> None:
        super().__init__(
            f"a request with this {HEADER} is still in progress; retry after it completes"
        )


def key_problem(values: list[bytes]) -> InvalidArgument | None:
    """Why these ``Idempotency-Key`` header values are unacceptable, or None."""
    if len(values) != 1:
        return InvalidArgument(
            f"send one {HEADER} header (got {len(values)})",
            [FieldViolation(_FIELD, "sent more than once")],
        )
    value = values[0]
    if not 0 < len(value) <= MAX_KEY_LENGTH or any(not 0x20 <= b <= 0x7E for b in value):
        message = f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        return InvalidArgument(f"{HEADER} {message}", [FieldViolation(_FIELD, message)])
    return None


class Fingerprint:
    """sha256 over the content type, the query and the body, fed chunk by chunk.

    For ``multipart/*`` bodies every occurrence of the boundary is left out (the result does
    not depend on how the body is split into chunks), so two attempts of one upload that
    differ only in their random boundary have one fingerprint.
    """

    def __init__(self, content_type: str, query: bytes) -> None:
        media, params, boundary = _content_type_parts(content_type)
        canonical = ";".join([media, *params]).encode("latin-1", "replace")
        self._hash = hashlib.sha256()
        for part in (canonical, query):
            self._hash.update(b"%d:" % len(part))
            self._hash.update(part)
        self._boundary = boundary
        self._tail = b""
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if not self._boundary:
            self._hash.update(chunk)
            return
        data = self._tail + chunk
        start = 0
        while (found := data.find(self._boundary, start)) >= 0:
            self._hash.update(data[start:found])
            start = found + len(self._boundary)
        # keep what could be the beginning of a boundary split across chunks
        cut = max(start, len(data) - (len(self._boundary) - 1))
        self._hash.update(data[start:cut])
        self._tail = data[cut:]

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(self._tail)
        return final.hexdigest()


def _content_type_parts(content_type: str) -> tuple[str, list[str], bytes]:
    parts = [p.strip() for p in content_type.split(";")]
    media = parts[0].lower()
    params: list[str] = []
    boundary = b""
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if media.startswith("multipart/") and name.strip().lower() == "boundary":
            boundary = value.strip().strip('"').encode("latin-1", "replace")
        elif param:
            params.append(param.lower().replace(" ", ""))
    return media, sorted(params), boundary


def _storable(status: int) -> bool:
    return status < 500 and status != 429


class IdempotencyMiddleware:
    """Install inside ``RequestContextMiddleware`` (it gives the request id and body limit)."""

    def __init__(self, app: ASGIApp, auth: AuthService, store: IdempotencyStore) -> None:
        self.app = app
        self.auth = auth
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        values = [v for n, v in scope.get("headers", []) if n == _HEADER_NAME]
        if not values:
            await self.app(scope, receive, send)
            return
        tenant_id = await self._tenant(scope)
        if tenant_id is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        problem = key_problem(values)
        if problem is not None:
            await _send_problem(send, scope, problem)
            return
        key = values[0].decode("ascii")
        headers = Headers(scope=scope)
        fingerprint = Fingerprint(headers.get("content-type", ""), scope.get("query_string", b""))
        # escaped: a decoded path may hold NUL (%00), which PostgreSQL text refuses
        route_path = scope["path"].encode("unicode_escape").decode("ascii")
        outcome = await run_in_threadpool(
            self.store.claim, tenant_id, scope["method"], route_path, key
        )
        if isinstance(outcome, InFlight):
            await _send_problem(
                send,
                scope,
                IdempotencyKeyInUse(),
                [(b"retry-after", b"1"), (b"x-should-retry", b"true")],
            )
        elif isinstance(outcome, Completed):
            await self._replay(scope, receive, send, outcome.response, fingerprint)
        else:
            await _Execution(self.app, self.store, outcome, fingerprint).run(scope, receive, send)

    async def _tenant(self, scope: Scope) -> str | None:
        """The caller's tenant, resolved exactly as ``api.deps.get_principal`` does."""
        headers = Headers(scope=scope)
        api_key = headers.get("x-api-key") or None
        bearer = bearer_credential(headers.get("authorization"))
        try:
            principal = await authenticate(self.auth, api_key, bearer)
        except PlatformError:
            return None
        return principal.tenant_id

    async def _replay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        stored: StoredResponse,
        fingerprint: Fingerprint,
    ) -> None:
        limit = max(2 * stored.request_bytes, stored.request_bytes + REPLAY_SLACK_BYTES)
        while fingerprint.size <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody to answer
            if message["type"] == "http.request":
                fingerprint.update(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        if fingerprint.size > limit or fingerprint.hexdigest() != stored.fingerprint:
            await _send_problem(send, scope, IdempotencyKeyReused())
            return
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in stored.headers]
        headers += [
            (b"content-length", str(len(stored.body)).encode()),
            (b"idempotent-replayed", b"true"),
        ]
        await send({"type": "http.response.start", "status": stored.status, "headers": headers})
        await send({"type": "http.response.body", "body": stored.body})


class _Execution:
    """One claimed request: run the route, hash its body, store or release, then answer."""

    def __init__(
        self, app: ASGIApp, store: IdempotencyStore, claim: Claim, fingerprint: Fingerprint
    ) -> None:
        self.app = app
        self.store = store
        self.claim = claim
        self.fingerprint = fingerprint
        self.body_done = False
        self.disconnected = False
        self.settled = False  # completed or released
        self.passthrough = False
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        keeper = asyncio.create_task(self._keep_claim())
        try:
            await self.app(scope, self.receive, self.send)
        finally:
            keeper.cancel()
            if not self.settled:
                with anyio.CancelScope(shield=True):
                    await self._release()

    async def _keep_claim(self) -> None:
        """Renew the claim's lease while the request runs (a dead server's lapses)."""
        interval = max(self.store.lease.total_seconds() / 3, 0.05)
        while not self.settled:
            await asyncio.sleep(interval)
            if self.settled:
                return
            try:
                if not await run_in_threadpool(self.store.extend, self.claim):
                    return
            except Exception:
                logger.exception("could not renew an idempotency claim")

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not self.body_done:
            self.fingerprint.update(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if self.passthrough:
            await self._send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            if not _storable(int(message["status"])):
                await self._stop_storing(more_body=True)
            return
        if kind != "http.response.body":
            await self._stop_storing(more_body=True)
            await self._send(message)
            return
        chunk: bytes = message.get("body", b"")
        more_body = bool(message.get("more_body", False))
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > MAX_STORED_RESPONSE_BYTES:
            logger.warning("response over %d bytes: not stored for replay", self.size)
            await self._stop_storing(more_body=more_body)
            return
        if more_body:
            return
        await self._complete()
        await self._flush(more_body=False)

    async def _stop_storing(self, *, more_body: bool) -> None:
        """Release the claim, then forward what was held back and everything after it."""
        await self._release()
        self.passthrough = True
        await self._flush(more_body=more_body)

    async def _flush(self, *, more_body: bool) -> None:
        if self.start is not None:
            await self._send(self.start)
            self.start = None
        if self.chunks or not more_body:
            body = b"".join(self.chunks)
            self.chunks = []
            await self._send({"type": "http.response.body", "body": body, "more_body": more_body})

    async def _complete(self) -> None:
        assert self.start is not None
        if not await self._drain():
            await self._release()
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.start.get("headers", [])
            if name.lower() in STORED_HEADERS
        ]
        stored = StoredResponse(
            fingerprint=self.fingerprint.hexdigest(),
            request_bytes=self.fingerprint.size,
            status=int(self.start["status"]),
            headers=headers,
            body=b"".join(self.chunks),
        )
        await self._settle(self.store.complete, stored)

    async def _drain(self) -> bool:
        """Read (and hash) the rest of a body the route left unread, within the limit."""
        while not self.body_done:
            if self.disconnected or self.fingerprint.size > DRAIN_LIMIT_BYTES:
                return False
            await self.receive()
        return not self.disconnected

    async def _release(self) -> None:
        await self._settle(self.store.release)

    async def _settle(self, action: Callable[..., Any], *args: Any) -> None:
        if self.settled:
            return
        self.settled = True
        try:
            result = await run_in_threadpool(action, self.claim, *args)
        except Exception:
            # the answer still goes out; the row stays in flight until its lease ends
            logger.exception("could not record the idempotency key's outcome")
            return
        if result is False:
            logger.warning("idempotency claim was taken over before the request completed")


async def _send_problem(
    send: Send,
    scope: Scope,
    error: PlatformError,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    status = http_status(error.code)
    code: ErrorCode | str = getattr(error, "problem_code", error.code)
    document = problem_document(
        status=status,
        code=code,
        detail=error.message,
        instance=scope["path"],
        request_id=scope.get("state", {}).get("request_id"),
        errors=field_errors(error.violations),
    )
    body = problem_bytes(document)
    headers = [(n.encode(), v.encode()) for n, v in problem_headers(status, code).items()]
    headers += [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
