"""Runtimes against the libraries called directly, including the compiled forest path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_platform.serving.runtimes.forest_kernel import BLOCK_ROWS, PackedForest
from ml_platform.serving.runtimes.scikit_learn import (
    CompiledLogistic,
    SklearnRuntime,
    _compile_forest,
)


@pytest.mark.parametrize("cls", [RandomForestClassifier, ExtraTreesClassifier])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_compiled_forest_reproduces_predict_proba_exactly(cls: type, n_classes: int) -> None:
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=n_classes, random_state=1
    )
    forest = cls(n_estimators=15, max_depth=6, random_state=0).fit(X, y)
    compiled = _compile_forest(forest)
    assert isinstance(compiled, PackedForest)
    rows = np.vstack([X[:100], np.random.default_rng(3).normal(0, 5, size=(50, 8))])
    want = forest.predict_proba(rows)
    assert np.array_equal(compiled.predict(rows), want)
    # the kernel walks BLOCK_ROWS rows in lock-step: every batch size around a block agrees
    for n in (1, 2, 4, 5, 17, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1):
        assert np.array_equal(compiled.predict(rows[:n]), want[:n])
    runtime = SklearnRuntime(forest)
    out = runtime.predict(rows)
    assert np.array_equal(out.values, forest.predict(rows).astype(np.float64))
    big = np.tile(rows, (3, 1))
    big_proba = runtime.predict(big).probabilities
    assert big_proba is not None and np.array_equal(big_proba, forest.predict_proba(big))
    # rows with NaN go through scikit-learn itself (its missing-value routing)
    with_nan = rows[:5].copy()
    with_nan[2, 1] = np.nan
    nan_proba = runtime.predict(with_nan).probabilities
    assert nan_proba is not None and np.array_equal(nan_proba, forest.predict_proba(with_nan))


def test_compilation_can_be_switched_off() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    assert SklearnRuntime(forest, compile_forests=False)._compiled is None
    assert SklearnRuntime(forest)._compiled is not None


def test_compiled_forest_with_exact_thresholds_and_extreme_values() -> None:
    """Rows exactly on a threshold and at the ends of float32's range go the way
    scikit-learn sends them."""
    X, y = make_classification(n_samples=300, n_features=5, random_state=4)
    forest = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(X, y)
    compiled = _compile_forest(forest)
    assert isinstance(compiled, PackedForest)
    tree = forest.estimators_[0].tree_
    split = np.flatnonzero(tree.children_left != -1)
    rows = np.zeros((len(split), 5))
    rows[np.arange(len(split)), tree.feature[split]] = tree.threshold[split]
    rows = np.vstack([rows, np.full((2, 5), 3.4e38), np.full((2, 5), -3.4e38)])
    want = forest.predict_proba(rows.astype(np.float32))
    assert np.array_equal(compiled.predict(rows), want)
    assert np.array_equal(compiled.predict(rows[:1]), want[:1])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_compiled_logistic_reproduces_predict_proba_exactly(n_classes: int) -> None:
    X, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_classes=n_classes, random_state=2
    )
    model = LogisticRegression(max_iter=500).fit(X, y)
    runtime = SklearnRuntime(model)
    assert isinstance(runtime._compiled, CompiledLogistic)
    rows = np.vstack([X[:100], np.random.default_rng(4).normal(0, 50, size=(50, 6))])
    for n in (1, 3, len(rows)):
        out = runtime.predict(rows[:n])
        assert out.probabilities is not None
        assert np.array_equal(out.probabilities, model.predict_proba(rows[:n]))
        assert np.array_equal(out.values, model.predict(rows[:n]).astype(np.float64))
    # NaN goes through scikit-learn itself, which refuses it (the compiled path would not)
    with_nan = rows[:2].copy()
    with_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        runtime.predict(with_nan)
    # a subclass may change the arithmetic: only the exact class is compiled
    sub = type("Sub", (LogisticRegression,), {})(max_iter=500).fit(X, y)
    assert SklearnRuntime(sub)._compiled is None
