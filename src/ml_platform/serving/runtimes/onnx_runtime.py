"""ONNX models through onnxruntime (no code runs on load)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class OnnxRuntime:
    def __init__(self, path: str, labels: tuple[str, ...]) -> None:
        import onnxruntime as ort

        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(
                path, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load ONNX model: {type(exc).__name__}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(
                f"ONNX model must take one 2-D input tensor, it takes {len(inputs)}"
            )
        dtype = _ORT_DTYPES.get(inputs[0].type)
        if dtype is None:
            raise ModelLoadError(f"unsupported ONNX input type {inputs[0].type}")
        self.input_dtype: np.dtype[Any] = np.dtype(dtype)
        self.value_dtype: np.dtype[Any] = self.input_dtype
        self._session: Any = session
        self._input_name = inputs[0].name
        self._labels = labels

    def predict(self, rows: FloatArray) -> Prediction:
        assert self._session is not None, "model unloaded"
        outputs = self._session.run(None, {self._input_name: rows})
        first = np.asarray(outputs[0])
        if len(outputs) < 2:  # regressor or single-output model
            values = first.reshape(first.shape[0], -1)[:, 0]
            return Prediction(values.astype(np.float64, copy=False))
        probs_raw: Any = outputs[1]
        if isinstance(probs_raw, list):  # ZipMap output: a list of {label: prob}
            keys = list(probs_raw[0].keys()) if probs_raw else []
            probs = np.array([[row[k] for k in keys] for row in probs_raw], dtype=np.float64)
            labels = tuple(str(k) for k in keys)
        else:
            probs = np.asarray(probs_raw, dtype=np.float64)
            labels = (
                self._labels
                if len(self._labels) == probs.shape[1]
                else tuple(str(i) for i in range(probs.shape[1]))
            )
        if np.issubdtype(first.dtype, np.number):
            values = first.astype(np.float64)
        else:
            values = probs.argmax(axis=1).astype(np.float64)
        return Prediction(values.reshape(-1), probs, labels)

    def unload(self) -> None:
        self._session = None
