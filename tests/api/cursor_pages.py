"""Follow a v2 list's cursor pages to the end, checking each page's ``Link: rel="next"``, and
race it against an inserter thread (shared by the v2 models and deployments tests)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


def page_all(
    client: httpx.Client,
    path: str,
    key: str,
    params: dict[str, Any],
    between: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Every item of every page of ``GET path`` (items under ``key``) and the page count."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        query = dict(params) | ({"page_token": token} if token else {})
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {key, "next_page_token"}
        pages += 1
        items.extend(body[key])
        token = body["next_page_token"]
        if token is None:
            assert "link" not in response.headers
            return items, pages
        match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers["link"])
        assert match, response.headers["link"]
        url = urlsplit(match.group(1))
        assert url.path == path
        linked = parse_qs(url.query)
        assert linked["page_token"] == [token]
        for name, value in params.items():
            assert linked[name] == [str(value)]
        if between is not None:
            between()


class Inserter:
    """A thread that creates one item (``create()`` returns its id) each time a page is
    turned, and keeps creating while the reader reads: inserts race every page."""

    def __init__(self, create: Callable[[], str]) -> None:
        self._create = create
        self.inserted: list[str] = []
        self.failures: list[str] = []
        self._wanted = threading.Semaphore(0)
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.acquire(timeout=0.05)
            if self._stop.is_set():
                break
            try:
                self.inserted.append(self._create())
            except AssertionError as exc:
                self.failures.append(str(exc))
                break
            self._done.set()

    def turn_page(self) -> None:
        """Wait until at least one more item exists (called between two page reads)."""
        self._done.clear()
        self._wanted.release()
        assert self._done.wait(30), f"the inserter stalled: {self.failures}"

    def __enter__(self) -> Inserter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wanted.release()
        self._thread.join(30)
