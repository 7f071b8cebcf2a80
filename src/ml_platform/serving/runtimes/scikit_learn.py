"""scikit-learn estimators from joblib/pickle (code runs on load) or skops (safe)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction

# Modules whose types a skops file may contain; anything else refuses to load.
_SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class SklearnRuntime:
    input_dtype: np.dtype[np.floating] = np.dtype(np.float64)

    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict"):
            raise ModelLoadError(f"artifact is a {type(estimator).__name__}, not a fitted estimator")
        self._estimator = estimator
        self._proba = getattr(estimator, "predict_proba", None) if hasattr(estimator, "classes_") else None
        classes = getattr(estimator, "classes_", None)
        self._classes = None if classes is None else np.asarray(classes)
        self._labels = () if classes is None else tuple(str(c) for c in classes)
        numeric = self._classes is not None and np.issubdtype(self._classes.dtype, np.number)
        # Class labels become float predictions; non-numeric classes predict their index.
        self._class_values = (
            None
            if self._classes is None
            else (self._classes.astype(np.float64) if numeric else np.arange(len(self._classes), dtype=np.float64))
        )

    def predict(self, rows: FloatArray) -> Prediction:
        if self._proba is not None and self._class_values is not None:
            proba = np.asarray(self._proba(rows), dtype=np.float64)
            return Prediction(self._class_values[proba.argmax(axis=1)], proba, self._labels)
        out = np.asarray(self._estimator.predict(rows))
        if out.ndim > 1:
            out = out[:, 0]
        if self._classes is not None and not np.issubdtype(out.dtype, np.number):
            out = np.searchsorted(self._classes, out)
        return Prediction(out.astype(np.float64, copy=False))

    def unload(self) -> None:
        self._estimator = None
        self._proba = None


def load_pickle(path: str) -> SklearnRuntime:
    """Unpickle ``path``. Runs arbitrary code: call only in a tenant's own sandbox process."""
    with open(path, "rb") as fh:
        try:
            obj = pickle.load(fh)  # noqa: S301 - isolated per tenant by the supervisor
        except Exception as exc:
            raise ModelLoadError(f"cannot unpickle artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj)


def load_joblib(path: str) -> SklearnRuntime:
    """joblib.load ``path``. Runs arbitrary code: call only in a tenant's own sandbox process."""
    import joblib

    try:
        obj = joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot load joblib artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj)


def load_skops(path: str) -> SklearnRuntime:
    """Load a skops file, refusing any type outside scikit-learn, numpy and scipy."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(_SKOPS_TRUSTED_PREFIXES)]
        if refused:
            raise ModelLoadError("skops artifact contains untrusted types: " + ", ".join(sorted(refused)))
        obj = sio.load(path, trusted=untrusted)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load skops artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj)
