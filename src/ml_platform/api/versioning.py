"""API versions: v1 deprecation headers, v2's dated behaviour (``API-Date``) and page tokens.

- Every ``/v1`` response carries ``Deprecation`` (RFC 9745), ``Link: <...>; rel="deprecation"``
  to the migration page this server serves, and ``Sunset`` (RFC 8594) once an administrator
  sets ``ML_PLATFORM_V1_SUNSET``.
- ``/v2`` requests may send ``API-Date: YYYY-MM-DD`` to pin the dated behaviour they were
  written against (``API_DATES``); none means ``DEFAULT_API_DATE``; an unknown date is 400.
  The response echoes the date it was served with.
- v2 lists page with opaque ``page_token`` / ``next_page_token``: signed with the server's JWT
  secret and tied to the filters they were issued for (reused with others: 400).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.core.errors import FieldViolation, MalformedRequest

ApiVersion = Literal["v1", "v2"]

V1_DEPRECATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
"""When v1 was deprecated (v2 became the recommended surface); ``Deprecation: @1767225600``."""
MIGRATION_PATH = "/docs/migrating-to-v2"

# -- API-Date ---------------------------------------------------------------------------------

API_DATE_HEADER = "API-Date"
API_DATE_INITIAL = "2026-06-01"
API_DATE_LEAN_LISTS = "2026-12-01"
API_DATES: dict[str, str] = {
    API_DATE_INITIAL: "v2 as first released: list items are whole jobs, like a get",
    API_DATE_LEAN_LISTS: (
        "list items omit `status_history` unless `?include=status_history` "
        "(get and create still return it)"
    ),
}
"""Every known ``API-Date``, oldest first, with what it changed."""
DEFAULT_API_DATE = API_DATE_INITIAL
"""What a request without ``API-Date`` gets (the oldest: a client never breaks by default)."""

API_DATE_HELP = (
    "Pin the dated v2 behaviour you were written against. Known dates: "
    + "; ".join(f"`{date}`: {change}" for date, change in API_DATES.items())
    + f". Default `{DEFAULT_API_DATE}`; an unknown date is 400. The response echoes it."
)
API_DATE_RESPONSE_HEADER = {
    API_DATE_HEADER: {
        "description": "The API-Date this response was served with",
        "schema": {"type": "string", "enum": list(API_DATES)},
    }
}


async def resolve_api_date(
    request: Request,
    api_date: Annotated[
        str | None,
        Header(
            alias=API_DATE_HEADER,
            description=API_DATE_HELP,
            max_length=32,
            json_schema_extra={"enum": list(API_DATES)},
        ),
    ] = None,
) -> str:
    """The request's ``API-Date`` (400 when unknown); recorded for the response echo."""
    date = DEFAULT_API_DATE if api_date is None else api_date.strip()
    if date not in API_DATES:
        shown = api_date[:32].encode("ascii", "backslashreplace").decode() if api_date else ""
        raise MalformedRequest(
            f"unknown API-Date {shown!r}; known dates: {', '.join(API_DATES)} "
            f"(omit the header for {DEFAULT_API_DATE})",
            [FieldViolation("header.API-Date", f"must be one of {', '.join(API_DATES)}")],
        )
    request.state.api_date = date
    return date


ApiDateDep = Annotated[str, Depends(resolve_api_date)]


def at_least(date: str, change: str) -> bool:
    """True when ``date`` includes the dated change introduced at ``change``."""
    return date >= change  # ISO dates order as strings


# -- page tokens ------------------------------------------------------------------------------

PAGE_TOKEN_SALT = "ml-platform.v2.page-token"  # noqa: S105 (a salt, not a secret)


