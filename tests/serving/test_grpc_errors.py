"""The one gRPC error decorator (``rpc_errors``) on a real grpc.aio server on loopback.

The servicer methods here raise on purpose: they stand in for any adapter method, unary or
streaming, so that what the decorator does with an error is what a client sees.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ml_platform.core.errors import FieldViolation, InvalidArgument, NotFound, PlatformError
from ml_platform.serving.adapters.grpc_errors import INTERNAL_MESSAGE, rpc_errors
from ml_platform.serving.proto import serving_pb2

SERVICE = "test.Errors"
SECRET = "secret detail /srv/models/key.pem"


class Raising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    @rpc_errors
    async def Unary(self, request: Any, context: Any) -> serving_pb2.PredictResponse:
        raise self.error

    @rpc_errors
    async def Stream(
        self, request: AsyncIterator[serving_pb2.PredictRequest], context: Any
    ) -> AsyncIterator[serving_pb2.PredictResponse]:
        async for _ in request:
            yield serving_pb2.PredictResponse(predictions=[1.0])
            raise self.error


class Server:
    def __init__(self) -> None:
        self.servicer = Raising(RuntimeError(SECRET))
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            server = grpc.aio.server()
            handlers = {
                "Unary": grpc.unary_unary_rpc_method_handler(
                    self.servicer.Unary,
                    request_deserializer=serving_pb2.PredictRequest.FromString,
                    response_serializer=serving_pb2.PredictResponse.SerializeToString,
                ),
                "Stream": grpc.stream_stream_rpc_method_handler(
                    self.servicer.Stream,
                    request_deserializer=serving_pb2.PredictRequest.FromString,
                    response_serializer=serving_pb2.PredictResponse.SerializeToString,
                ),
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE, handlers),)
            )
            self.port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self._stop = asyncio.Event()
            self._started.set()
            await self._stop.wait()
            await server.stop(0)

        self._loop.run_until_complete(main())

    def start(self) -> Server:
        self._thread.start()
        assert self._started.wait(30)
        return self

    def close(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server().start()
    yield s
    s.close()


def _calls(server: Server, error: BaseException) -> tuple[grpc.RpcError, grpc.RpcError, int]:
    server.servicer.error = error
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        unary = channel.unary_unary(
            f"/{SERVICE}/Unary",
            request_serializer=serving_pb2.PredictRequest.SerializeToString,
            response_deserializer=serving_pb2.PredictResponse.FromString,
        )
        stream = channel.stream_stream(
            f"/{SERVICE}/Stream",
            request_serializer=serving_pb2.PredictRequest.SerializeToString,
            response_deserializer=serving_pb2.PredictResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as u:
            unary(serving_pb2.PredictRequest(), timeout=10)
        answered = 0
        with pytest.raises(grpc.RpcError) as s:
            for _ in stream(iter([serving_pb2.PredictRequest()] * 3), timeout=10):
                answered += 1
    return u.value, s.value, answered


def test_unexpected_errors_are_internal_with_a_generic_message(server: Server) -> None:
    for err in _calls(server, RuntimeError(SECRET))[:2]:
        assert err.code() == grpc.StatusCode.INTERNAL
        assert err.details() == INTERNAL_MESSAGE
        assert "secret" not in err.details()
    _, streamed, answered = _calls(server, KeyError(SECRET))
    assert answered == 1  # what the stream answered before the error still arrives
    assert streamed.code() == grpc.StatusCode.INTERNAL and "secret" not in streamed.details()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            InvalidArgument("bad row", [FieldViolation("features.f0", "missing")]),
            "INVALID_ARGUMENT",
        ),
        (NotFound("model 'm' not found"), "NOT_FOUND"),
        (PlatformError("model failed; the error is logged"), "INTERNAL"),
    ],
)
def test_domain_errors_keep_their_status_and_message(
    server: Server, error: PlatformError, code: str
) -> None:
    for err in _calls(server, error)[:2]:
        assert err.code() == grpc.StatusCode[code]
        assert err.details() == error.message
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert any(d.Unpack(info) for d in status.details) and info.reason == error.code.value
