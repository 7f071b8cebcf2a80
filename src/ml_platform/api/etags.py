"""Entity tags and conditional requests (RFC 9110 section 13), shared by every resource route."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Header, Response, status
from pydantic import BaseModel

from ml_platform.core.errors import PreconditionFailed

IfNoneMatch = Annotated[
    str | None, Header(description="An ETag from an earlier GET: 304 when it still matches")
]
IfMatchCurrent = Annotated[
    str | None,
    Header(description="The resource's ETag from your last GET: 412 when it changed since"),
]

ETAG_HEADER = {
    "ETag": {"description": "Entity tag of this representation", "schema": {"type": "string"}}
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: your `If-None-Match` ETag is current"}
}


def etag_of(model: BaseModel) -> str:
    return '"' + hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:32] + '"'


def matches(header: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison against an ``If-None-Match`` list (or ``*``)."""
    if header is None:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def cached(response: Response, model: BaseModel, if_none_match: str | None) -> Response | None:
    """A 304 when ``If-None-Match`` holds ``model``'s ETag; else set the ETag, return None."""
    etag = etag_of(model)
    if matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return None


def if_match_value(value: str | None) -> str | None:
    """An ``If-Match`` header as the bare tag a store compares (``*`` kept)."""
    if value is None:
        return None
    value = value.strip()
    if value == "*":
        return value
    return value.removeprefix("W/").strip('"')


def require_current(if_match: str | None, current: BaseModel, what: str) -> None:
    """``If-Match`` on a write: PreconditionFailed (412) unless it names ``current``'s ETag.

    No header: no precondition. The check and the write are two steps, so a change that
    lands between them is not caught; a store-side compare (as aliases have) closes that.
    """
    if if_match is None:
        return
    if not matches(if_match, etag_of(current)):
        raise PreconditionFailed(
            f"{what} changed since you read it (If-Match does not hold its current ETag); "
            "GET it again and retry with the new ETag"
        )
