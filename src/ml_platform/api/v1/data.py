"""v1 data area: upload files once, name them in a job's ``data_path`` as ``data/<path>``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.convertors import PathConvertor, register_url_convertor

from ml_platform.api.deps import ContextDep, PrincipalDep
from ml_platform.api.request_body import stream_into
from ml_platform.api.responses import AUTHED, problems, rejected_when
from ml_platform.core.errors import UnsupportedMediaType
from ml_platform.data.service import (
    _BIDI_CONTROLS,
    MAX_SEGMENTS,
    RESERVED_PREFIX,
    DataArea,
    DataFileInfo,
    DataUpload,
)
from ml_platform.governance.storage_ledger import StorageLedger
from ml_platform.jobs.paths import PathPolicy

router = APIRouter(prefix="/v1/data", tags=["Data"])

PATH_HELP = "Path inside your data area, e.g. `train.csv` or `churn/2024/train.csv`"

# The rules of ``data.service.parse_path`` as a JSON Schema pattern (the service still checks
# them and names the broken rule; UTF-8 byte lengths have no JSON Schema form): segments
# separated by single '/', none empty, '.', '..' or starting with RESERVED_PREFIX, and no
# '\\', control (Cc, Cs), line/paragraph separator or bidi control character.
# (Surrogates are left out: no UTF-8 URL can carry one, and a pattern naming them is dropped
# by Rust-based validators, Schemathesis's among them.)
# Written as regex escapes, never as the raw characters: a spec that carries raw control
# characters makes code generators paste them (NUL included) into the source they write.
_BANNED = r"/\\\x00-\x1f\x7f-\x9f\u2028\u2029" + "".join(
    f"\\u{ord(char):04x}" for char in sorted(_BIDI_CONTROLS)
)
_C = f"[^{_BANNED}]"


def _not_after(prefix: str, char: str) -> str:
    """``prefix`` followed by nothing, or by a character other than ``char`` and then any."""
    return f"{prefix}(?:[^{_BANNED}{char}]{_C}*)?"


_SEGMENT = "|".join(
    [
        f"[^{_BANNED}.]{_C}*",  # does not start with '.'
        f"\\.\\.{_C}+",  # '..x'
        f"\\.[^{_BANNED}.m]{_C}*",  # '.x'
        _not_after("\\.m", "l"),
        _not_after("\\.ml", "p"),
        _not_after("\\.mlp", "-"),
    ]
)
assert RESERVED_PREFIX == ".mlp-"
DATA_PATH_PATTERN = f"^(?:{_SEGMENT})(?:/(?:{_SEGMENT})){{0,{MAX_SEGMENTS - 1}}}$"
# A list prefix: whole directory names as above, then any start of a name but '.' or '..'.
_PARTIAL = f"(?:[^{_BANNED}.]{_C}*|\\.[^{_BANNED}.]{_C}*|\\.\\.{_C}+)"
DATA_PREFIX_PATTERN = f"^(?:(?:{_SEGMENT})/){{0,{MAX_SEGMENTS - 1}}}{_PARTIAL}?$"
FilePath = Annotated[
    str, PathParam(description=PATH_HELP, json_schema_extra={"pattern": DATA_PATH_PATTERN})
]
BINARY = {"schema": {"type": "string", "format": "binary"}}


class DataFile(BaseModel):
    """A file in your data area. `path` is what a job's `data_path` accepts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "path": "data/train.csv",
                    "size_bytes": 1048576,
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "modified_at": "2026-01-01T12:00:00Z",
                }
            ]
        }
    )

    path: str = Field(description="`data/<path>`: name it as a job's `data_path`")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(description="Hex SHA-256 of the content")
    modified_at: datetime


class DataFileList(BaseModel):
    """One page of the files in your data area under a prefix."""

    files: list[DataFile]
    page: int
    page_size: int
    total: int
    has_more: bool


def _area(context: ContextDep) -> DataArea:
    settings = context.settings
    ledger = StorageLedger(context.db, context.quotas)  # uploads count in max_storage_bytes
    if context.engine is not None:
        paths = context.engine.paths  # the very policy jobs' data_path is checked against
        return DataArea(paths, settings.max_data_upload_bytes, context.engine.storage, ledger)
    paths = PathPolicy(settings.data_dir, settings.shared_read_roots)
    return DataArea(paths, settings.max_data_upload_bytes, ledger=ledger)


def _wire(info: DataFileInfo) -> DataFile:
    return DataFile(
        path=info.path, size_bytes=info.size_bytes, sha256=info.sha256, modified_at=info.modified_at
    )


