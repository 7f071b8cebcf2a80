"""SDK test helpers: one suite for both clients, and the failing proxy in front of a platform."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from ml_platform import AsyncClient, Client
from tests.client._proxy import FailingProxy
from tests.conftest import Platform

KINDS = ("sync", "async")


async def done(value: Any) -> Any:
    """The value of an SDK call, whichever client made it (awaits the async client's)."""
    return await value if inspect.isawaitable(value) else value


async def collect(iterable: Any) -> list[Any]:
    """Every item of a sync or async iterator."""
    if hasattr(iterable, "__aiter__"):
        return [item async for item in iterable]
    return list(iterable)


def make_client(kind: str, base_url: str, api_key: str, **options: Any) -> Client | AsyncClient:
    cls = Client if kind == "sync" else AsyncClient
    return cls(base_url=base_url, api_key=api_key, **options)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def proxy(platform: Platform) -> Iterator[FailingProxy]:
    with FailingProxy(platform.base_url) as running:
        yield running
