"""The validated building blocks of every request model.

* ``SafeStr``: text that every store can hold and every encoder can write. It refuses NUL
  (PostgreSQL text cannot hold it), lone surrogates (not encodable as UTF-8: SQLite, the JSON
  response and the log all fail on them) and the other C0 control characters except tab,
  line feed and carriage return.
* ``JsonObject``: a free-form JSON object (hyperparameters, metadata) whose keys and string
  values are ``SafeStr`` and whose numbers are finite (``NaN``/``Infinity`` would be stored
  as ``null`` or refused by the database).
* Bounded integers matching the columns they land in (``INTEGER`` is int32 on PostgreSQL,
  ``BIGINT`` int64; SQLite overflows past int64): a bigger value is a 422 naming the field,
  never an overflow in the driver.
* ``RequestModel``: the base of every request body: unknown fields refused and
  ``allow_inf_nan=False`` for every float field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from typing_extensions import TypeAliasType

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "SAFE_TEXT_PATTERN",
    "TAG_FILTER_PATTERN",
    "TAG_MAP_SCHEMA",
    "JsonObject",
    "PositiveInt32",
    "RequestModel",
    "SafeStr",
    "StrMap",
    "check_json_tree",
    "check_tags",
    "check_text",
    "unsafe_character",
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_MAX_DEPTH = 32

SAFE_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # escapes, never raw controls
"""``_UNSAFE`` as a JSON Schema ``pattern``, so the published contract says what is refused.
Lone surrogates are left out: a pattern is a sequence of Unicode scalar values (Rust-based
validators, Schemathesis's among them, drop a pattern that names them) and no UTF-8 text
holds one; only a JSON ``\\ud800`` escape can, and that is still refused with a 422."""

_TAG_PAIR = r"[^,=]*[^,=\s][^,=]*=[^,=]*"
TAG_FILTER_PATTERN = rf"^(?:{_TAG_PAIR}(?:,{_TAG_PAIR})*)?$"
"""A ``tags`` query filter, ``key1=value1,key2=value2`` (keys not blank), as a pattern."""


def unsafe_character(value: str) -> str | None:
    """A description of the first character of ``value`` that no store can hold, if any."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    char = found.group()
    code = ord(char)
    if code == 0:
        kind = "a NUL character"
    elif 0xD800 <= code <= 0xDFFF:
        kind = "a lone surrogate"
    else:
        kind = "a control character"
    return f"{kind} (U+{code:04X}) at index {found.start()}"


def check_text(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` naming the unsafe character (never echoing it)."""
    problem = unsafe_character(value)
    if problem is not None:
        raise ValueError(f"must not contain {problem}")
    return value


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"{path or 'value'}: nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, str):
        problem = unsafe_character(value)
        if problem is not None:
            raise ValueError(f"{path or 'value'}: must not contain {problem}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path or 'value'}: NaN and Infinity are not valid JSON numbers")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{path or 'value'}: integers must fit in 64 bits")
    elif isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            problem = unsafe_character(key_text)
            if problem is not None:
                where = f"{path}: a key" if path else "a key"
                raise ValueError(f"{where} must not contain {problem}")
            _walk(item, f"{path}.{key_text}" if path else key_text, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1)


def check_json_tree(value: Any) -> Any:
    """``value`` unchanged when every string in it is safe and every number finite."""
    _walk(value, "", 0)
    return value


class _SafeTextSchema:
    """Adds ``SAFE_TEXT_PATTERN`` to a ``SafeStr``'s JSON Schema, unless the field declares
    its own (stricter) pattern; validation stays in ``check_text`` (named, actionable errors)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if schema.get("type") == "string":
            schema.setdefault("pattern", SAFE_TEXT_PATTERN)
        return schema


SafeStr = Annotated[str, AfterValidator(check_text), _SafeTextSchema()]
"""Text without NUL, lone surrogates or C0 controls other than tab, LF and CR."""


class _SafeKeysSchema:
    """A map's JSON Schema with its key rule as ``propertyNames`` (every key must match), not
    pydantic's ``patternProperties`` (which lets a non-matching key through unchecked)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        by_pattern = schema.pop("patternProperties", None)
        if isinstance(by_pattern, dict) and len(by_pattern) == 1:
            ((pattern, values),) = by_pattern.items()
            schema["propertyNames"] = {"pattern": pattern}
            schema["additionalProperties"] = values
        elif by_pattern is not None:
            schema["patternProperties"] = by_pattern
        return schema


StrMap = Annotated[dict[SafeStr, SafeStr], _SafeKeysSchema()]
"""A string-to-string map (tags, labels) with safe keys and values."""

_Int64 = Annotated[
    int, WithJsonSchema({"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX})
]
# Integral numbers are the 64-bit branch; the number branch is the rest (finite by JSON).
_Fraction = Annotated[float, WithJsonSchema({"type": "number", "not": {"type": "integer"}})]
_JSON_TREE_HELP = (
    "Any JSON value: text without control characters, a finite number, a 64-bit integer, "
    "a boolean, null, or a list or object of these (bounded depth)"
)
JsonTree = TypeAliasType(
    "JsonTree",
    "Annotated[SafeStr | _Int64 | _Fraction | bool | list[JsonTree] | _JsonMap | None, "
    "Field(description=_JSON_TREE_HELP)]",
)
"""The JSON Schema of a ``JsonObject``'s values (validation is ``check_json_tree``)."""
_JsonMap = Annotated[dict[SafeStr, JsonTree], _SafeKeysSchema()]
_JSON_OBJECT = TypeAdapter(_JsonMap)


class _JsonObjectSchema:
    """Publishes what ``check_json_tree`` accepts, as the recursive component ``JsonTree``."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(_JSON_OBJECT.core_schema)


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_tree), _JsonObjectSchema()]
"""A free-form JSON object: safe strings, finite numbers, 64-bit integers, bounded depth."""

PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
"""A positive number stored in an ``INTEGER`` column (versions, counts)."""


MAX_TAGS = 50
_SAFE_CLASS = SAFE_TEXT_PATTERN[3:-3]  # the refused characters, for composing patterns
TAG_MAP_SCHEMA: dict[str, Any] = {
    "maxProperties": MAX_TAGS,
    "propertyNames": {"pattern": f"^[^,={_SAFE_CLASS}]{{1,63}}$"},
    "additionalProperties": {"type": "string", "pattern": f"^[^,{_SAFE_CLASS}]{{0,255}}$"},
}
"""``check_tags`` as JSON Schema (a field's ``json_schema_extra``)."""


def _shown(text: str, limit: int = 64) -> str:
    """``text`` as a repr, cut to ``limit`` characters so an error never echoes a huge value."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags of jobs and models: at most 50; keys 1..63 chars without ',' or '='; values at
    most 255 chars without ',' (the ``key=value,...`` filter syntax must stay unambiguous)."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not key or len(key) > 63 or "," in key or "=" in key:
            raise ValueError(f"tag key {_shown(key)} must be 1..63 chars without ',' or '='")
        if len(value) > 255 or "," in value:
            raise ValueError(f"tag value of {_shown(key)} must be at most 255 chars without ','")
    return tags


class RequestModel(BaseModel):
    """Base of every request body: no unknown fields, no ``NaN``/``Infinity`` floats."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