async def _within_quota(chunks: AsyncIterator[bytes], upload: DataUpload) -> AsyncIterator[bytes]:
    """The body's chunks, refused (429) the moment they pass what the tenant may still
    store, before the rest is read (as ``stream_into`` refuses the size limit)."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        upload.check_received(received)
        yield chunk


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        # Optional: HTTP cannot tell an absent body from an empty one; both store an empty file.
        "required": False,
        "description": "The file's bytes, as the raw body (e.g. `curl -T train.csv`); "
        "no body stores an empty file",
        "content": {"application/octet-stream": BINARY},
    }
}


class AnyPathConvertor(PathConvertor):
    """Starlette's ``path`` with newlines too: every path reaches the data area's own checks
    (422 naming ``path``), instead of missing the route (404) or, with a trailing slash,
    being redirected (307) to one that does not exist."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPathConvertor())


@router.put(
    "/{path:anypath}",
    name="upload_data_file",
    summary="Upload a data file",
    status_code=status.HTTP_201_CREATED,
    response_model=DataFile,
    response_description="A new file was created",
    openapi_extra=UPLOAD_BODY,
    responses={
        **problems(409, 413, 415, 422, *AUTHED),
        200: {"description": "An existing file was replaced", "model": DataFile},
    },
)
async def upload_data_file(
    path: FilePath,
    request: Request,
    response: Response,
    context: ContextDep,
    principal: PrincipalDep,
) -> DataFile:
    """Stream the request body into `data/<path>` of your tenant (201 new, 200 replaced).

    The file appears whole or not at all (written aside, then renamed). Paths are relative,
    `/`-separated, without `.`/`..` segments or control characters (422 otherwise); bodies
    over the server's limit get 413. Name the file in a job as `data_path: data/<path>`.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media.startswith("multipart/"):
        raise UnsupportedMediaType(
            "send the file's bytes as the raw body (application/octet-stream, e.g. "
            "`curl -T file URL`), not as a multipart form"
        )
    area = _area(context)
    upload = await run_in_threadpool(
        area.begin_upload, principal.tenant_id, path, _declared_length(request)
    )
    try:
        await stream_into(_within_quota(request.stream(), upload), upload, area.max_upload_bytes)
        info, created = await run_in_threadpool(upload.commit)
    except BaseException:
        upload.abort()
        raise
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = "/v1/data/" + quote(info.path.removeprefix("data/"))
    return _wire(info)


@router.get(
    "",
    name="list_data_files",
    summary="List data files",
    response_model=DataFileList,
    responses={
        **problems(422, *AUTHED),
        **rejected_when(
            422, "`prefix` is over 1024 bytes, or names a directory over 255 bytes, in UTF-8"
        ),
    },
)
async def list_data_files(
    context: ContextDep,
    principal: PrincipalDep,
    prefix: Annotated[
        str | None,
        Query(
            max_length=1024,
            description="Only paths starting with this (e.g. `churn/`)",
            json_schema_extra={"pattern": DATA_PREFIX_PATTERN},
        ),
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=500, description="Results per page")] = 50,
) -> DataFileList:
    """The files of your data area, ordered by path, paginated."""
    area = _area(context)
    result = await run_in_threadpool(
        lambda: area.list_files(principal.tenant_id, prefix, page=page, page_size=page_size)
    )
    return DataFileList(
        files=[_wire(f) for f in result.files],
        page=result.page,
        page_size=result.page_size,
        total=result.total,
        has_more=result.has_more,
    )


@router.get(
    "/{path:anypath}",
    name="download_data_file",
    summary="Download a data file",
    response_class=Response,
    responses={
        200: {"description": "The file's bytes", "content": {"application/octet-stream": BINARY}},
        **problems(404, 422, *AUTHED),
    },
)
async def download_data_file(
    path: FilePath, context: ContextDep, principal: PrincipalDep
) -> StreamingResponse:
    """The bytes of `data/<path>` (`ETag` is the content's SHA-256)."""
    reader = await run_in_threadpool(_area(context).open_file, principal.tenant_id, path)
    headers = {"Content-Length": str(reader.info.size_bytes), "ETag": f'"{reader.info.sha256}"'}
    return StreamingResponse(
        reader.chunks(),
        media_type="application/octet-stream",
        headers=headers,
        background=BackgroundTask(reader.close),  # also when the body was never iterated
    )


@router.delete(
    "/{path:anypath}",
    name="delete_data_file",
    summary="Delete a data file",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(404, 409, 422, *AUTHED),
)
async def delete_data_file(
    path: FilePath, context: ContextDep, principal: PrincipalDep
) -> Response:
    """Delete one file (a directory: 409; delete its files, empty directories go with them)."""
    await run_in_threadpool(_area(context).delete, principal.tenant_id, path)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
