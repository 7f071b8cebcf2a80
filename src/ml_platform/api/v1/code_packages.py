"""v1 code packages: upload a zip / tar.gz once, name it in a job's `source`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser

from ml_platform.api.deps import ContextDep, PrincipalDep
from ml_platform.api.request_body import FLUSH_BYTES, stream_into
from ml_platform.api.responses import AUTHED, problems, rejected_when
from ml_platform.core.errors import (
    FieldViolation,
    InvalidArgument,
    Unavailable,
    UnsupportedMediaType,
)
from ml_platform.governance.storage_ledger import StorageLedger
from ml_platform.jobs.code_packages import CodePackage as PackageRecord
from ml_platform.jobs.code_packages import PackageUpload
from ml_platform.jobs.engine import JobEngine
from ml_platform.schemas.job_runtime import CodePackage

router = APIRouter(prefix="/v1/code-packages", tags=["Code packages"])

ARCHIVE_TYPES = (
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/x-gtar",
    "application/octet-stream",
)

_ARCHIVE = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The archive (`.zip` or `.tar.gz`) as the raw body, or a form field `file`",
        "content": {
            **{media: _ARCHIVE for media in ARCHIVE_TYPES},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "additionalProperties": False,  # other fields: 422 (or 400 past 5 fields)
                }
            },
        },
    }
}


def _engine(context: ContextDep) -> JobEngine:
    if context.engine is None:
        raise Unavailable("the job runtime is not enabled on this server")
    return context.engine


def _wire(package: PackageRecord) -> CodePackage:
    return CodePackage(
        id=package.id,
        sha256=package.sha256,
        size_bytes=package.size_bytes,
        file_count=package.file_count,
        unpacked_bytes=package.unpacked_bytes,
        created_at=package.created_at,
    )


MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""A form's framing (boundaries, part headers, small fields) allowed beyond the archive limit
before the body is refused; the file part itself is held to the limit exactly."""


async def _bounded(
    chunks: AsyncIterator[bytes], limit: int, upload: PackageUpload
) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused with 413 as soon as more than ``limit`` bytes arrived."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise upload.too_large()
        yield chunk


async def _receive_archive(request: Request, upload: PackageUpload) -> None:
    """Stream the archive of the request into ``upload``: the raw body, or the form field
    ``file`` (parsed from the stream, its part spooled to disk by Starlette past 1 MiB). The
    body is read in order and refused as soon as it passes the limit, never held whole."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    declared = request.headers.get("content-length")
    declared_bytes = int(declared) if declared and declared.isdigit() else None
    if media.startswith("multipart/form-data"):
        limit = upload.limit + MULTIPART_OVERHEAD_BYTES
        if declared_bytes is not None and declared_bytes > limit:
            raise upload.too_large()
        parser = MultiPartParser(
            request.headers,
            _bounded(request.stream(), limit, upload),
            max_files=1,
            max_fields=5,
            max_part_size=MULTIPART_OVERHEAD_BYTES,
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise InvalidArgument(f"the multipart form cannot be read: {exc.message}") from exc
        try:
            unknown = sorted(set(form.keys()) - {"file"})
            if unknown:
                raise InvalidArgument(
                    f"unknown form field {unknown[0][:64]!r}: send only the field 'file'",
                    [FieldViolation(f"body.{unknown[0][:64]}", "unknown form field")],
                )
            part = form.get("file")
            if part is None or isinstance(part, str):
                raise InvalidArgument("send the archive in a form field named 'file'")
            while chunk := await part.read(FLUSH_BYTES):
                await run_in_threadpool(upload.write, chunk)
        finally:
            await form.close()
    elif media in ARCHIVE_TYPES:
        if declared_bytes is not None and declared_bytes > upload.limit:
            raise upload.too_large()
        await stream_into(request.stream(), upload, upload.limit)
    else:
        raise UnsupportedMediaType(
            "send the archive as application/zip, application/gzip or multipart/form-data "
            f"(field 'file'); got {media or 'no content type'!r}"
        )


@router.post(
    "",
    name="create_code_package",
    summary="Upload a code package",
    status_code=status.HTTP_201_CREATED,
    response_model=CodePackage,
    openapi_extra=UPLOAD_BODY,
    responses={
        **problems(400, 413, 415, 422, *AUTHED),
        **rejected_when(
            422, "the body is not a readable `.zip` / `.tar.gz` or holds unsafe or too many files"
        ),
        200: {"description": "The same archive was uploaded before", "model": CodePackage},
        201: {
            "description": "The package, stored",
            "links": {
                "GetCodePackage": {
                    "operationId": "get_code_package",
                    "parameters": {"package_id": "$response.body#/id"},
                }
            },
        },
    },
)
async def create_code_package(
    request: Request, context: ContextDep, principal: PrincipalDep, response: Response
) -> CodePackage:
    """Upload a `.zip` or `.tar.gz` of your training code (raw body or multipart field `file`).

    Packages are content-addressed: the same bytes get the same `id` (`sha256:...`), stored
    once. Archives with absolute paths, `..`, links, device files or that unpack to more
    than the limits are rejected (422). Name the package in a job's `source` field; the
    entrypoint then runs from its root.
    """
    engine = _engine(context)
    ledger = StorageLedger(context.db, context.quotas)  # counts in max_storage_bytes
    upload = await run_in_threadpool(engine.packages.begin_upload, principal.tenant_id, ledger)
    try:
        await _receive_archive(request, upload)
        package, existed = await run_in_threadpool(upload.save)
    finally:
        upload.abort()
    if existed:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/code-packages/{package.id}"
    return _wire(package)


@router.get(
    "/{package_id}",
    name="get_code_package",
    summary="Get a code package",
    response_model=CodePackage,
    responses=problems(404, *AUTHED),
)
async def get_code_package(
    package_id: str, context: ContextDep, principal: PrincipalDep
) -> CodePackage:
    """A code package your tenant uploaded."""
    engine = _engine(context)
    try:
        package = await run_in_threadpool(engine.packages.get, principal.tenant_id, package_id)
    except InvalidArgument as exc:
        from ml_platform.core.errors import NotFound

        raise NotFound(f"code package {package_id!r} not found") from exc
    return _wire(package)
