"""V2 REST infer bodies read with simdjson: float tensor data goes from the JSON text into
numpy without a Python object per number.

Read with orjson, every number of a tensor becomes a Python float, which numpy then reads
back one at a time: for a 1,000-row request, those two steps were most of the request's
time. Here simdjson parses the document once, and each input's ``data`` array of a
floating-point datatype (FP16, FP32, FP64) is copied out as float64 in one call. Nested
arrays are read in row-major order at any depth, as Triton reads them; the element count is
checked against the shape afterwards, as for any other input.

Everything else becomes the Python values orjson would give. Data that is not all numbers
(booleans, nulls, strings) and the data of every other datatype become Python lists, which
the general path converts or refuses as before. A body simdjson refuses (malformed JSON,
integers beyond 64 bits), or one whose request or tensor objects repeat a key (orjson keeps
the last value, simdjson's lookup the first), is parsed by orjson instead, so what is
accepted, and the errors, stay orjson's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import simdjson

FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})


class _RepeatedKey(Exception):
    """An object of the request repeats a key: orjson reads the body (it keeps the last)."""


def loads_infer_request(body: bytes) -> Any:
    """The parsed body: plain Python values, except that float tensors' ``data`` arrays are
    float64 numpy arrays. Raises ``orjson.JSONDecodeError`` for a body that is not JSON."""
    try:
        doc = simdjson.Parser().parse(body)  # a parser per call: nothing shared between threads
        if not isinstance(doc, simdjson.Object):
            return _plain(doc)
        return {
            key: _inputs(doc[key]) if key == "inputs" else _plain(doc[key]) for key in _keys(doc)
        }
    except (ValueError, RuntimeError, _RepeatedKey):  # not JSON, beyond simdjson, repeated keys
        return orjson.loads(body)


def _keys(obj: Any) -> list[str]:
    """An object's keys (``obj[key]`` gives simdjson's view of the value, where ``items()``
    would convert it to Python)."""
    keys: list[str] = list(obj.keys())
    if len(set(keys)) != len(keys):
        raise _RepeatedKey
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
