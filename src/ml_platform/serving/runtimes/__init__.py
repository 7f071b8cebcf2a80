"""Model runtimes behind one tiny loader interface: ``load_runtime(model) -> ModelRuntime``."""

from __future__ import annotations

import numpy as np

from ml_platform.serving.models import ArtifactFormat, ServedModel
from ml_platform.serving.runtimes.base import ModelLoadError, ModelRuntime, Prediction


def load_runtime(model: ServedModel, *, compile_forests: bool = True) -> ModelRuntime:
    """Load ``model``'s artifact. Pickle formats run code: the caller must isolate them."""
    fmt = model.artifact_format
    path = model.artifact_path
    labels = model.signature.outputs
    if fmt is ArtifactFormat.ONNX:
        from ml_platform.serving.runtimes.onnx_runtime import OnnxRuntime

        return OnnxRuntime(path, labels)
    if fmt in (ArtifactFormat.XGBOOST_JSON, ArtifactFormat.XGBOOST_UBJ):
        from ml_platform.serving.runtimes.xgboost_native import XGBoostRuntime

        return XGBoostRuntime(path, labels)
    from ml_platform.serving.runtimes import scikit_learn as sklearn_rt

    if fmt is ArtifactFormat.SKOPS:
        return sklearn_rt.load_skops(path, compile_forests=compile_forests)
    if fmt is ArtifactFormat.JOBLIB:
        return sklearn_rt.load_joblib(path, compile_forests=compile_forests)
    if fmt is ArtifactFormat.PICKLE:
        return sklearn_rt.load_pickle(path, compile_forests=compile_forests)
    raise ModelLoadError(f"unsupported artifact format {fmt}")


def warm_up(runtime: ModelRuntime, n_features: int) -> Prediction:
    """Run one prediction on a zero row so the first real request pays no lazy init."""
    return runtime.predict(np.zeros((1, n_features), dtype=runtime.input_dtype))


__all__ = ["ModelLoadError", "ModelRuntime", "Prediction", "load_runtime", "warm_up"]
