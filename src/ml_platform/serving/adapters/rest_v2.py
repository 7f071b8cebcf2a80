"""REST form of the Open Inference Protocol (KServe V2), as a bare ASGI app.

No framework on this path: routing is a split of the path, infer bodies are parsed with
simdjson (float tensors straight into numpy: ``json_tensors``), answers are written by
orjson, and Triton's binary tensor extension (``Inference-Header-Content-Length``) is
supported both ways, so ``tritonclient.http`` works unmodified. Errors are RFC 9457 problem
documents from ``core.problems`` (with ``request_id``) that also carry V2's ``error`` field.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson

from ml_platform.core.errors import (
    ErrorCode,
    FieldViolation,
    InternalError,
    InvalidArgument,
    PayloadTooLarge,
    PermissionDenied,
    PlatformError,
    Unauthenticated,
)
from ml_platform.core.problems import (
    PROBLEM_JSON,
    problem_bytes,
    problem_from_error,
    problem_headers,
)
from ml_platform.governance.ratelimit import RateLimited, RateLimitUnavailable
from ml_platform.logs_format import accept_request_id, bind_request_id, new_request_id
from ml_platform.serving.adapters.grpc_errors import (
    MAX_FIELD_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_VIOLATIONS,
    bounded,
)
from ml_platform.serving.adapters.json_tensors import loads_infer_request
from ml_platform.serving.models import Principal
from ml_platform.serving.plane import metrics, v2
from ml_platform.serving.plane.dataplane import SERVER_NAME, SERVER_VERSION, DataPlane, InferRequest
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.runtimes.base import FloatArray, Prediction

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

Response = tuple[int, list[tuple[bytes, bytes]], bytes]
_JSON = [(b"content-type", b"application/json")]
_HEADER_LEN = b"inference-header-content-length"


class _NotFoundRoute(PlatformError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no route {path}", ErrorCode.NOT_FOUND)


class RestV2App:
    """``metrics_token``: what ``GET /metrics`` needs as ``Authorization: Bearer``; without
    one, ``/metrics`` answers loopback clients only (its labels name tenants and
    deployments, which data-plane callers of other tenants must not read)."""

    def __init__(
        self, plane: DataPlane, max_body_bytes: int, metrics_token: str | None = None
    ) -> None:
        self._plane = plane
        self._max_body = max_body_bytes
        self._metrics_token = metrics_token.encode() if metrics_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = _request_id(scope)
        with bind_request_id(request_id):  # every log line of this request names it
            try:
                status, headers, body = await self._route(scope, receive)
                headers.append((b"x-request-id", request_id.encode()))
            except PlatformError as exc:
                status, headers, body = _problem(exc, scope, request_id)
            except Exception:
                logger.exception("unexpected error in V2 REST (request_id %s)", request_id)
                status, headers, body = _problem(InternalError(), scope, request_id)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: Scope, receive: Receive) -> Response:
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        if parts == ["metrics"] and method == "GET":  # every worker's samples (multi-process)
            self._check_scraper(scope)
            text = await asyncio.to_thread(metrics.render)
            return 200, [(b"content-type", metrics.METRICS_CONTENT_TYPE.encode())], text
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
            if rest == ["config"] and method == "GET":
                principal = await self._principal(scope)
                config = v2.model_config(self._plane.resolve(principal, name, version))
                return 200, list(_JSON), orjson.dumps(config)
            if rest == ["ready"] and method == "GET":
                principal = await self._principal(scope)
                if self._plane.model_ready(principal, name, version):
                    return 200, list(_JSON), b'{"ready":true}'
                return 400, list(_JSON), orjson.dumps({"ready": False})
            if rest == ["infer"] and method == "POST":
                principal = await self._principal(scope)
                body = await self._read_body(receive)
                codec = _InferCodec(scope, body)
                result = await self._plane.infer(
                    principal, InferRequest(name, version, codec.decode, codec.encode)
                )
                return result
        raise _NotFoundRoute(scope["path"])

    def _check_scraper(self, scope: Scope) -> None:
        """The bearer token when one is configured, else a loopback client."""
        if self._metrics_token is not None:
            sent = b""
            for key, value in scope["headers"]:
                if key == b"authorization" and value[:7].lower() == b"bearer ":
                    sent = value[7:].strip()
            if not hmac.compare_digest(sent, self._metrics_token):
                raise Unauthenticated(
                    "GET /metrics needs Authorization: Bearer <ML_PLATFORM_SERVING_METRICS_TOKEN>"
                )
            return
        client = scope.get("client")
        if not (client and _is_loopback(str(client[0]))):
            raise PermissionDenied(
                "/metrics on the serving port answers loopback clients only; set "
                "ML_PLATFORM_SERVING_METRICS_TOKEN to let remote scrapers in with "
                "Authorization: Bearer <token>"
            )

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


class _InferCodec:
    """V2 REST infer's conversions: the JSON (+ binary tensor) body -> rows, and the
    prediction -> the JSON (+ binary) response."""

    def __init__(self, scope: Scope, body: bytes) -> None:
        self._scope = scope
        self._body = body
        self._doc: dict[str, Any] = {}

    def decode(self, model: LoadedModel) -> FloatArray:
        body = self._body
        header_len = None
        for key, value in self._scope["headers"]:
            if key == _HEADER_LEN:
                header_len = _header_length(value, len(body))
        json_part = body if header_len is None else body[:header_len]
        binary = b"" if header_len is None else body[header_len:]
        try:
            doc = loads_infer_request(json_part)
            inputs = doc["inputs"]
            if not isinstance(inputs, list):
                raise TypeError("inputs must be a list")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"malformed V2 infer request: {exc}",
                [FieldViolation("inputs", "a list of tensors is required")],
            ) from exc
        outputs = doc.get("outputs")
        if outputs:
            if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
                raise InvalidArgument(
                    "outputs must be a list of objects with a name",
                    [FieldViolation("outputs", "a list of objects")],
                )
            for o in outputs:
                _parameters(o, "outputs")
        _parameters(doc, "request")
        self._doc = doc
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
            nbytes = _parameters(spec, "inputs", tname).get("binary_data_size")
            if nbytes is not None:
                if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
                    raise InvalidArgument(
                        f"input {tname}: binary_data_size must be a whole number of bytes",
                        [FieldViolation(f"inputs.{tname}.parameters", "binary_data_size")],
                    )
                chunk = binary[offset : offset + nbytes]
                offset += nbytes
                if len(chunk) != nbytes or len(chunk) % dt.itemsize:
                    raise InvalidArgument(
                        f"input {tname}: binary data is shorter than binary_data_size"
                    )
                data = np.frombuffer(chunk, dtype=dt)
            else:
                try:
                    data = np.asarray(spec["data"], dtype=dt).reshape(-1)
                except (KeyError, TypeError, ValueError, OverflowError) as exc:
                    # OverflowError: an integer beyond what the input's datatype holds
                    raise InvalidArgument(
                        f"input {tname}: data must be a numeric array of {datatype or dt.name}",
                        [FieldViolation(f"inputs.{tname}.data", str(exc))],
                    ) from exc
            v2.check_shape(model, tname, shape, data.size)
            tensors.append(v2.Tensor(tname, datatype, shape, data))
        return v2.tensors_to_rows(model, tensors)

    def encode(self, model: LoadedModel, pred: Prediction) -> Response:
        doc = self._doc
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


_NO_PARAMETERS: dict[str, Any] = {}


def _parameters(obj: dict[str, Any], where: str, name: str = "") -> dict[str, Any]:
    """``obj["parameters"]`` as a dict (empty when absent), INVALID_ARGUMENT when not an
    object; ``where`` (and ``name``) say whose parameters they are in the error."""
    params = obj.get("parameters")
    if not params:
        return _NO_PARAMETERS
    if not isinstance(params, dict):
        path = f"{where}.{name}" if name else where
        raise InvalidArgument(
            f"{path}: parameters must be an object",
            [FieldViolation(f"{path}.parameters", "not an object")],
        )
    return params


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is safe (bounded, safe characters: the REST
    control plane's rule, ``logs_format.accept_request_id``), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return accept_request_id(value)
    return new_request_id()


def _problem(exc: PlatformError, scope: Scope, request_id: str | None = None) -> Response:
    """The one problem renderer (``core.problems``), KServe's 400 for INVALID_ARGUMENT, plus
    V2's ``error`` member that V2 clients read."""
    request_id = request_id or _request_id(scope)
    status, doc = problem_from_error(
        exc, instance=scope["path"], request_id=request_id, invalid_argument_status=400
    )
    # echoed input is bounded as on gRPC (a 5,000-character version came back whole)
    doc["error"] = doc["detail"] = bounded(exc.message, MAX_MESSAGE_BYTES)
    doc["instance"] = bounded(scope["path"], MAX_MESSAGE_BYTES)
    doc["errors"] = [
        {"path": bounded(e["path"], MAX_FIELD_BYTES), "message": bounded(e["message"], 256)}
        for e in doc["errors"][:MAX_VIOLATIONS]
    ]
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"x-request-id", request_id.encode())]
    headers += [(k.encode(), v.encode()) for k, v in problem_headers(status, exc.code).items()]
    if isinstance(exc, RateLimited | RateLimitUnavailable):  # Retry-After, RateLimit fields
        headers += [(k.encode(), v.encode()) for k, v in exc.decision.http_headers()]
    return status, headers, problem_bytes(doc)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
