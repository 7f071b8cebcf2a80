"""XGBoost boosters from the native JSON or UBJ formats (no code runs on load)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction


class XGBoostRuntime:
    input_dtype: np.dtype[Any] = np.dtype(np.float32)
    value_dtype: np.dtype[Any] = np.dtype(np.float32)

    def __init__(self, path: str, labels: tuple[str, ...]) -> None:
        import xgboost as xgb

        try:
            booster = xgb.Booster()
            booster.load_model(path)
            booster.set_param({"nthread": 1})
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        except Exception as exc:
            raise ModelLoadError(f"cannot load XGBoost model: {type(exc).__name__}: {exc}") from exc
        self._booster: xgb.Booster | None = booster
        self._objective = str(objective)
        self._labels = labels

    def predict(self, rows: FloatArray) -> Prediction:
        assert self._booster is not None, "model unloaded"
        out = np.asarray(self._booster.inplace_predict(rows), dtype=np.float64)
        if self._objective in ("binary:logistic",):
            probs = np.column_stack([1.0 - out, out])
            return Prediction((out > 0.5).astype(np.float64), probs, self._labels_for(2))
        if self._objective == "multi:softprob":
            return Prediction(
                out.argmax(axis=1).astype(np.float64), out, self._labels_for(out.shape[1])
            )
        if out.ndim > 1:
            out = out[:, 0]
        return Prediction(out)

    def _labels_for(self, n: int) -> tuple[str, ...]:
        return self._labels if len(self._labels) == n else tuple(str(i) for i in range(n))

    def unload(self) -> None:
        self._booster = None
