"""REST form of the Open Inference Protocol (KServe V2), as a bare ASGI app.

No framework on this path: routing is a split of the path, bodies are parsed with orjson,
tensors become numpy arrays directly, and Triton's binary tensor extension
(``Inference-Header-Content-Length``) is supported both ways, so ``tritonclient.http``
works unmodified. Errors are RFC 9457 problem documents that also carry V2's ``error`` field.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson

from ml_platform.core.errors import (
    ErrorCode,
    FieldViolation,
    InvalidArgument,
    PayloadTooLarge,
    PlatformError,
)
from ml_platform.serving import v2
from ml_platform.serving.dataplane import SERVER_NAME, SERVER_VERSION, DataPlane
from ml_platform.serving.models import Principal

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PRECONDITION_FAILED: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.INTERNAL: 500,
}
_JSON = [(b"content-type", b"application/json")]
_HEADER_LEN = b"inference-header-content-length"


class _NotFoundRoute(PlatformError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no route {path}", ErrorCode.NOT_FOUND)


class RestV2App:
    def __init__(self, plane: DataPlane, max_body_bytes: int) -> None:
        self._plane = plane
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._route(scope, receive)
        except PlatformError as exc:
            status, headers, body = _problem(exc, scope["path"])
        except Exception:
            logger.exception("unexpected error in V2 REST")
            status, headers, body = _problem(
                PlatformError("internal error in the serving plane; it has been logged"),
                scope["path"],
            )
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        if not parts or parts[0] != "v2":
            raise _NotFoundRoute(scope["path"])
        if len(parts) == 1 and method == "GET":
            meta = {
                "name": SERVER_NAME,
                "version": SERVER_VERSION,
                "extensions": ["binary_tensor_data"],
            }
            return 200, list(_JSON), orjson.dumps(meta)
        if parts[1] == "health" and len(parts) == 3 and method == "GET":
            if parts[2] == "live":
                return 200, list(_JSON), b'{"live":true}'
            if parts[2] == "ready":
                ready = self._plane.repository.ready_once.is_set()
                return (200 if ready else 503), list(_JSON), orjson.dumps({"ready": ready})
        if parts[1] == "models" and len(parts) >= 3:
            name = parts[2]
            rest = parts[3:]
            version = ""
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if not rest and method == "GET":
                principal = await self._principal(scope)
                meta = v2.model_metadata(self._plane.resolve(principal, name, version))
                return 200, list(_JSON), orjson.dumps(meta)
            if rest == ["ready"] and method == "GET":
                principal = await self._principal(scope)
                try:
                    self._plane.resolve(principal, name, version)
                except PlatformError as exc:
                    if exc.code is ErrorCode.NOT_FOUND:
                        raise
                    return 400, list(_JSON), orjson.dumps({"ready": False})
                return 200, list(_JSON), b'{"ready":true}'
            if rest == ["infer"] and method == "POST":
                principal = await self._principal(scope)
                body = await self._read_body(receive)
                return await self._infer(scope, principal, name, version, body)
        raise _NotFoundRoute(scope["path"])

    async def _principal(self, scope: Scope) -> Principal:
        api_key = bearer = None
        for key, value in scope["headers"]:
            if key == b"x-api-key":
                api_key = value.decode("latin-1")
            elif key == b"authorization":
                text = value.decode("latin-1")
                if text[:7].lower() == "bearer ":
                    bearer = text[7:].strip()
        return await self._plane.authenticate(api_key, bearer)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise PayloadTooLarge(f"request body exceeds the {self._max_body} byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _infer(
        self, scope: Scope, principal: Principal, name: str, version: str, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        model = self._plane.resolve(principal, name, version)
        header_len = None
        for key, value in scope["headers"]:
            if key == _HEADER_LEN:
                header_len = _header_length(value, len(body))
        json_part = body if header_len is None else body[:header_len]
        binary = b"" if header_len is None else body[header_len:]
        try:
            doc = orjson.loads(json_part)
            inputs = doc["inputs"]
            if not isinstance(inputs, list):
                raise TypeError("inputs must be a list")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"malformed V2 infer request: {exc}",
                [FieldViolation("inputs", "a list of tensors is required")],
            ) from exc
        tensors = []
        offset = 0
        for spec in inputs:
            if not isinstance(spec, dict):
                raise InvalidArgument(
                    "each entry of inputs must be a tensor object (name, datatype, shape, data)",
                    [FieldViolation("inputs", "not an object")],
                )
            tname = str(spec.get("name", ""))[:64]
            datatype = str(spec.get("datatype", ""))[:16]
            raw_shape = spec.get("shape", ())
            if not isinstance(raw_shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in raw_shape
            ):
                raise InvalidArgument(
                    f"input {tname}: shape must be a list of integers",
                    [FieldViolation(f"inputs.{tname}.shape", "a list of integers")],
                )
            shape = tuple(raw_shape)
            dt = v2.numpy_dtype(model, tname, datatype)
            nbytes = (spec.get("parameters") or {}).get("binary_data_size")
            if nbytes is not None:
                chunk = binary[offset : offset + int(nbytes)]
                offset += int(nbytes)
                if len(chunk) != int(nbytes) or len(chunk) % dt.itemsize:
                    raise InvalidArgument(
                        f"input {tname}: binary data is shorter than binary_data_size"
                    )
                data = np.frombuffer(chunk, dtype=dt)
            else:
                try:
                    data = np.asarray(spec["data"], dtype=dt).reshape(-1)
                except (KeyError, TypeError, ValueError) as exc:
                    raise InvalidArgument(
                        f"input {tname}: data must be a numeric array",
                        [FieldViolation(f"inputs.{tname}.data", str(exc))],
                    ) from exc
            v2.check_shape(model, tname, shape, data.size)
            tensors.append(v2.Tensor(tname, datatype, shape, data))
        rows = v2.tensors_to_rows(model, tensors)
        self._plane.check_rows(model, rows)
        pred = await self._plane.predict(model, rows)
        requested = doc.get("outputs") or []
        binary_all = bool((doc.get("parameters") or {}).get("binary_data_output", False))
        want_binary = {
            str(o.get("name")): bool((o.get("parameters") or {}).get("binary_data", binary_all))
            for o in requested
        }
        outs = v2.prediction_tensors(model, pred, [str(o.get("name")) for o in requested])
        out_docs: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for t in outs:
            entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
            if want_binary.get(t.name, binary_all):
                blob = t.data.tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = t.data.reshape(-1)
            out_docs.append(entry)
        result: dict[str, Any] = {
            "model_name": model.served.deployment,
            "model_version": model.version_str,
            "outputs": out_docs,
        }
        if "id" in doc:
            result["id"] = doc["id"]
        head = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        if not blobs:
            return 200, list(_JSON), head
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(len(head)).encode()),
        ]
        return 200, headers, head + b"".join(blobs)


def _header_length(value: bytes, body_size: int) -> int:
    """The ``Inference-Header-Content-Length`` value, or INVALID_ARGUMENT saying why not."""
    text = value.decode("latin-1").strip()
    if not (text.isascii() and text.isdigit()) or int(text) > body_size:
        raise InvalidArgument(
            "Inference-Header-Content-Length must be a whole number of bytes no larger than "
            f"the body ({body_size} bytes)",
            [FieldViolation("Inference-Header-Content-Length", "not a valid byte count")],
        )
    return int(text)


def _problem(exc: PlatformError, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status = HTTP_STATUS.get(exc.code, 500)
    doc: dict[str, Any] = {
        "type": "about:blank",
        "title": exc.code.value.replace("_", " ").capitalize(),
        "status": status,
        "detail": exc.message,
        "instance": path,
        "code": exc.code.value,
        "error": exc.message,  # the V2 protocol's error field, read by V2 clients
    }
    if exc.violations:
        doc["errors"] = [{"path": v.field, "message": v.message} for v in exc.violations]
    headers = [(b"content-type", b"application/problem+json")]
    if status == 401:
        headers.append(
            (b"www-authenticate", b'Bearer realm="ml-platform", ApiKey header="x-api-key"')
        )
    return status, headers, orjson.dumps(doc)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
