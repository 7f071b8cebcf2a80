"""scikit-learn estimators from joblib/pickle (code runs on load) or skops (safe)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction

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
        if self._proba is not None and self._class_values is not None:
            compiled = self._compiled
            if compiled is not None and not np.isnan(rows).any():
                proba = compiled.predict_proba(rows)
            else:
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
        self._compiled = None


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


def load_skops(path: str, *, compile_forests: bool = True) -> SklearnRuntime:
    """Load a skops file, refusing any type outside scikit-learn, numpy and scipy."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(_SKOPS_TRUSTED_PREFIXES)]
        if refused:
            raise ModelLoadError(
                "skops artifact contains untrusted types: " + ", ".join(sorted(refused))
            )
        obj = sio.load(path, trusted=untrusted)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load skops artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnRuntime(obj, compile_forests=compile_forests)


class CompiledForest:
    """RandomForest/ExtraTrees probabilities without scikit-learn's per-call overhead.

    scikit-learn's ``predict_proba`` costs about the same for 1 row as for 100 (validation,
    a joblib dispatch per tree, a per-tree ``(rows, classes)`` temporary added into the
    total). Here a batch of a few rows walks every tree in plain Python over lists (for one
    row, 50 trees of depth 8 are 400 list steps: cheaper than the numpy calls of any
    vectorised walk); a larger batch asks each tree's Cython ``Tree.apply`` for its leaf
    indices into one ``(trees, rows)`` array, then gathers the leaves' class probabilities
    from one table built at load time (already normalised) in a single ``np.take`` and sums
    them over the tree axis. Both replicate scikit-learn's arithmetic: float32 features
    against float64 thresholds, the same normalised leaf values, summation in tree order
    starting from zero, one division by the number of trees. They are only used after each
    reproduced ``predict_proba`` exactly on probe rows of several batch sizes at load time.
    """

    WALK_MAX_ROWS = 4
    """Up to this many rows the Python walk is the cheaper path (50 trees of depth 8, one
    process, loaded machine: 1 row 22 us walk / 57 us numpy lock-step / 96 us leaves;
    8 rows: leaves 203 us / walk 223 us)."""

    def __init__(self, forest: Any, *, normalize: bool) -> None:
        trees = [est.tree_ for est in forest.estimators_]
        self._trees = trees
        if any(t.n_outputs != 1 for t in trees):
            raise ValueError("multi-output forests are not compiled")
        offsets = np.cumsum([0] + [t.node_count for t in trees[:-1]])
        left, right, feature, threshold, proba = [], [], [], [], []
        for t, off in zip(trees, offsets, strict=True):
            leaf = t.children_left == -1
            left.append(np.where(leaf, -1, t.children_left + off))
            right.append(np.where(leaf, -1, t.children_right + off))
            feature.append(np.where(leaf, -1, t.feature))
            threshold.append(np.where(leaf, np.inf, t.threshold))
            value = t.value[:, 0, :].astype(np.float64)
            if normalize:  # scikit-learn < 1.4 stored counts and normalised per prediction
                norm = value.sum(axis=1, keepdims=True)
                norm[norm == 0] = 1.0
                value = value / norm
            proba.append(value)
        self._proba = np.ascontiguousarray(np.concatenate(proba))  # (total nodes, classes)
        self._offsets = offsets.astype(np.intp).reshape(-1, 1)
        self._n_trees = len(trees)
        # the walk's lists: Python ints and floats (a float32 feature widened to a Python
        # float compares with the float64 threshold exactly as scikit-learn's Cython does)
        self._roots: list[int] = offsets.tolist()
        self._left: list[int] = np.concatenate(left).tolist()
        self._right: list[int] = np.concatenate(right).tolist()
        self._feature: list[int] = np.concatenate(feature).tolist()
        self._threshold: list[float] = np.concatenate(threshold).tolist()
        self._class_proba: list[list[float]] = self._proba.T.tolist()

    def predict_proba(self, rows: FloatArray) -> np.ndarray:
        if rows.shape[0] > self.WALK_MAX_ROWS:
            return self.predict_proba_leaves(rows)
        return self.predict_proba_walk(rows)

    def predict_proba_leaves(self, rows: FloatArray) -> np.ndarray:
        x = np.ascontiguousarray(rows, dtype=np.float32)
        leaves = np.empty((self._n_trees, x.shape[0]), dtype=np.intp)
        for i, tree in enumerate(self._trees):
            leaves[i] = tree.apply(x)
        leaves += self._offsets
        gathered = np.take(self._proba, leaves, axis=0)  # (trees, rows, classes)
        # a reduction over the outermost axis of a C-contiguous array adds whole
        # (rows, classes) planes one after another, in tree order (no pairwise summation:
        # that is only for the innermost axis, which the probes at load check too)
        total: np.ndarray = np.add.reduce(gathered, axis=0)
        total /= self._n_trees
        return total

    def predict_proba_walk(self, rows: FloatArray) -> np.ndarray:
        x = np.ascontiguousarray(rows, dtype=np.float32)
        left, right, feature, threshold = self._left, self._right, self._feature, self._threshold
        out = np.empty((x.shape[0], len(self._class_proba)))
        leaves = [0] * self._n_trees
        for r, xr in enumerate(x.tolist()):
            for t, node in enumerate(self._roots):
                f = feature[node]
                while f >= 0:
                    node = left[node] if xr[f] <= threshold[node] else right[node]
                    f = feature[node]
                leaves[t] = node
            for k, class_proba in enumerate(self._class_proba):
                total = 0.0
                for node in leaves:  # tree order, as scikit-learn adds them
                    total += class_proba[node]
                out[r, k] = total / self._n_trees
        return out


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

    def predict_proba(self, rows: FloatArray) -> np.ndarray:
        scores = rows @ self._coef_t + self._intercept
        if self._binary:
            positive = self._expit(scores.ravel())
            proba = np.empty((positive.shape[0], 2))
            proba[:, 0] = 1 - positive
            proba[:, 1] = positive
            return proba
        return np.asarray(self._softmax(scores, copy=False))


Compiled = CompiledForest | CompiledLogistic


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
            if not np.array_equal(compiled.predict_proba(probe), estimator.predict_proba(probe)):
                return None
    except Exception:
        return None
    return compiled


def _compile_forest(estimator: Any) -> CompiledForest | None:
    """A verified compiled forest for plain RandomForest/ExtraTrees classifiers, else None."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    if type(estimator) not in (RandomForestClassifier, ExtraTreesClassifier):
        return None
    try:
        probe = np.random.default_rng(0).normal(0.0, 3.0, size=(64, int(estimator.n_features_in_)))
        want = estimator.predict_proba(probe)
        for normalize in (False, True):
            compiled = CompiledForest(estimator, normalize=normalize)
            # both paths on every probe row, and the leaves path at several batch sizes
            # (numpy picks its loops by shape)
            if np.array_equal(compiled.predict_proba_walk(probe), want) and all(
                np.array_equal(compiled.predict_proba_leaves(probe[:n]), want[:n])
                for n in (CompiledForest.WALK_MAX_ROWS + 1, 17, 64)
            ):
                return compiled
    except Exception:
        return None
    return None
