"""scikit-learn estimators from joblib/pickle (code runs on load) or skops (safe)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ml_platform.serving.runtimes import forest_kernel
from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction
from ml_platform.serving.runtimes.forest_kernel import PackedForest
from ml_platform.serving.runtimes.tree_check import check_trees

# Modules whose types a skops file may contain; anything else refuses to load.
_SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class SklearnRuntime:
    input_dtype: np.dtype[Any] = np.dtype(np.float64)

    def __init__(self, estimator: Any, *, compile_forests: bool = True) -> None:
        if not hasattr(estimator, "predict"):
            raise ModelLoadError(
                f"artifact is a {type(estimator).__name__}, not a fitted estimator"
            )
        self._estimator = estimator
        self.value_dtype: np.dtype[Any] = (
            np.dtype(np.float32) if _computes_in_float32(estimator) else self.input_dtype
        )
        self._proba = (
            getattr(estimator, "predict_proba", None) if hasattr(estimator, "classes_") else None
        )
        classes = getattr(estimator, "classes_", None)
        self._classes = None if classes is None else np.asarray(classes)
        self._labels = () if classes is None else tuple(str(c) for c in classes)
        self._compiled = _compile(estimator) if compile_forests else None
        numeric = self._classes is not None and np.issubdtype(self._classes.dtype, np.number)
        # Class labels become float predictions; non-numeric classes predict their index.
        self._class_values = (
            None
            if self._classes is None
            else (
                self._classes.astype(np.float64)
                if numeric
                else np.arange(len(self._classes), dtype=np.float64)
            )
        )

    def predict(self, rows: FloatArray) -> Prediction:
        compiled = self._compiled
        if compiled is not None and (
            rows.shape[1] != compiled.n_features or not np.isfinite(rows).all()
        ):  # scikit-learn checks the shape, routes NaN by its rules and refuses infinity
            compiled = None
        if self._proba is not None and self._class_values is not None:
            if compiled is not None:
                proba = compiled.predict(rows)
            else:
                proba = np.asarray(self._proba(rows), dtype=np.float64)
            return Prediction(self._class_values[proba.argmax(axis=1)], proba, self._labels)
        if compiled is not None:
            return Prediction(compiled.predict(rows)[:, 0])
        out = np.asarray(self._estimator.predict(rows))
        if out.ndim > 1:
            out = out[:, 0]
        if self._classes is not None and not np.issubdtype(out.dtype, np.number):
            out = np.searchsorted(self._classes, out)
        return Prediction(out.astype(np.float64, copy=False))

    def unload(self) -> None:
        self._estimator = None
        self._proba = None
        self._compiled = None


def _computes_in_float32(estimator: Any) -> bool:
    """Tree models: scikit-learn casts their rows to float32 (``sklearn.tree._tree.DTYPE``) and
    raises on a value beyond its range."""
    from sklearn.ensemble import IsolationForest
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.tree import BaseDecisionTree

    kinds = (BaseDecisionTree, BaseForest, BaseGradientBoosting, IsolationForest)
    return isinstance(estimator, kinds)


def load_pickle(path: str, *, compile_forests: bool = True) -> SklearnRuntime:
    """Unpickle ``path``. Runs arbitrary code: call only in a tenant's own sandbox process."""
    with open(path, "rb") as fh:
        try:
            obj = pickle.load(fh)  # noqa: S301 - isolated per tenant by the supervisor
        except Exception as exc:
            raise ModelLoadError(f"cannot unpickle artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj, compile_forests=compile_forests)


def load_joblib(path: str, *, compile_forests: bool = True) -> SklearnRuntime:
    """joblib.load ``path``. Runs arbitrary code: call only in a tenant's own sandbox process."""
    import joblib

    try:
        obj = joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot load joblib artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj, compile_forests=compile_forests)


def load_skops(source: str | bytes, *, compile_forests: bool = True) -> SklearnRuntime:
    """Load a skops file (its path, or its bytes), refusing any type outside scikit-learn,
    numpy and scipy."""
    import skops.io as sio

    try:
        untrusted = (
            sio.get_untrusted_types(data=source)
            if isinstance(source, bytes)
            else sio.get_untrusted_types(file=source)
        )
        _refuse_untrusted(untrusted)
        obj = (
            sio.loads(source, trusted=untrusted)
            if isinstance(source, bytes)
            else sio.load(source, trusted=untrusted)
        )
        check_trees(obj)  # this process is shared: no tree may index out of bounds
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load skops artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj, compile_forests=compile_forests)


def skops_export(runtime: Any, *, max_bytes: int) -> bytes:
    """A loaded model as skops bytes that ``load_skops`` accepts (same trusted types).

    Raises ModelLoadError saying why not: not a scikit-learn runtime, a type skops cannot
    write or ``load_skops`` would refuse (custom classes, functions), or over ``max_bytes``.
    """
    import skops.io as sio

    if not isinstance(runtime, SklearnRuntime) or runtime._estimator is None:
        raise ModelLoadError("only scikit-learn estimators can be exported as skops")
    try:
        data = sio.dumps(runtime._estimator)
        _refuse_untrusted(sio.get_untrusted_types(data=data))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"skops cannot write it: {type(exc).__name__}: {exc}") from exc
    if len(data) > max_bytes:
        raise ModelLoadError(f"its skops export is {len(data)} bytes, over {max_bytes}")
    return bytes(data)


