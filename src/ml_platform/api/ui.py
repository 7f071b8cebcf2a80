"""The web dashboard at ``/ui``, and the same-origin door to V2 REST inference it calls.

``/ui`` and every path under it answer the built single-page app (``ml_platform.ui``): a file
that exists is sent as is, any other path is a client-side route and gets ``index.html``
(``/ui/assets/...`` that does not exist is a 404 problem, never the page). Every answer carries a
strict Content-Security-Policy: scripts, styles, images and fonts from this origin only, and
``connect-src`` this origin plus its own ``ws:``/``wss:`` (the job stream).

The page signs in with an API key and then uses only the public REST and WebSocket routes.
"Try a prediction" needs the Open Inference Protocol REST route, which the serving workers
answer on another port (``serving_rest_port``), i.e. another origin. Rather than open CORS on
the data plane (and widen the CSP to it), the API forwards ``GET /v2/models/{name}[/versions/
{v}]`` and ``POST .../infer`` to the serving plane of the same install, verbatim: the same
credentials headers, body, status and problem documents, so the browser talks to one origin
and the serving plane still does its own authentication, rate limits and errors.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from ml_platform.config import Settings
from ml_platform.core.errors import NotFound, Unavailable
from ml_platform.ui import STATIC_DIR

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

INDEX = "index.html"
# a Host header goes into the CSP only when it is a plain host[:port]
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
FORWARDED_REQUEST_HEADERS = ("x-api-key", "authorization", "content-type", "x-request-id")
FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "x-request-id",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "www-authenticate",
)
FORWARD_TIMEOUT_SECONDS = 30.0
_ANY_HOST = {"0.0.0.0", "::", ""}  # bind-any addresses: dial loopback instead


def content_security_policy(host: str | None) -> str:
    """The dashboard's CSP: nothing from anywhere but this origin (and its WebSocket)."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "font-src 'self'",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _security_headers(request: Request) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(request.headers.get("host")),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",  # fixed file names: revalidate (ETag / Last-Modified)
    }


def _static_file(relative: str) -> Path | None:
    """The built file at ``relative`` under the static dir, or None (never outside it)."""
    if not relative or "\x00" in relative:
        return None
    root = STATIC_DIR.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _index(request: Request) -> Response:
    index = STATIC_DIR / INDEX
    if not index.is_file():
        raise Unavailable(
            "the dashboard is not built: run `npm ci && npm run build` in web/ "
            "(the wheel ships it built)"
        )
    return FileResponse(index, media_type="text/html", headers=_security_headers(request))


@router.get("/ui")
async def dashboard_root(request: Request) -> Response:
    return _index(request)


@router.get("/ui/{path:path}")
async def dashboard(path: str, request: Request) -> Response:
    found = _static_file(path)
    if found is not None:
        return FileResponse(found, headers=_security_headers(request))
    if path.startswith("assets/") or path == "favicon.svg":
        raise NotFound(f"no dashboard asset {path[:200]!r}")
    return _index(request)  # a client-side route (e.g. /ui/jobs/job_...)


# -- same-origin forward of the serving plane's V2 REST model routes ---------------------------


def serving_rest_url(settings: Settings) -> str:
    """Where this install's serving workers answer V2 REST (``mlp server`` starts them)."""
    host = "127.0.0.1" if settings.grpc_host in _ANY_HOST else settings.grpc_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.serving_rest_port}"


ModelName = Annotated[str, PathParam(min_length=1, max_length=255)]
VersionText = Annotated[str, PathParam(min_length=1, max_length=64)]


def _model_path(name: str, version: str | None, tail: str = "") -> str:
    path = f"/v2/models/{quote(name, safe='')}"
    if version is not None:
        path += f"/versions/{quote(version, safe='')}"
    return path + tail


async def _forward(request: Request, path: str) -> Response:
    settings: Settings = request.app.state.context.settings
    target = serving_rest_url(settings)
    headers = {
        name: value
        for name in FORWARDED_REQUEST_HEADERS
        if (value := request.headers.get(name)) is not None
    }
    body = await request.body()
    try:
        async with httpx.AsyncClient(base_url=target, timeout=FORWARD_TIMEOUT_SECONDS) as client:
            answer = await client.request(request.method, path, content=body, headers=headers)
    except httpx.TransportError as exc:
        logger.warning("V2 REST forward to %s failed: %s", target, exc)
        raise Unavailable(
            "the serving plane is not reachable from the API: start the platform with "
            "`mlp server` (serving on), or call the serving workers' V2 REST port directly"
        ) from exc
    out = {
        name: value
        for name in FORWARDED_RESPONSE_HEADERS
        if (value := answer.headers.get(name)) is not None
    }
    return Response(content=answer.content, status_code=answer.status_code, headers=out)


@router.get("/v2/models/{name}")
async def forward_model_metadata(name: ModelName, request: Request) -> Response:
    return await _forward(request, _model_path(name, None))


@router.get("/v2/models/{name}/versions/{version}")
async def forward_model_version_metadata(
    name: ModelName, version: VersionText, request: Request
) -> Response:
    return await _forward(request, _model_path(name, version))


@router.post("/v2/models/{name}/infer")
async def forward_model_infer(name: ModelName, request: Request) -> Response:
    return await _forward(request, _model_path(name, None, "/infer"))


@router.post("/v2/models/{name}/versions/{version}/infer")
async def forward_model_version_infer(
    name: ModelName, version: VersionText, request: Request
) -> Response:
    return await _forward(request, _model_path(name, version, "/infer"))
