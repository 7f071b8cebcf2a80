"""The V2 REST body reader (simdjson) agrees with orjson + numpy on every body, generated.

The tests read every body with simdjson (``simdjson_from=0``): by default, bodies under
``SIMDJSON_FROM_BYTES`` go to orjson itself."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.serving.adapters.json_tensors import (
    FLOAT_DATATYPES,
    SIMDJSON_FROM_BYTES,
    loads_infer_request,
)
from ml_platform.serving.plane.v2 import DTYPES

_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(min_value=-1000, max_value=1000),
)
_scalars = st.one_of(_numbers, st.booleans(), st.none(), st.text(max_size=4))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
# tensor data: mostly numbers (flat, nested, ragged), sometimes anything else
_data = st.one_of(
    st.lists(_numbers, max_size=30),
    st.lists(st.lists(_numbers, min_size=3, max_size=3), max_size=6),
    st.recursive(_numbers, lambda inner: st.lists(inner, max_size=4), max_leaves=20),
    _json,
)
_datatypes = st.sampled_from([*sorted(FLOAT_DATATYPES), "INT64", "UINT8", "BOOL", "", "BYTES"])


@st.composite
def _tensor(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": draw(st.text(max_size=6)), "datatype": draw(_datatypes)}
    spec["shape"] = draw(st.lists(st.integers(-1, 40), max_size=3))
    spec["data"] = draw(_data)
    if draw(st.booleans()):
        spec["parameters"] = draw(st.dictionaries(st.text(max_size=4), _json, max_size=2))
    return spec


_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(st.one_of(_tensor(), _json), max_size=3)},
    optional={"id": st.text(max_size=8), "outputs": _json, "parameters": _json},
)


def _as_tensor(data: Any, dtype: np.dtype[Any]) -> np.ndarray[Any, Any] | None:
    """What the REST codec makes of ``data`` (``np.asarray(...).reshape(-1)``); None when it
    refuses it."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return np.asarray(data, dtype=dtype).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            return None


def _numbers_row_major(data: Any) -> list[float] | None:
    """Every number of ``data`` in row-major order at any depth; None if it holds anything but
    numbers and lists."""
    if isinstance(data, bool) or data is None or isinstance(data, str | dict):
        return None
    if isinstance(data, list):
        out: list[float] = []
        for item in data:
            part = _numbers_row_major(item)
            if part is None:
                return None
            out.extend(part)
        return out
    return [float(data)]


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()  # bit for bit: -0.0, rounding


def _check_tensor_data(expected: Any, got: Any, datatype: Any) -> None:
    if datatype not in FLOAT_DATATYPES or not isinstance(expected, list):
        assert got == expected  # untouched: plain Python values, as orjson gives them
        return
    flat = _numbers_row_major(expected)
    if flat is not None:  # all numbers: read by simdjson, not by Python
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
    dtype = DTYPES[datatype]
    want, have = _as_tensor(expected, dtype), _as_tensor(got, dtype)
    if want is not None:
        assert have is not None and _same(want, have), (expected, got)
        return
    # numpy refused it: only a ragged nesting of numbers is read (row-major, as Triton does)
    if flat is None or have is None:
        assert have is None, (expected, got)
        return
    assert _same(have, _as_tensor(flat, dtype))  # type: ignore[arg-type]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_bodies)
def test_every_body_reads_as_orjson_and_numpy_read_it(doc: dict[str, Any]) -> None:
    body = orjson.dumps(doc)
    expected = orjson.loads(body)
    got = loads_infer_request(body, simdjson_from=0)
    objects = [expected, *(t for t in expected["inputs"] if isinstance(t, dict))]
    if any("\x00" in key for obj in objects for key in obj):  # simdjson cannot look it up
        assert got == expected  # so orjson read the body
        return
    assert set(got) == set(expected)
    for key in expected:
        if key != "inputs":
            assert got[key] == expected[key]
    assert len(got["inputs"]) == len(expected["inputs"])
    for want, have in zip(expected["inputs"], got["inputs"], strict=True):
        if not isinstance(want, dict):
            assert have == want
            continue
        assert set(have) == set(want)
        for key in want:
            if key == "data":
                _check_tensor_data(want["data"], have["data"], want.get("datatype"))
            else:
                assert have[key] == want[key]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=40), _json.map(orjson.dumps).map(lambda b: b[:-1])))
def test_what_is_not_json_is_refused_as_orjson_refuses_it(body: bytes) -> None:
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        with pytest.raises(orjson.JSONDecodeError) as info:
            loads_infer_request(body, simdjson_from=0)
        assert str(info.value) == str(exc)  # orjson's own message: line and column
    else:
        assert loads_infer_request(body, simdjson_from=0) == expected


