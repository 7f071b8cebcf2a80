"""Request ids in every log line, and log lines as JSON when configured (stdlib only).

- ``accept_request_id``: the caller's ``X-Request-ID`` when it is short and made of safe
  characters (``REQUEST_ID_PATTERN``), else a fresh ``req_<24 hex>``: a forged id can neither
  inject a line break into a log nor grow without bound.
- ``bind_request_id``: the REST middleware and the serving workers' V2 REST put the id in a
  context variable for the duration of the request; ``RequestIdFilter`` (on every handler
  ``install`` touches) copies it onto each record, so every line logged while serving the
  request names it, thread-pool work included (``run_in_threadpool`` copies the context).
- ``install(log_format)``: ``text`` keeps one human line per record with ``[request id]``;
  ``json`` writes one JSON object per line (``JsonFormatter``): ``time``, ``level``,
  ``logger``, ``message``, ``request_id``, the fields passed with ``extra=`` (the access log's
  ``method``, ``route``, ``status``, ``duration_ms``, ``tenant``) and ``exc_info`` as text.

Secrets stay out by construction: nothing here logs headers or bodies; the access log names
the route *template*, never the raw path or query.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]

REQUEST_ID_MAX_LENGTH = 128
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
"""What an incoming ``X-Request-ID`` may be (UUIDs, W3C trace ids, ``req_...``, base64)."""
NO_REQUEST_ID = "-"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
ACCESS_LOGGER = "ml_platform.access"

request_id_var: ContextVar[str | None] = ContextVar("ml_platform_request_id", default=None)

# attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "request_id", "taskName", "color_message"}  # uvicorn's ANSI copy


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def accept_request_id(value: str | bytes | None) -> str:
    """``value`` when it is a safe request id, else a new one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and len(value) <= REQUEST_ID_MAX_LENGTH and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()


@contextmanager
def bind_request_id(request_id: str) -> Iterator[None]:
    """Every record logged inside the block (this task, and threads it hands work to) names
    ``request_id``."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (``-`` outside a request); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(getattr(record, "request_id", None), str):
            record.request_id = request_id_var.get() or NO_REQUEST_ID
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id in (None, NO_REQUEST_ID) else request_id,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str, ensure_ascii=False)


def formatter_for(log_format: LogFormat, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_format)


def install(
    log_format: LogFormat, *, level: int | str | None = None, text_format: str = TEXT_FORMAT
) -> None:
    """Give the root logger's handlers (a stderr one if it has none) the request-id filter and
    the chosen format. Idempotent; ``level`` sets the root level when given."""
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level.upper() if isinstance(level, str) else level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = formatter_for(log_format, text_format)
    for handler in root.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        handler.setFormatter(formatter)
