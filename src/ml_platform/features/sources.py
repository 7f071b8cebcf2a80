"""Reading a feature view's source (a CSV or Parquet file of the tenant's data area, or a file
in the output of one of the tenant's succeeded training jobs) and checking it against the
view's definition.

Data-area files are read through ``DataArea.open_file`` only (never a path on disk), so the
source follows the data area wherever its blobs live; job outputs through ``JobOutputs``
(the job's ``output_path``, local or remote, checked by the location policy). Both go through
one bounded reader: at most ``ML_PLATFORM_FEATURE_MAX_SOURCE_BYTES``, checked before reading
and again while reading.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_platform.core.errors import FieldViolation, InvalidArgument, PayloadTooLarge
from ml_platform.data.service import DATA_PREFIX, DataArea
from ml_platform.features.job_outputs import JobOutputs
from ml_platform.features.types import ValueType

if TYPE_CHECKING:  # pandas is imported by the functions that read or check a source
    import pandas as pd

__all__ = [
    "FileSpec",
    "JobOutputSpec",
    "SourceReader",
    "SourceSpec",
    "check_columns",
    "dtype_matches",
    "event_times",
    "source_format",
    "spec_of",
]

FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class FileSpec:
    """A file of the tenant's data area."""

    path: str  # ``data/<path>``, as a job's data_path names it
    format: str  # csv | parquet

    @property
    def label(self) -> str:
        return self.path

    def to_dict(self) -> dict[str, object]:
        return {"kind": "file", "path": self.path, "format": self.format}


@dataclass(frozen=True)
class JobOutputSpec:
    """A file inside the output (``output_path``) of one of the tenant's succeeded jobs."""

    job_id: str
    path: str  # relative to the job's output_path
    format: str

    @property
    def label(self) -> str:
        return f"{self.path} of training job {self.job_id}'s output"

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "job_output",
            "job_id": self.job_id,
            "path": self.path,
            "format": self.format,
        }


SourceSpec = FileSpec | JobOutputSpec


def spec_of(source: Mapping[str, Any]) -> SourceSpec:
    """The spec of a stored source (rows written before job outputs existed have no kind)."""
    if source.get("kind") == "job_output":
        return JobOutputSpec(str(source["job_id"]), str(source["path"]), str(source["format"]))
    return FileSpec(str(source["path"]), str(source["format"]))


def source_format(path: str, fmt: str | None, field: str = "body.source") -> str:
    """``fmt``, else the format the extension of ``path`` names."""
    if fmt is not None:
        return fmt
    lowered = path.lower()
    found = next((f for f in FORMATS if lowered.endswith("." + f)), None)
    if found is None:
        raise InvalidArgument(
            f"{field}.format: cannot tell the format of {path!r}; give 'csv' or 'parquet'",
            [FieldViolation(f"{field}.format", "give 'csv' or 'parquet'")],
        )
    return found


def source_spec(path: str, fmt: str | None, field: str = "body.source") -> FileSpec:
    """The normalized file source: ``data/`` prefix, format from the extension unless given."""
    shown = path if path.startswith(DATA_PREFIX) else DATA_PREFIX + path
    return FileSpec(shown, source_format(shown, fmt, field))


class SourceReader:
    """Loads source files into pandas, bounded by ``max_bytes``."""

    def __init__(self, area: DataArea, max_bytes: int, outputs: JobOutputs | None = None) -> None:
        self._area = area
        self._max_bytes = max_bytes
        self._outputs = outputs

    def _open(
        self, tenant_id: str, spec: SourceSpec, field: str
    ) -> tuple[int, Iterator[bytes], Callable[[], None]]:
        """(size, chunks, close): ``close`` releases the file whether it was read or not."""
        if isinstance(spec, FileSpec):
            reader = self._area.open_file(tenant_id, spec.path.removeprefix(DATA_PREFIX))
            return reader.info.size_bytes, reader.chunks(), reader.close
        if self._outputs is None:
            why = "this server reads no job outputs as feature sources"
            raise InvalidArgument(why, [FieldViolation(field, why)])
        opened = self._outputs.open(tenant_id, spec.job_id, spec.path, field)
        return opened.size_bytes, opened.chunks(), opened.close

    def _too_large(self, spec: SourceSpec, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{spec.label} is {size} bytes; feature sources may be at most "
            f"{self._max_bytes} (ML_PLATFORM_FEATURE_MAX_SOURCE_BYTES)"
        )

    def read(
        self, tenant_id: str, spec: SourceSpec, field: str = "body.source.path"
    ) -> pd.DataFrame:
        size, chunks, close = self._open(tenant_id, spec, field)
        buffer = io.BytesIO()
        try:
            if size > self._max_bytes:
                raise self._too_large(spec, size)
            for chunk in chunks:
                buffer.write(chunk)
                if buffer.tell() > self._max_bytes:  # it grew since it was measured
                    raise self._too_large(spec, buffer.tell())
        finally:
            close()
        buffer.seek(0)
        import pandas as pd

        try:
            if spec.format == "parquet":
                return pd.read_parquet(buffer)
            return pd.read_csv(buffer)
        except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
            why = f"is not a readable {spec.format} file ({type(exc).__name__})"
            raise InvalidArgument(f"{spec.label} {why}", [FieldViolation(field, why)]) from None


def dtype_matches(series: pd.Series, kind: ValueType) -> bool:
    import pandas as pd

    api = pd.api.types
    if kind is ValueType.BOOL:
        return bool(api.is_bool_dtype(series))
    if kind is ValueType.INT64:
        return bool(api.is_integer_dtype(series)) and not api.is_bool_dtype(series)
    if kind is ValueType.FLOAT64:
        return bool(api.is_float_dtype(series) or api.is_integer_dtype(series)) and not (
            api.is_bool_dtype(series)
        )
    if series.isna().all():
        return True
    return bool(api.is_string_dtype(series) or api.is_object_dtype(series))


def event_times(series: pd.Series) -> pd.Series:
    """The column as UTC timestamps (naive values are taken as UTC); ``ValueError`` if not."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        raise ValueError("numbers are not timestamps; write RFC 3339 times")
    return pd.to_datetime(series, utc=True, format="ISO8601")


def check_columns(
    frame: pd.DataFrame,
    path: str,
    join_keys: Sequence[tuple[str, str]],
    features: Sequence[tuple[str, str]],
    timestamp_field: str,
) -> None:
    """``InvalidArgument`` naming every missing or mistyped column of the source."""
    columns = [str(c) for c in frame.columns]
    listed = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
    violations: list[FieldViolation] = []

    def check(field: str, name: str, kind: ValueType | None) -> None:
        if name not in frame.columns:
            violations.append(
                FieldViolation(field, f"column {name!r} is not in {path} (columns: {listed})")
            )
            return
        if kind is not None and not dtype_matches(frame[name], kind):
            violations.append(
                FieldViolation(
                    field,
                    f"column {name!r} of {path} holds {frame[name].dtype} values, not {kind.value}",
                )
            )

    for name, kind in join_keys:
        check("body.entity", name, ValueType(kind))
    for name, kind in features:
        check(f"body.features.{name}", name, ValueType(kind))
    check("body.timestamp_field", timestamp_field, None)
    if timestamp_field in frame.columns:
        try:
            event_times(frame[timestamp_field])
        except (ValueError, TypeError) as exc:
            violations.append(
                FieldViolation(
                    "body.timestamp_field",
                    f"column {timestamp_field!r} of {path} is not timestamps: {str(exc)[:120]}",
                )
            )
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InvalidArgument(f"{first.field}: {first.message}{more}", violations)
