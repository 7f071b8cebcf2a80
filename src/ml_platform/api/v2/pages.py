"""v2 cursor pages: how every v2 list reads its ``page_token`` and answers its page.

A list fetches one item more than ``page_size`` (keyset, strictly after the token's cursor);
when that extra item exists, the page's last item becomes the next token, signed and bound
to the list's query (``api.versioning.PageTokens``), also sent as ``Link: rel="next"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ml_platform.api.context import ApiContext
from ml_platform.api.versioning import PageTokens, next_link

__all__ = ["PageTokenQuery", "page_by_number", "page_by_time", "page_response", "page_tokens"]

PageTokenQuery = Annotated[
    str | None,
    Query(
        max_length=1024,
        description="`next_page_token` of the previous page, with the same filters",
    ),
]


class Timestamped(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


T = TypeVar("T")
S = TypeVar("S", bound=Timestamped)


def page_tokens(context: ApiContext) -> PageTokens:
    return PageTokens(context.settings.jwt_secret.get_secret_value())


async def page_by_time(
    tokens: PageTokens,
    query: Mapping[str, Any],
    page_token: str | None,
    page_size: int,
    fetch: Callable[[tuple[datetime, str] | None, int], list[S]],
) -> tuple[list[S], str | None]:
    """A page of a list ordered ``created_at desc, id desc``: ``fetch(after, limit)`` returns
    up to ``limit`` items strictly after ``after``. Returns the items and the next token."""
    after = tokens.read(page_token, query) if page_token is not None else None
    items = await run_in_threadpool(fetch, after, page_size + 1)
    if len(items) <= page_size:
        return items, None
    items = items[:page_size]
    return items, tokens.issue(query, items[-1].created_at, items[-1].id)


async def page_by_number(
    tokens: PageTokens,
    query: Mapping[str, Any],
    page_token: str | None,
    page_size: int,
    fetch: Callable[[int | None, int], list[T]],
    number: Callable[[T], int],
) -> tuple[list[T], str | None]:
    """A page of a list ordered by a unique number, highest first: ``fetch(below, limit)``
    returns up to ``limit`` items numbered below ``below``."""
    below = tokens.read_number(page_token, query) if page_token is not None else None
    items = await run_in_threadpool(fetch, below, page_size + 1)
    if len(items) <= page_size:
        return items, None
    items = items[:page_size]
    return items, tokens.issue_number(query, number(items[-1]))


def page_response(
    request: Request, key: str, items: list[dict[str, Any]], token: str | None
) -> JSONResponse:
    """``{key: items, "next_page_token": token}`` with ``Link: rel="next"`` when more follow."""
    headers = {"Link": next_link(request, token)} if token is not None else {}
    return JSONResponse({key: items, "next_page_token": token}, headers=headers)
