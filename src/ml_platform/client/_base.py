"""What ``Client`` and ``AsyncClient`` share: options, request building, retries, errors, parsing.

Nothing here does I/O. The two clients run the same loop (build the request for attempt
*n*, send it, ask :meth:`BaseClient._next_delay` whether and when to try again, map the
final response onto the exception tree) and differ only in ``send`` and ``sleep``.

Retry policy (the Stainless SDK mechanics): connection errors, timeouts, 408, 429 and 5xx are
retried ``max_retries`` times (default 2) with ``min(0.5 * 2**n, 8)`` seconds times a jitter in
[0.75, 1]; a server wait in ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date) is
honoured up to 60 s, a longer one raises at once (``RateLimitError.retry_after``).
``x-should-retry: true|false`` from the server decides first (the server says true on its 409
for an Idempotency-Key still in flight, so the retry waits and gets the replay); any other 409
is never retried. Every POST carries
one ``Idempotency-Key`` for the logical call, the same on each attempt, and every attempt
its ``X-Retry-Count``.
"""

from __future__ import annotations

import copy
import email.utils
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from ml_platform import __version__
from ml_platform.client import _grpc
from ml_platform.client._config import resolve_api_version, resolve_connection
from ml_platform.client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    status_error_from_response,
)
from ml_platform.client._models import APIObject
from ml_platform.client._routes import Routes

