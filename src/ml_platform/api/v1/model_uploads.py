"""Streaming request bodies for model versions: multipart uploads and size-capped JSON.

The ``file`` part may be a model file or an archive holding one (unpacked by the registry);
``artifact_path`` names the model inside an archive that holds several.

The multipart parser is fed the request as it arrives; the file part goes straight to a
staging file (hashed on the way) and never sits in memory. Going over the limit aborts the
staging file at once, so nothing is left behind, and answers 413.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from ml_platform.core.errors import FieldViolation, InvalidArgument, PayloadTooLarge
from ml_platform.registry.artifacts import StagedFile
from ml_platform.registry.service import VersionDraft
from ml_platform.registry.staging import StagingArea, StagingWriter, too_large
from ml_platform.schemas._types import check_json_tree, unsafe_character
from ml_platform.schemas.models import ModelFormat, ModelSignature

FORM_FIELDS = ("format", "signature", "metadata", "description", "artifact_path")
FIELD_LIMIT = 1024 * 1024
FORM_OVERHEAD = 64 * 1024
"""Bytes of multipart framing and small fields tolerated beyond the file limit."""


def _invalid(field_name: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation(field_name, message)])


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def read_json_body(request: Request, limit: int) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes (the route skips the global cap)."""
    declared = _content_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can parse
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        ) from None


@dataclass
class _Form:
    staging: StagingArea
    max_bytes: int
    fields: dict[str, bytearray] = field(default_factory=dict)
    writer: StagingWriter | None = None
    files: int = 0
    error: Exception | None = None
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _name: bytes = b""
    _value: bytes = b""
    _current: str | None = None
    _is_file: bool = False

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value.strip()
        self._name, self._value = b"", b""

    def _headers_finished(self) -> None:
        _disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is not None:
            if name != "file":
                raise _invalid(name or "file", "the artifact must be sent in a part named 'file'")
            self.files += 1
            if self.files > 1:
                raise _invalid("file", "send exactly one file per version")
            self.writer = self.staging.writer(filename.decode("utf-8", "replace"), self.max_bytes)
            self._is_file = True
        else:
            if name not in FORM_FIELDS:
                raise _invalid(
                    name or "?",
                    f"unknown form field {name!r} (allowed: file, {', '.join(FORM_FIELDS)})",
                )
            self.fields[name] = bytearray()
            self._is_file = False
        self._current = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            assert self.writer is not None
            self.writer.write(data[start:end])
            return
        assert self._current is not None
        value = self.fields[self._current]
        value.extend(data[start:end])
        if len(value) > FIELD_LIMIT:
            raise _invalid(
                self._current, f"form field {self._current!r} is over {FIELD_LIMIT} bytes"
            )

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


async def stage_multipart(
    request: Request, staging: StagingArea, max_bytes: int
) -> tuple[StagedFile, VersionDraft]:
    """Stream a ``multipart/form-data`` upload into staging; returns the file and its fields."""
    _media, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if not boundary:
        raise _invalid("content-type", "multipart/form-data needs a boundary")
    declared = _content_length(request)
    if declared is not None and declared > max_bytes + FORM_OVERHEAD:
        raise too_large(max_bytes)
    form = _Form(staging=staging, max_bytes=max_bytes)
    parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
        if form.writer is None:
            raise _invalid("file", "no file part: send the artifact in a part named 'file'")
        staged = form.writer.finish()
    except BaseException as exc:
        form.abort()
        if isinstance(exc, (InvalidArgument, PayloadTooLarge)):
            raise
        if isinstance(exc, Exception) and type(exc).__module__.startswith("python_multipart"):
            raise _invalid("body", f"malformed multipart body: {exc}") from exc
        raise
    try:
        return staged, _draft(form.fields)
    except BaseException:
        staged.path.unlink(missing_ok=True)
        raise


def _draft(fields: dict[str, bytearray]) -> VersionDraft:
    text = {k: v.decode("utf-8", "replace") for k, v in fields.items()}
    fmt: ModelFormat | None = None
    if text.get("format"):
        try:
            fmt = ModelFormat(text["format"].strip())
        except ValueError:
            allowed = ", ".join(f.value for f in ModelFormat)
            raise _invalid(
                "format", f"unknown format {text['format']!r} (allowed: {allowed})"
            ) from None
    signature: ModelSignature | None = None
    if text.get("signature"):
        try:
            signature = ModelSignature.model_validate_json(text["signature"])
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", "signature", *e["loc"])} for e in exc.errors()]
            ) from None
    metadata: dict[str, Any] = {}
    if text.get("metadata"):
        try:
            metadata = json.loads(text["metadata"])
        except (ValueError, RecursionError):
            raise _invalid("metadata", "metadata must be a JSON object") from None
        if not isinstance(metadata, dict):
            raise _invalid("metadata", "metadata must be a JSON object")
        try:
            check_json_tree(metadata)
        except ValueError as exc:
            raise _invalid("metadata", f"metadata: {exc}") from None
    description = text.get("description", "")
    if len(description) > 4096:
        raise _invalid("description", "description is at most 4096 characters")
    if (problem := unsafe_character(description)) is not None:
        raise _invalid("description", f"description must not contain {problem}")
    artifact_path = text.get("artifact_path", "").strip() or None
    if artifact_path is not None and len(artifact_path) > 1024:
        raise _invalid("artifact_path", "artifact_path is at most 1024 characters")
    return VersionDraft(
        format=fmt,
        signature=signature,
        metadata=metadata,
        description=description,
        artifact_path=artifact_path,
    )
