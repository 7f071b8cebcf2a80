"""V2 REST infer bodies read with simdjson: float tensor data goes from the JSON text into
numpy without a Python object per number.

Read with orjson, every number of a tensor becomes a Python float, which numpy then reads
back one at a time: for a 1,000-row request, those two steps were most of the request's
time. Here simdjson parses a body of ``SIMDJSON_FROM_BYTES`` or more once, and each input's
``data`` array of a floating-point datatype (FP16, FP32, FP64) is copied out as float64 in
one call. Nested arrays are read in row-major order at any depth, as Triton reads them; the
element count is checked against the shape afterwards, as for any other input.

Everything else becomes the Python values orjson would give. Data that is not all numbers
(booleans, nulls, strings) and the data of every other datatype become Python lists, which
the general path converts or refuses as before. A body simdjson refuses (malformed JSON,
integers beyond 64 bits), or one whose request or tensor objects repeat a key (orjson keeps
the last value, simdjson's lookup the first) or hold a key with a NUL character, is parsed
by orjson instead, so what is
accepted, and the errors, stay orjson's.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from ml_platform.serving.plane.v2 import DTYPES

FLOAT_DATATYPES = frozenset(name for name, dtype in DTYPES.items() if dtype.kind == "f")
"""The V2 datatypes whose ``data`` is read into float64 in one call (FP16, FP32, FP64)."""
SIMDJSON_FROM_BYTES = 4096
"""Smaller bodies (a few rows) go to orjson: walking simdjson's document from Python costs
more than their numbers do (one row of 20 features: 4.0 us against 1.3; they break even at
about 10 rows, 4 KB; 1,000 rows: 320 against 634)."""
REUSE_PARSER_UP_TO_BYTES = 4 << 20
"""Each thread keeps one parser for bodies up to this size: a new parser's buffers cost a
1,000-row request about 160 us in the serving worker (554 us against 390 us per parse).
A parser keeps buffers of about 1.7 times the largest body it read (6.4 MiB of memory after
a 3.7 MiB body), so larger bodies get a parser of their own, freed with the request."""

_local = threading.local()


class _ReadByOrjson(Exception):
    """An object whose keys simdjson's lookup cannot serve as orjson reads them: a repeated
    key (orjson keeps its last value, the lookup finds the first) or a key with a NUL
    character (the lookup finds none)."""


def loads_infer_request(body: bytes, simdjson_from: int = SIMDJSON_FROM_BYTES) -> Any:
    """The parsed body: plain Python values, except that float tensors' ``data`` arrays are
    float64 numpy arrays when the body has ``simdjson_from`` bytes or more. Raises
    ``orjson.JSONDecodeError`` for a body that is not JSON."""
    if len(body) < simdjson_from:
        return orjson.loads(body)
    try:
        doc = _parse(body)
        if not isinstance(doc, simdjson.Object):
            return _plain(doc)
        return {
            key: _inputs(doc[key]) if key == "inputs" else _plain(doc[key]) for key in _keys(doc)
        }
    except (ValueError, RuntimeError, _ReadByOrjson):  # not JSON, beyond simdjson, repeated keys
        return orjson.loads(body)


def _parse(body: bytes) -> Any:
    if len(body) > REUSE_PARSER_UP_TO_BYTES:
        return simdjson.Parser().parse(body)
    parser = getattr(_local, "parser", None)
    if parser is not None:
        try:
            return parser.parse(body)
        except RuntimeError:  # a view of its last document is still alive: use a new one
            pass
    _local.parser = simdjson.Parser()
    return _local.parser.parse(body)


def _keys(obj: Any) -> list[str]:
    """An object's keys (``obj[key]`` gives simdjson's view of the value, where ``items()``
    would convert it to Python)."""
    keys: list[str] = list(obj.keys())
    if len(set(keys)) != len(keys) or any("\x00" in key for key in keys):
        raise _ReadByOrjson
    return keys


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _inputs(value: Any) -> Any:
    if not isinstance(value, simdjson.Array):
        return _plain(value)
    return [_tensor(spec) if isinstance(spec, simdjson.Object) else _plain(spec) for spec in value]


def _tensor(spec: Any) -> dict[str, Any]:
    out = {key: _plain(spec[key]) for key in _keys(spec) if key != "data"}
    if "data" in spec:
        out["data"] = _data(spec["data"], out.get("datatype"))
    return out


def _data(data: Any, datatype: Any) -> Any:
    if isinstance(data, simdjson.Array) and datatype in FLOAT_DATATYPES:
        try:
            return np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError):  # not all numbers: the general path decides
            pass
    return _plain(data)
