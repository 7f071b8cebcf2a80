"""Entry points: ``run_serving`` for the composition root / ``mlp serve``, and
``ServingServer`` to run the whole multi-process serving plane from a thread (tests, benches).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from types import TracebackType

from ml_platform.config import Settings
from ml_platform.serving.seams import Authenticator, DeploymentSource, DeploymentStatusSink
from ml_platform.serving.workers.supervisor import ServingSupervisor


async def serve_until(
    stop: asyncio.Event,
    settings: Settings,
    source: DeploymentSource,
    status_sink: DeploymentStatusSink,
    authenticator: Authenticator,
) -> None:
    """Run the serving plane on the current loop until ``stop`` is set."""
    await ServingSupervisor(settings, source, status_sink, authenticator).run(stop)


def run_serving(
    settings: Settings,
    source: DeploymentSource,
    status_sink: DeploymentStatusSink,
    authenticator: Authenticator,
) -> None:
    """Serve until SIGINT/SIGTERM: gRPC on ``grpc_host:grpc_port`` (seed ModelServing + V2,
    health, reflection) and V2 REST on ``serving_rest_port``, with ``serving_workers`` workers."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_until(stop, settings, source, status_sink, authenticator)

    asyncio.run(main())


class ServingServer:
    """The serving plane on a background thread; ``with ServingServer(...) as s: s.grpc_port``."""

    def __init__(
        self,
        settings: Settings,
        source: DeploymentSource,
        status_sink: DeploymentStatusSink,
        authenticator: Authenticator,
    ) -> None:
        self.supervisor = ServingSupervisor(settings, source, status_sink, authenticator)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def grpc_port(self) -> int:
        return self.supervisor.grpc_port

    @property
    def rest_port(self) -> int:
        return self.supervisor.rest_port

    @property
    def grpc_target(self) -> str:
        return f"{self.supervisor.settings.grpc_host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.supervisor.settings.grpc_host}:{self.rest_port}"

    def worker_pids(self) -> list[int]:
        return [c.pid for c in list(self.supervisor._fronts.values()) if c.pid]

    def sandbox_pids(self) -> dict[str, int]:
        return {t: c.pid for t, c in list(self.supervisor._sandboxes.items()) if c.pid}

    def start(self, timeout: float = 60.0) -> ServingServer:
        def target() -> None:
            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                task = asyncio.create_task(self.supervisor.run(self._stop))
                started = asyncio.create_task(self.supervisor.started.wait())
                done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
                started.cancel()
                if task in done:  # it failed to start (e.g. a port taken): raise it here,
                    await task  # before ``start`` is told anything
                self._started.set()
                await task

            try:
                asyncio.run(main())
            except BaseException as exc:  # surfaced to the starting thread
                self._error = exc
                self._started.set()

        self._thread = threading.Thread(target=target, name="serving-supervisor", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("serving supervisor did not start")
        if self._error is not None:
            raise RuntimeError("serving supervisor failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(15)

    def __enter__(self) -> ServingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