def _refuse_untrusted(untrusted: list[str]) -> None:
    refused = [t for t in untrusted if not t.startswith(_SKOPS_TRUSTED_PREFIXES)]
    if refused:
        raise ModelLoadError(
            "skops artifact contains untrusted types: " + ", ".join(sorted(refused))
        )


class CompiledLogistic:
    """LogisticRegression probabilities without scikit-learn's per-call validation.

    ``predict_proba`` spends about 1 ms per call on a single row validating its input (array
    checks, dataframe detection, fitted checks), 50 times the arithmetic. This does the
    arithmetic only, with the operations scikit-learn itself uses (``X @ coef_.T +
    intercept_``, then ``expit`` for two classes or ``softmax`` for more), and is used only
    after it reproduced ``predict_proba`` exactly on probe rows at load time.
    """

    def __init__(self, estimator: Any) -> None:
        from scipy.special import expit  # type: ignore[import-untyped]
        from sklearn.utils.extmath import softmax

        self._expit, self._softmax = expit, softmax
        self._coef_t = np.asarray(estimator.coef_, dtype=np.float64).T
        self._intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        self._binary = len(estimator.classes_) <= 2
        self.n_features = int(self._coef_t.shape[0])

    def predict(self, rows: FloatArray) -> np.ndarray:
        """``predict_proba``: (rows, classes)."""
        scores = rows @ self._coef_t + self._intercept
        if self._binary:
            positive = self._expit(scores.ravel())
            proba = np.empty((positive.shape[0], 2))
            proba[:, 0] = 1 - positive
            proba[:, 1] = positive
            return proba
        return np.asarray(self._softmax(scores, copy=False))


Compiled = PackedForest | CompiledLogistic
"""A compiled estimator: ``predict(rows)`` gives the classifier's ``predict_proba`` or the
regressor's ``predict`` as one column, for NaN-free rows of ``n_features`` columns."""


def _compile(estimator: Any) -> Compiled | None:
    """A verified compiled path for the estimator, or None (scikit-learn's own predict)."""
    return _compile_forest(estimator) or _compile_logistic(estimator)


def _compile_logistic(estimator: Any) -> CompiledLogistic | None:
    """A verified compiled LogisticRegression (dense coefficients), else None."""
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression:
        return None
    try:
        compiled = CompiledLogistic(estimator)
        rng = np.random.default_rng(0)
        n = int(estimator.n_features_in_)
        for size in (1, 2, 17, 64):  # numpy picks kernels by shape: probe several
            probe = rng.normal(0.0, 3.0, size=(size, n))
            if not np.array_equal(compiled.predict(probe), estimator.predict_proba(probe)):
                return None
    except Exception:
        return None
    return compiled


def _compile_forest(estimator: Any) -> PackedForest | None:
    """The forest packed for the numba kernel (``forest_kernel``), verified, else None.

    Plain RandomForest/ExtraTrees classifiers and single-output regressors. The packed
    forest is used only after it reproduced ``predict_proba`` (``predict``) exactly at load
    on probe rows: random ones and rows exactly on the first tree's thresholds, each kind
    in a full and in a partial block of the kernel's rows.
    """
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    classifier = type(estimator) in (RandomForestClassifier, ExtraTreesClassifier)
    if not (classifier or type(estimator) in (RandomForestRegressor, ExtraTreesRegressor)):
        return None
    if not forest_kernel.available():
        return None
    try:
        n_features = int(estimator.n_features_in_)
        trees = [e.tree_ for e in estimator.estimators_]
        probe = _forest_probe(trees[0], n_features)
        want = (
            estimator.predict_proba(probe)
            if classifier
            else np.asarray(estimator.predict(probe)).reshape(-1, 1)
        )
        for normalize in (False, True) if classifier else (False,):
            packed = forest_kernel.pack(trees, n_features, normalize=normalize)
            if all(  # first and last rows: random and on-threshold ones past a full block
                np.array_equal(packed.predict(probe[part]), want[part])
                for n in (1, forest_kernel.BLOCK_ROWS + 5, len(probe))
                for part in (slice(None, n), slice(-n, None))
            ):
                return packed
    except Exception:
        return None
    return None


def _forest_probe(tree: Any, n_features: int) -> FloatArray:
    """Random rows, then rows whose feature sits exactly on one of ``tree``'s thresholds."""
    rng = np.random.default_rng(0)
    random = rng.normal(0.0, 3.0, size=(64, n_features))
    split = np.flatnonzero(tree.children_left != -1)[:64]
    on_threshold = rng.normal(0.0, 3.0, size=(len(split), n_features))
    on_threshold[np.arange(len(split)), tree.feature[split]] = tree.threshold[split]
    return np.vstack([random, on_threshold])
