"""A front worker process: one ServingNode on the shared (SO_REUSEPORT) ports."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
from multiprocessing.connection import Connection

from ml_platform import logs_format, startup_heap
from ml_platform.config import Settings
from ml_platform.core.errors import PlatformError, Unauthenticated, Unavailable
from ml_platform.features.factory import build_online_features
from ml_platform.governance.ratelimit import build_rate_limiter
from ml_platform.serving.control import ControlChannel, Message
from ml_platform.serving.models import LoadState, Principal, ServedModel
from ml_platform.serving.workers.node import ServingNode

logger = logging.getLogger(__name__)


async def _run(
    settings: Settings, conn: Connection, sandbox_dir: str, grpc_port: int, rest_port: int
) -> None:
    stopped = asyncio.Event()
    waiting: dict[int, asyncio.Future[Principal]] = {}
    ids = itertools.count(1)
    node: ServingNode | None = None

    def on_message(msg: Message) -> None:
        op = msg.get("op")
        if op == "desired" and node is not None:
            node.apply(
                [ServedModel.from_dict(d) for d in msg["models"]], dict(msg.get("blamed", {}))
            )
        elif op == "auth":
            fut = waiting.pop(int(msg["id"]), None)
            if fut is None or fut.done():
                return
            if msg.get("ok"):
                fut.set_result(Principal(str(msg["tenant_id"]), str(msg["name"])))
            elif msg.get("code") == "UNAUTHENTICATED":
                fut.set_exception(Unauthenticated(str(msg.get("message", "invalid credentials"))))
            else:
                fut.set_exception(
                    Unavailable("authentication is temporarily unavailable; retry shortly")
                )
        elif op == "stop":
            stopped.set()

    def on_close() -> None:
        stopped.set()
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(Unavailable("serving worker is shutting down"))

    channel = ControlChannel(conn, on_message, on_close)

    async def resolve_auth(api_key: str | None, bearer: str | None) -> Principal:
        rid = next(ids)
        fut: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        waiting[rid] = fut
        channel.send({"op": "auth", "id": rid, "api_key": api_key, "bearer": bearer})
        return await fut

    def on_status(m: ServedModel, state: LoadState, reason: str, pid: int) -> None:
        channel.send(
            {"op": "status", "key": m.key, "state": state.value, "reason": reason, "pid": pid}
        )

    features = build_online_features(settings)  # FeatureServing reads the store itself
    node = ServingNode(
        host=settings.grpc_host,
        max_message_bytes=settings.grpc_max_message_bytes,
        allow_pickle=settings.allow_pickle,
        load_timeout=settings.serving_model_load_timeout_seconds,
        auth_cache_seconds=settings.serving_auth_cache_seconds,
        resolve_auth=resolve_auth,
        on_status=on_status,
        sandbox_dir=sandbox_dir,
        reuse_port=True,
        compile_forests=settings.serving_compile_forests,
        sandbox_export=settings.serving_sandbox_export,
        rate_limiter=build_rate_limiter(settings),  # the data plane's budgets
        metrics_token=(
            settings.serving_metrics_token.get_secret_value()
            if settings.serving_metrics_token is not None
            else None
        ),
        features=features,
    )
    channel.start()
    await node.start(grpc_port, rest_port)
    startup_heap.freeze()
    channel.send({"op": "hello", "pid": os.getpid()})
    await stopped.wait()
    await node.stop()
    features.close()
    channel.close()


def worker_main(
    settings: Settings, conn: Connection, sandbox_dir: str, grpc_port: int, rest_port: int
) -> None:
    """Entry point of a front worker process (multiprocessing ``spawn`` target)."""
    logs_format.install(  # the request id in every line; JSON with ML_PLATFORM_LOG_FORMAT=json
        settings.log_format,
        level=logging.WARNING,
        text_format=(
            f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s [%(request_id)s] %(message)s"
        ),
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    # The model thread and the event loop share one core: hand the GIL over quickly.
    sys.setswitchinterval(0.0005)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    try:
        asyncio.run(_run(settings, conn, sandbox_dir, grpc_port, rest_port))
    except PlatformError as exc:  # pragma: no cover - start-up failure, reported by exit code
        logger.error("worker failed to start: %s", exc)
        raise SystemExit(2) from exc