class PageTokens:
    """Opaque, signed keyset cursors: the last item's position ((created_at, id), or a number)
    + the query's digest."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt=PAGE_TOKEN_SALT)

    @staticmethod
    def _digest(query: Mapping[str, Any]) -> str:
        canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]

    def issue(self, query: Mapping[str, Any], created_at: datetime, item_id: str) -> str:
        return str(self._serializer.dumps([self._digest(query), created_at.isoformat(), item_id]))

    def issue_number(self, query: Mapping[str, Any], number: int) -> str:
        """A cursor after ``number`` in a list ordered by a number (model versions, highest
        first)."""
        return str(self._serializer.dumps([self._digest(query), number]))

    def read(self, token: str, query: Mapping[str, Any]) -> tuple[datetime, str]:
        """The cursor in ``token``; 400 when it is not ours or belongs to other filters."""
        try:
            digest, created_at, item_id = self._serializer.loads(token)
            after = (datetime.fromisoformat(created_at), str(item_id))
        except (BadSignature, ValueError, TypeError):
            raise _not_a_token() from None
        _check_digest(digest, self._digest(query))
        return after

    def read_number(self, token: str, query: Mapping[str, Any]) -> int:
        """The number in a token of :meth:`issue_number`; 400 as :meth:`read`."""
        try:
            digest, number = self._serializer.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise _not_a_token() from None
        if type(number) is not int:
            raise _not_a_token()
        _check_digest(digest, self._digest(query))
        return number


def _not_a_token() -> MalformedRequest:
    return MalformedRequest(
        "page_token is not a token this server issued; pass the next_page_token of "
        "the previous page unchanged",
        [FieldViolation("query.page_token", "not a valid page token")],
    )


def _check_digest(digest: object, expected: str) -> None:
    if digest != expected:
        raise MalformedRequest(
            "page_token was issued for other filters; repeat the query that returned it "
            "(the same path and filters) or start again without page_token",
            [FieldViolation("query.page_token", "issued for a different query")],
        )


def next_link(request: Request, token: str) -> str:
    """``Link: <path?...&page_token=...>; rel="next"`` for the page after this one."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page_token"]
    params.append(("page_token", token))
    return f'<{request.url.path}?{urlencode(params)}>; rel="next"'


LINK_NEXT_HEADER = {
    "Link": {
        "description": 'The next page: `<...>; rel="next"` (absent on the last page)',
        "schema": {"type": "string"},
    }
}

# -- v1 deprecation ---------------------------------------------------------------------------


def deprecation_headers(sunset: datetime | None) -> list[tuple[bytes, bytes]]:
    """The headers every v1 response carries."""
    headers = [
        (b"deprecation", f"@{int(V1_DEPRECATED_AT.timestamp())}".encode()),
        (b"link", f'<{MIGRATION_PATH}>; rel="deprecation"; type="text/html"'.encode()),
    ]
    if sunset is not None:
        when = sunset if sunset.tzinfo is not None else sunset.replace(tzinfo=UTC)
        headers.append((b"sunset", format_datetime(when.astimezone(UTC), usegmt=True).encode()))
    return headers


def _is_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class VersionHeadersMiddleware:
    """v1: the deprecation headers on every response; v2: the ``API-Date`` it was served with."""

    def __init__(self, app: ASGIApp, *, sunset: datetime | None = None) -> None:
        self.app = app
        self._v1_headers = deprecation_headers(sunset)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        v1 = _is_v1(path)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if v1:
                    headers.extend(self._v1_headers)
                else:
                    date = scope.get("state", {}).get("api_date")
                    if isinstance(date, str):
                        headers.append((b"api-date", date.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- the migration page -----------------------------------------------------------------------

MIGRATION_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Migrating from v1 to v2</title></head>
<body>
<h1>Migrating from ml-platform v1 to v2</h1>
<p>v1 is deprecated since {V1_DEPRECATED_AT:%Y-%m-%d}: it keeps working unchanged until its
<code>Sunset</code> date (sent on every v1 response once an administrator sets one).</p>
<h2>What changes</h2>
<ul>
<li>Paths: <code>/v1/jobs/training</code>, <code>/v1/models</code> (versions, aliases,
artifacts) and <code>/v1/deployments</code> become <code>/v2/jobs/training</code>,
<code>/v2/models</code> and <code>/v2/deployments</code>; bodies you send are the same. A job's
logs and metrics, data, code packages and <code>/v1/me</code> stay on v1 (v2 objects link
to them). With the Python SDK: <code>Client(api_version="v2")</code> or
<code>ML_PLATFORM_API_VERSION=v2</code>.</li>
<li>Lists page with cursors: send <code>page_size</code>, then pass each response's
<code>next_page_token</code> back as <code>page_token</code> (also in the
<code>Link: rel="next"</code> header) until it is <code>null</code>. <code>page</code>,
<code>total</code> and <code>has_more</code> are gone. A token only works with the filters it
was issued for (else 400). Pages never repeat or skip an item, even while items are created.
Model versions page highest first; everything else newest first.</li>
<li>Each resource carries <code>links</code> to itself and what belongs to it (a model version
to its model, artifact and training job; a deployment to its model and model version).</li>
<li>Minor changes are dated: send <code>API-Date</code> to choose them (default
<code>{DEFAULT_API_DATE}</code>).</li>
</ul>
<h2>Known API-Date values</h2>
<ul>
{"".join(f"<li><code>{date}</code>: {change}</li>" for date, change in API_DATES.items())}
</ul>
<p>The full reference is the OpenAPI document at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""

router = APIRouter()


@router.get(MIGRATION_PATH, include_in_schema=False)
async def migration_guide() -> HTMLResponse:
    """The page v1's ``Link: rel="deprecation"`` points at."""
    return HTMLResponse(MIGRATION_HTML)
