"""Feature value types, entity keys and feature references: the vocabulary every part shares.

An entity key is the canonical JSON of the join key values in the entity's order
(``[1001]``, ``["eu", 7]``): the same text whoever computes it (materialization, push, a
lookup), so the online stores need nothing but string keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ml_platform.core.errors import FieldViolation, InvalidArgument

__all__ = [
    "MAX_KEY_BYTES",
    "FeatureRef",
    "ValueStatus",
    "ValueType",
    "coerce_value",
    "entity_key",
    "parse_refs",
]

MAX_KEY_BYTES = 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ValueType(str, Enum):
    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"


class ValueStatus(str, Enum):
    PRESENT = "PRESENT"
    MISSING = "MISSING"
    OUTSIDE_TTL = "OUTSIDE_TTL"


@dataclass(frozen=True)
class FeatureRef:
    """``<view>:<feature>``."""

    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


def _invalid(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {why}", [FieldViolation(field, why)])


def parse_refs(refs: Sequence[str], field: str = "features") -> list[FeatureRef]:
    """``view:feature`` strings (a repeated one is answered each time it is named)."""
    if not refs:
        raise _invalid(field, "name at least one feature as '<view>:<feature>'")
    out: list[FeatureRef] = []
    for i, ref in enumerate(refs):
        view, sep, feature = ref.partition(":")
        if not sep or not view or not feature or ":" in feature:
            raise _invalid(f"{field}[{i}]", f"{ref[:80]!r} is not '<view>:<feature>'")
        out.append(FeatureRef(view, feature))
    return out


def coerce_value(value: Any, kind: ValueType, field: str) -> Any:
    """``value`` as ``kind`` (JSON-compatible), or ``InvalidArgument`` naming ``field``.
    ``None`` stays ``None`` (a missing value)."""
    if value is None:
        return None
    if kind is ValueType.BOOL:
        if isinstance(value, bool):
            return value
    elif kind is ValueType.INT64:
        if isinstance(value, int) and not isinstance(value, bool):
            if INT64_MIN <= value <= INT64_MAX:
                return value
            raise _invalid(field, "is outside the 64-bit integer range")
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
    elif kind is ValueType.FLOAT64:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
            raise _invalid(field, "must be a finite number")
    elif kind is ValueType.STRING and isinstance(value, str):
        return value
    raise _invalid(field, f"expected {kind.value}, got {type(value).__name__} {str(value)[:40]!r}")


def entity_key(row: Mapping[str, Any], join_keys: Sequence[tuple[str, str]], field: str) -> str:
    """The canonical key of ``row``'s join key values; each must be present and typed."""
    values = []
    for name, kind in join_keys:
        if name not in row or row[name] is None:
            raise _invalid(f"{field}.{name}", f"join key {name!r} is missing")
        values.append(coerce_value(row[name], ValueType(kind), f"{field}.{name}"))
    key = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    if len(key.encode()) > MAX_KEY_BYTES:
        raise _invalid(field, f"the join key values are longer than {MAX_KEY_BYTES} bytes")
    return key
