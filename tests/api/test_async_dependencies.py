"""Every dependency of every route is a coroutine function: FastAPI runs a plain ``def``
dependency in its thread pool, one thread hop per request for work that never blocks (the
route endpoints themselves may be ``def``: those do blocking database work on purpose)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute, APIWebSocketRoute

from ml_platform.config import Settings
from ml_platform.server.app import create_app


def _dependencies(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _routes(routes: Any) -> Iterator[Any]:
    for route in routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield route
        nested = getattr(route, "original_router", None)  # FastAPI keeps included ones nested
        if nested is not None:
            yield from _routes(nested.routes)


def _is_async(call: Any) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    # security schemes and other callables instances: their __call__ decides
    dunder = getattr(call, "__call__", None)  # noqa: B004
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(dunder)


def test_no_route_has_a_dependency_that_takes_a_thread_hop(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/deps.db")
    app = create_app(settings)
    routes = list(_routes(app.router.routes))
    assert len(routes) > 50  # the whole API was walked
    sync = sorted(
        {
            f"{getattr(dep.call, '__module__', '?')}.{getattr(dep.call, '__qualname__', dep.call)}"
            for route in routes
            for dep in _dependencies(route.dependant)
            if dep.call is not None and not _is_async(dep.call)
        }
    )
    assert sync == [], f"sync dependencies (each a thread hop per request): {sync}"
