"""v1 code packages: upload a zip / tar.gz once, name it in a job's `source`."""

from __future__ import annotations

import tempfile

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from ml_platform.api.deps import ContextDep, PrincipalDep
from ml_platform.api.responses import AUTHED, problems, rejected_when
from ml_platform.core.errors import (
    FieldViolation,
    InvalidArgument,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from ml_platform.jobs.code_packages import CodePackage as PackageRecord
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


async def _read_archive(request: Request, limit: int) -> bytes:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5, max_part_size=limit)
        try:
            unknown = sorted(set(form.keys()) - {"file"})
            if unknown:
                raise InvalidArgument(
                    f"unknown form field {unknown[0][:64]!r}: send only the field 'file'",
                    [FieldViolation(f"body.{unknown[0][:64]}", "unknown form field")],
                )
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidArgument("send the archive in a form field named 'file'")
            data = await upload.read(limit + 1)
        finally:
            await form.close()
    elif media in ARCHIVE_TYPES:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"code package is larger than the {limit}-byte limit")
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"code package is larger than the {limit}-byte limit")
                spool.write(chunk)
            spool.seek(0)
            data = spool.read()
    else:
        raise UnsupportedMediaType(
            "send the archive as application/zip, application/gzip or multipart/form-data "
            f"(field 'file'); got {media or 'no content type'!r}"
        )
    if len(data) > limit:
        raise PayloadTooLarge(f"code package is larger than the {limit}-byte limit")
    return data


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
    data = await _read_archive(request, engine.packages.limits.max_archive_bytes)
    existed = await run_in_threadpool(engine.packages.exists, principal.tenant_id, data)
    package = await run_in_threadpool(engine.packages.save, principal.tenant_id, data)
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