__all__ = ["DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "BaseClient", "Req"]

logger = logging.getLogger("ml_platform.client")

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
MAX_RETRY_AFTER_SECONDS = 60.0
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
UPLOAD_CHUNK_BYTES = 256 * 1024
USER_AGENT = f"ml-platform-python/{__version__}"
RETRYABLE_STATUSES = frozenset({408, 429})

M = TypeVar("M", bound=APIObject)


@dataclass
class Req:
    """One logical API call (however many attempts it takes)."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    upload: Path | None = None  # streamed from disk, reopened on every attempt
    multipart_field: str | None = None  # send ``upload`` as this multipart/form-data field
    form: Mapping[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    stream: bool = False
    timeout: httpx.Timeout | None = None

    def __post_init__(self) -> None:
        if self.method == "POST" and self.idempotency_key is None:
            self.idempotency_key = f"mlp-{uuid.uuid4()}"


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The wait the server asked for: ``retry-after-ms``, else ``Retry-After`` (s or date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(email.utils.mktime_tz(parsed) - time.time(), 0.0)


def backoff_seconds(retries_done: int) -> float:
    delay = min(INITIAL_RETRY_DELAY * 2.0**retries_done, MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            yield chunk


class BaseClient:
    """Options and the I/O-free half of every request."""

    _owner: bool

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        grpc_target: str | None = None,
        api_version: str | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        connection = resolve_connection(base_url, api_key, grpc_target)
        self.base_url = connection.base_url
        self.api_key = connection.api_key
        self.grpc_target = connection.grpc_target
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.api_version = resolve_api_version(api_version)
        self._routes = Routes(self.api_version)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"  # never the key

    def _bind(self) -> None:
        """Attach the resources (``jobs``, ``models``, ...) bound to this instance."""
        raise NotImplementedError

    def _copy(self, timeout: float | None, max_retries: int | None) -> Self:
        """``with_options``: a copy with other defaults, sharing this client's connections."""
        clone = copy.copy(self)
        if timeout is not None:
            if timeout <= 0:
                raise ValueError("timeout must be > 0 seconds")
            clone.timeout = float(timeout)
        if max_retries is not None:
            if max_retries < 0:
                raise ValueError("max_retries must be >= 0")
            clone.max_retries = int(max_retries)
        clone._owner = False
        clone._bind()
        return clone

    # -- requests --------------------------------------------------------------------------

    def _default_headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def _request_headers(self, req: Req, attempt: int) -> dict[str, str]:
        headers = self._default_headers()
        headers.update(req.headers)
        headers["X-Retry-Count"] = str(attempt)
        if req.idempotency_key is not None:
            headers["Idempotency-Key"] = req.idempotency_key
        if req.upload is not None and req.multipart_field is None:
            headers.setdefault("Content-Type", "application/octet-stream")
            headers["Content-Length"] = str(req.upload.stat().st_size)
        return headers

    def _request_kwargs(self, req: Req, attempt: int) -> dict[str, Any]:
        """Everything ``httpx.Client.build_request`` needs except a streamed upload body."""
        kwargs: dict[str, Any] = {
            "method": req.method,
            "url": req.path,
            "params": _clean_params(req.params),
            "headers": self._request_headers(req, attempt),
            "timeout": req.timeout or httpx.Timeout(self.timeout),
        }
        if req.json is not None:
            kwargs["json"] = req.json
        if req.content is not None:
            kwargs["content"] = req.content
        if req.form is not None:
            kwargs["data"] = dict(req.form)
        return kwargs

    def _attempt(
        self, req: Req, attempt: int, chunks: Callable[[Path], Any]
    ) -> tuple[dict[str, Any], Any]:
        """``build_request`` arguments for one attempt, and the file handle to close after it.

        A raw upload is streamed from disk by ``chunks(path)`` (a sync or async iterator, the
        one I/O difference); a multipart upload opens the file (httpx streams it either way).
        """
        kwargs = self._request_kwargs(req, attempt)
        if req.upload is None:
            return kwargs, None
        if req.multipart_field is not None:
            handle = req.upload.open("rb")
            kwargs["files"] = {req.multipart_field: (req.upload.name, handle)}
            return kwargs, handle
        kwargs["content"] = chunks(req.upload)
        return kwargs, None

    # -- retries ---------------------------------------------------------------------------

    def _should_retry(self, response: httpx.Response) -> bool:
        # the server's word first: a 409 "this Idempotency-Key is still in flight" says true
        should = response.headers.get("x-should-retry")
        if should == "true":
            return True
        if should == "false":
            return False
        if response.status_code == 409:
            return False
        return response.status_code in RETRYABLE_STATUSES or response.status_code >= 500

    def _next_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying this error response, or None: raise it now."""
        if attempt >= self.max_retries or not self._should_retry(response):
            return None
        wait = retry_after_seconds(response.headers)
        if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:
            return None
        if wait is not None and wait > 0:
            return wait
        return backoff_seconds(attempt)

    def _transport_delay(self, attempt: int) -> float | None:
        return backoff_seconds(attempt) if attempt < self.max_retries else None

    def _retry_transport(
        self, req: Req, exc: httpx.TransportError, url: str, attempt: int
    ) -> float:
        """Seconds before retrying after a transport error; raises when no retry is left."""
        delay = self._transport_delay(attempt)
        if delay is None:
            raise self._transport_error(exc, url) from exc
        logger.info("%s %s: %s; retrying in %.2f s", req.method, req.path, exc, delay)
        return delay

    def _retry_status(self, req: Req, response: httpx.Response, attempt: int) -> float:
        """Seconds before retrying an error response; raises its exception when not retried."""
        delay = self._next_delay(response, attempt)
        if delay is None:
            raise self._status_error(response)
        logger.info(
            "%s %s: %s; retrying in %.2f s", req.method, req.path, response.status_code, delay
        )
        return delay

    def _rpc_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),) if self.api_key else ()

    def _retry_rpc(self, exc: Any, attempt: int) -> float:
        """Seconds before retrying a failed RPC (UNAVAILABLE only); raises the SDK error."""
        delay = self._transport_delay(attempt) if _grpc.retryable_rpc(exc) else None
        if delay is None:
            raise _grpc.error_from_rpc(exc, self.grpc_target) from None
        return delay

    @staticmethod
    def _transport_error(exc: httpx.TransportError, url: str) -> APIConnectionError:
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"request to {url} timed out ({type(exc).__name__})")
        return APIConnectionError(f"could not reach the ML platform at {url}: {exc or type(exc)}")

    @staticmethod
    def _status_error(response: httpx.Response) -> APIStatusError:
        wait = retry_after_seconds(response.headers)
        error = status_error_from_response(response, retry_after=wait)
        if isinstance(error, RateLimitError) and wait is not None and wait > 60:
            error.message = f"{error.message} (the server asks to retry in {wait:.0f} s)"
        return error

    # -- parsing ---------------------------------------------------------------------------

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise APIStatusError(
                f"the platform answered {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from exc

    @classmethod
    def _parse(cls, model: type[M], response: httpx.Response) -> M:
        parsed: M = model.parse(cls._json(response), response.headers.get("x-request-id"))
        return parsed

    @staticmethod
    def _parse_items(model: type[M], body: Any, key: str, request_id: str | None) -> list[M]:
        items = body.get(key, []) if isinstance(body, dict) else []
        return [model.parse(item, request_id) for item in items]


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    cleaned: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            cleaned[key] = "true" if value else "false"
        elif isinstance(value, Mapping):
            cleaned[key] = ",".join(f"{k}={v}" for k, v in value.items())
        else:
            cleaned[key] = value
    return cleaned or None