def test_float_tensors_come_as_float64_arrays_and_the_rest_as_python() -> None:
    body = (
        b'{"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],'
        b' "data": [[1, 2.5], [-0.0, 1e300]]}, {"name": "k", "datatype": "INT64",'
        b' "shape": [2], "data": [9223372036854775807, -1]}]}'
    )
    doc = loads_infer_request(body, simdjson_from=0)
    floats, ints = doc["inputs"]
    assert isinstance(floats["data"], np.ndarray) and floats["data"].dtype == np.float64
    assert floats["data"].tolist() == [1.0, 2.5, -0.0, 1e300]
    assert ints["data"] == [9223372036854775807, -1]  # exact: integers are never floats here
    assert doc["id"] == "r1"


def test_a_key_given_twice_keeps_its_last_value_as_orjson() -> None:
    body = (
        b'{"inputs": [], "inputs": [{"name": "a", "datatype": "FP64", "data": [1],'
        b' "data": [2, 3], "shape": [2]}], "id": "x", "id": "y"}'
    )
    doc = loads_infer_request(body, simdjson_from=0)
    assert doc == orjson.loads(body)
    assert doc["id"] == "y" and doc["inputs"][0]["data"] == [2, 3]


def test_small_bodies_are_read_by_orjson() -> None:
    body = b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}'
    assert len(body) < SIMDJSON_FROM_BYTES
    assert loads_infer_request(body) == orjson.loads(body)  # lists, not arrays
    big = body.replace(b"[1, 2]", b"[" + b", ".join([b"1.5"] * 2000) + b"]").replace(
        b"[2]", b"[2000]"
    )
    assert len(big) >= SIMDJSON_FROM_BYTES
    assert isinstance(loads_infer_request(big)["inputs"][0]["data"], np.ndarray)


@pytest.mark.parametrize(
    "data",
    [b"[1, true]", b"[1, null]", b'[1, "2"]', b"[1, {}]", b"[1, 99999999999999999999]"],
)
def test_data_that_is_not_all_numbers_is_left_to_numpy(data: bytes) -> None:
    body = b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "data": ' + data + b"}]}"
    assert loads_infer_request(body, simdjson_from=0) == orjson.loads(body)


def _big_body(value: float, repeated_key: bool = False) -> bytes:
    data = b"[" + b", ".join([repr(value).encode()] * 2000) + b"]"
    spec = b'{"name": "a", "datatype": "FP64", "shape": [2000], "data": ' + data + b"}"
    extra = b', "id": "x", "id": "y"' if repeated_key else b""
    return b'{"inputs": [' + spec + b"]" + extra + b"}"


def test_a_thread_reuses_its_parser_and_a_view_left_alive_costs_only_a_new_one() -> None:
    import simdjson

    from ml_platform.serving.adapters import json_tensors

    first = loads_infer_request(_big_body(1.5))["inputs"][0]["data"]
    parser = json_tensors._local.parser
    assert loads_infer_request(_big_body(2.5))["inputs"][0]["data"][0] == 2.5
    assert json_tensors._local.parser is parser  # the same parser, and the first answer intact
    assert first[0] == 1.5 and first.shape == (2000,)
    alive = parser.parse(b'{"a": [1]}')  # somebody still holds a view of the parser's document
    third = loads_infer_request(_big_body(3.5))["inputs"][0]["data"]
    assert third[0] == 3.5 and isinstance(third, np.ndarray)
    assert json_tensors._local.parser is not parser  # the held one was left alone
    assert isinstance(alive, simdjson.Object) and alive["a"].as_list() == [1]
    # a body refused halfway through the walk (a repeated key) leaves the parser usable
    assert loads_infer_request(_big_body(4.5, repeated_key=True))["id"] == "y"
    assert loads_infer_request(_big_body(5.5))["inputs"][0]["data"][1999] == 5.5


def test_threads_parse_at_once_each_with_its_own_parser() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def read(i: int) -> float:
        return float(loads_infer_request(_big_body(float(i)))["inputs"][0]["data"].sum())

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, range(64))) == [2000.0 * i for i in range(64)]


def test_a_key_with_a_nul_character_is_read_by_orjson() -> None:
    body = _big_body(1.5).replace(b'"name"', b'"na\\u0000me"')
    assert loads_infer_request(body) == orjson.loads(body)


@pytest.mark.parametrize("depth", [1, 60, 900, 5000])
def test_deeply_nested_bodies_are_read_or_refused_as_orjson_does(depth: int) -> None:
    nested = b"[" * depth + b"1.5" + b"]" * depth
    body = b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": ' + nested
    body += b'}], "parameters": {"x": ' + nested + b"}}" + b" " * SIMDJSON_FROM_BYTES
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError:  # beyond orjson's depth: the same refusal
        with pytest.raises(orjson.JSONDecodeError):
            loads_infer_request(body)
        return
    got = loads_infer_request(body)
    assert got["parameters"] == expected["parameters"]
    assert np.asarray(got["inputs"][0]["data"]).reshape(-1).tolist() == [1.5]
