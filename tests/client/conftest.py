"""SDK test helpers: one suite for both clients, and the failing proxy in front of a platform."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_platform import AsyncClient, Client
from tests.client._proxy import FailingProxy
from tests.conftest import Platform
from tests.jobs.conftest import jobs_platform as job_platform

# job_platform (re-exported fixture): a platform that runs jobs, scheduler on, local executor
__all__ = ["collect", "done", "job_platform", "make_client", "write_script"]

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


@pytest.fixture
def job_proxy(job_platform: Platform) -> Iterator[FailingProxy]:
    with FailingProxy(job_platform.base_url) as running:
        yield running


def write_script(directory: Path, text: str) -> Path:
    """A source dir holding ``train.py`` with ``text``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.py").write_text(text)
    return directory
