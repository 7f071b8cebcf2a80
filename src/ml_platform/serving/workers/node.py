"""One serving node: a model repository, the data plane, and its gRPC + REST listeners.

A worker process runs one node; tests and the single-process mode run one in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import uvicorn

from ml_platform.features.lookup import OnlineFeatures
from ml_platform.governance.ratelimit import RateLimiter
from ml_platform.serving.adapters.grpc_server import build_grpc_server, set_serving
from ml_platform.serving.adapters.ratelimit import RateLimitedAuthCache
from ml_platform.serving.adapters.rest_v2 import RestV2App
from ml_platform.serving.models import ServedModel
from ml_platform.serving.plane.auth_cache import AuthCache, ResolveFn
from ml_platform.serving.plane.dataplane import DataPlane
from ml_platform.serving.plane.repository import ModelRepository, StatusCallback

logger = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handling: the node's owner decides when to stop."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class ServingNode:
    def __init__(
        self,
        *,
        host: str,
        max_message_bytes: int,
        allow_pickle: bool,
        load_timeout: float,
        auth_cache_seconds: float,
        resolve_auth: ResolveFn,
        on_status: StatusCallback,
        sandbox_dir: str | None,
        reuse_port: bool,
        compile_forests: bool = True,
        sandbox_export: bool = True,
        rate_limiter: RateLimiter | None = None,
        metrics_token: str | None = None,
        features: OnlineFeatures | None = None,
    ) -> None:
        self._host = host
        self._metrics_token = metrics_token  # what GET /metrics needs (else loopback only)
        self._features = features  # FeatureServing's lookups (None: the RPC answers UNAVAILABLE)
        self._max_message_bytes = max_message_bytes
        self._reuse_port = reuse_port
        self.repository = ModelRepository(
            allow_pickle=allow_pickle,
            load_timeout=load_timeout,
            sandbox_dir=sandbox_dir,
            on_status=on_status,
            compile_forests=compile_forests,
            sandbox_export=sandbox_export,
        )
        auth = (
            AuthCache(resolve_auth, auth_cache_seconds)
            if rate_limiter is None
            else RateLimitedAuthCache(resolve_auth, auth_cache_seconds, rate_limiter)
        )
        self.plane = DataPlane(self.repository, auth)
        self._grpc: Any = None
        self._health: Any = None
        self._rest: _QuietServer | None = None
        self._rest_task: asyncio.Task[None] | None = None
        self._ready_task: asyncio.Task[None] | None = None
        self.grpc_port = 0
        self.rest_port = 0

    async def start(self, grpc_port: int, rest_port: int) -> None:
        self.repository.start()
        self._grpc, self._health = build_grpc_server(
            self.plane,
            max_message_bytes=self._max_message_bytes,
            reuse_port=self._reuse_port,
            features=self._features,
        )
        bound = self._grpc.add_insecure_port(f"{self._host}:{grpc_port}")
        if bound == 0:
            raise OSError(f"cannot bind gRPC on {self._host}:{grpc_port}")
        self.grpc_port = bound
        await self._grpc.start()
        # NOT_SERVING until the desired models loaded (or failed), like V2 readiness
        await set_serving(self._health, False)
        self._ready_task = asyncio.get_running_loop().create_task(self._serving_when_ready())
        sock = listen_socket(self._host, rest_port, reuse_port=self._reuse_port)
        self.rest_port = sock.getsockname()[1]
        config = uvicorn.Config(
            RestV2App(self.plane, self._max_message_bytes, self._metrics_token),
            http="httptools",
            loop="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=30,
        )
        self._rest = _QuietServer(config)
        self._rest_task = asyncio.get_running_loop().create_task(self._rest.serve(sockets=[sock]))

    async def _serving_when_ready(self) -> None:
        await self.repository.ready_once.wait()
        await set_serving(self._health, True)

    def apply(self, models: list[ServedModel], blamed: dict[str, str]) -> None:
        self.repository.apply(models, blamed)

    async def stop(self, grace: float = 2.0) -> None:
        if self._ready_task is not None:
            self._ready_task.cancel()
            with contextlib.suppress(BaseException):
                await self._ready_task
        if self._health is not None:
            await set_serving(self._health, False)
        if self._rest is not None:
            self._rest.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._rest_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._rest_task, grace + 1)
        await self.repository.close()
