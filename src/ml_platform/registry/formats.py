"""Artifact format detection from a file's first bytes and its name (no loading, no imports)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ml_platform.schemas.models import ModelFormat

HEAD_BYTES = 64 * 1024
"""How much of the file detection looks at."""

_EXTENSIONS: dict[str, ModelFormat] = {
    ".joblib": ModelFormat.JOBLIB,
    ".pkl": ModelFormat.PICKLE,
    ".pickle": ModelFormat.PICKLE,
    ".skops": ModelFormat.SKOPS,
    ".onnx": ModelFormat.ONNX,
    ".ubj": ModelFormat.XGBOOST_UBJ,
}

# joblib compresses with one of these; plain pickles never start with them
_COMPRESSED_MAGIC = (
    b"\x78\x01",
    b"\x78\x5e",
    b"\x78\x9c",
    b"\x78\xda",  # zlib
    b"\x1f\x8b",  # gzip
    b"BZh",  # bz2
    b"\xfd7zXZ\x00",  # xz
    b"\x04\x22\x4d\x18",  # lz4
)

_UBJ_TYPE_MARKERS = b"iUIlLdDSHTFZ#$[{"

MODEL_SUFFIXES = frozenset({*_EXTENSIONS, ".json"})
"""File names a job's output directory may hold its model under."""


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_skops(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "schema.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _xgboost_document(head: bytes) -> ModelFormat | None:
    stripped = head.lstrip()
    if not stripped.startswith(b"{"):
        return None
    rest = stripped[1:].lstrip()
    if rest.startswith(b'"'):
        return ModelFormat.XGBOOST_JSON if b'"learner"' in head else None
    if rest[:1] and rest[0] in _UBJ_TYPE_MARKERS and b"learner" in head:
        return ModelFormat.XGBOOST_UBJ
    return None


def _looks_like_onnx(head: bytes) -> bool:
    # an ONNX ModelProto starts with ir_version (field 1, varint) and names its producer
    return head[:1] == b"\x08" and (b"onnx" in head[:4096].lower() or b"skl2onnx" in head)


def detect_format(path: Path, filename: str | None = None) -> ModelFormat | None:
    """The artifact's format, or None when it is none of the formats we know.

    Content wins over the name where the content is unambiguous (zip, JSON, compressed);
    the name separates joblib from pickle, which share their bytes.
    """
    with open(path, "rb") as reader:
        head = reader.read(HEAD_BYTES)
    suffix = Path(filename or path.name).suffix.lower()
    if head.startswith(b"PK\x03\x04"):
        return ModelFormat.SKOPS if _is_skops(path) else None
    document = _xgboost_document(head)
    if document is not None:
        return document
    if _is_pickle(head):
        if suffix in (".pkl", ".pickle"):
            return ModelFormat.PICKLE
        return ModelFormat.JOBLIB
    if head.startswith(_COMPRESSED_MAGIC):
        return ModelFormat.JOBLIB
    if suffix == ".onnx" or _looks_like_onnx(head):
        return ModelFormat.ONNX if head[:1] == b"\x08" else None
    return None
