"""Auto-paginating iterators: ``for x in client.jobs.list()`` / ``async for`` follow pages lazily.

A pager asks ``fetch(cursor)`` for one page (its items and the next cursor, ``None`` at the
end) only when the previous page is used up. v1 lists page with ``page``/``page_size``/
``has_more``; metric history with ``after_id``; both fit the same shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["AsyncPager", "Page", "SyncPager", "next_page"]

T = TypeVar("T")
Page = tuple[list[T], Any]  # (items, next cursor or None)


def next_page(body: Any, page: int) -> int | None:
    """The v1 cursor: the next page number while ``has_more`` is true."""
    return page + 1 if isinstance(body, dict) and body.get("has_more") else None


class SyncPager(Generic[T]):
    """Iterate every item of every page; pages are fetched on demand."""

    def __init__(self, fetch: Callable[[Any], Page[T]], first: Any = 1) -> None:
        self._fetch = fetch
        self._first = first

    def __iter__(self) -> Iterator[T]:
        cursor: Any = self._first
        while cursor is not None:
            items, cursor = self._fetch(cursor)
            yield from items
            if not items:
                return

    def to_list(self, limit: int | None = None) -> list[T]:
        """Every item, or the first ``limit`` (no page beyond the one that holds the last)."""
        out: list[T] = []
        if limit is not None and limit <= 0:
            return out
        for item in self:
            out.append(item)
            if limit is not None and len(out) >= limit:
                break
        return out


class AsyncPager(Generic[T]):
    """``async for`` every item of every page; pages are fetched on demand."""

    def __init__(self, fetch: Callable[[Any], Awaitable[Page[T]]], first: Any = 1) -> None:
        self._fetch = fetch
        self._first = first

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        cursor: Any = self._first
        while cursor is not None:
            items, cursor = await self._fetch(cursor)
            for item in items:
                yield item
            if not items:
                return

    async def to_list(self, limit: int | None = None) -> list[T]:
        """Every item, or the first ``limit`` (no page beyond the one that holds the last)."""
        out: list[T] = []
        if limit is not None and limit <= 0:
            return out
        async for item in self:
            out.append(item)
            if limit is not None and len(out) >= limit:
                break
        return out
