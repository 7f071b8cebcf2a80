"""A real, misbehaving gRPC ``ModelServing`` server on loopback in front of a serving plane.

Each ``Predict`` either fails as the test queued (abort with a status code, or stall past the
caller's deadline) or is forwarded to the real serving plane with the caller's metadata.
Every call is recorded (time and metadata), so tests assert what the SDK sent and when.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from ml_platform.serving.proto import serving_pb2_grpc

__all__ = ["GrpcFail", "GrpcProxy"]


@dataclass(frozen=True)
class GrpcFail:
    code: grpc.StatusCode | None = None  # abort with this status
    stall: float = 0.0  # answer nothing for this long first


class GrpcProxy(serving_pb2_grpc.ModelServingServicer):
    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._stub = serving_pb2_grpc.ModelServingStub(self._channel)
        self._plan: deque[GrpcFail] = deque()
        self._lock = threading.Lock()
        self.calls: list[tuple[float, dict[str, str]]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        serving_pb2_grpc.add_ModelServingServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    def __enter__(self) -> GrpcProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
        self._channel.close()

    def fail(self, *failures: GrpcFail) -> None:
        with self._lock:
            self._plan.extend(failures)

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        metadata = {k: str(v) for k, v in context.invocation_metadata()}
        with self._lock:
            failure = self._plan.popleft() if self._plan else None
            self.calls.append((time.monotonic(), metadata))
        if failure is not None and failure.stall:
            deadline = time.monotonic() + failure.stall
            while time.monotonic() < deadline and context.is_active():
                time.sleep(0.02)
        if failure is not None and failure.code is not None:
            context.abort(failure.code, f"test proxy: {failure.code.name}")
        forwarded = tuple((k, v) for k, v in metadata.items() if k == "x-api-key")
        return self._stub.Predict(request, metadata=forwarded, timeout=30)
