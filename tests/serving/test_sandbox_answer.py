"""The sandbox's answer frame: whatever array layout a tenant's runtime returns (float32,
strided, Fortran order, the usual C-contiguous float64 sent from its own memory), the frame
sent over a real socket carries a header whose sizes match, and C-order float64 bytes."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.serving.runtimes.base import Prediction
from ml_platform.serving.sandbox import wire
from ml_platform.serving.sandbox.child import Sandbox, _send_all


class _Runtime:
    input_dtype: np.dtype[Any] = np.dtype(np.float64)
    value_dtype: np.dtype[Any] = np.dtype(np.float64)

    def __init__(self, values: np.ndarray[Any, Any], probs: np.ndarray[Any, Any] | None) -> None:
        self._pred = Prediction(values, probs, ("a", "b", "c")[: 0 if probs is None else 3])

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        return self._pred


def _sandbox(runtime: _Runtime) -> Sandbox:
    sb = Sandbox.__new__(Sandbox)
    sb._models = {"k": runtime}
    return sb


def _layouts(draw: st.DrawFn, base: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    kind = draw(st.sampled_from(["c64", "f32", "strided", "fortran"]))
    if kind == "f32":
        return base.astype(np.float32)
    if kind == "strided":
        doubled = np.repeat(base, 2, axis=0)
        return doubled[::2]
    if kind == "fortran":
        return np.asfortranarray(base)
    return np.ascontiguousarray(base)


@st.composite
def _prediction(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    n = draw(st.integers(1, 40))
    floats = st.floats(-1e6, 1e6, width=32)
    values = np.array(draw(st.lists(floats, min_size=n, max_size=n)), dtype=np.float64)
    if draw(st.booleans()):
        return _layouts(draw, values), None
    probs = np.array(draw(st.lists(floats, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    return _layouts(draw, values), _layouts(draw, probs)


@settings(max_examples=60, deadline=None)
@given(_prediction())
def test_the_answer_frame_matches_its_header_and_carries_c_order_float64(
    pred: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None],
) -> None:
    values, probs = pred
    n = values.shape[0]
    sb = _sandbox(_Runtime(values, probs))
    rows = memoryview(np.zeros((n, 2)).tobytes())
    a, b = socket.socketpair()
    with a, b:
        _send_all(a, sb._answer(7, wire.OP_PREDICT, "k", n, 2, rows))
        a.shutdown(socket.SHUT_WR)
        frame = b""
        while chunk := b.recv(1 << 16):
            frame += chunk
    body_len, rid, status, rn, k = wire.RESPONSE.unpack_from(frame)
    body = frame[wire.RESPONSE.size :]
    assert (rid, status, rn, k) == (7, wire.ST_OK, n, 0 if probs is None else 3)
    assert body_len == len(body) == 8 * n * (1 + k)
    expected = np.asarray(values, dtype=np.float64).tobytes()
    if probs is not None:
        expected += np.asarray(probs, dtype=np.float64).tobytes(order="C")
    assert body == expected
