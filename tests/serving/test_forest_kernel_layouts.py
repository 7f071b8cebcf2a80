"""Both forest layouts (complete trees, linked trees) against scikit-learn, on generated
forests and rows: unequal depths, single-node trees, many classes, rows at float32's edges
and on the thresholds, every count of rows and trees around the kernels' blocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier

from ml_platform.serving.runtimes import forest_kernel
from ml_platform.serving.runtimes.forest_kernel import (
    COMPLETE_MAX_DEPTH,
    CompleteTrees,
    LinkedTrees,
    float32_at_or_below,
)
from ml_platform.serving.runtimes.scikit_learn import _compile_forest

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).smallest_subnormal)


def _trees(forest: Any) -> list[Any]:
    return [e.tree_ for e in forest.estimators_]


def _probe_rows(forest: Any, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Random rows, and rows with one feature on a threshold (as float32 sees it), a float32
    step above it, or at float32's extremes (finite: infinity goes to scikit-learn)."""
    rows = [rng.normal(0.0, 3.0, size=(40, n_features))]
    specials = [F32_MAX, -F32_MAX, F32_TINY, -F32_TINY, 0.0, -0.0]
    for tree in _trees(forest):
        split = np.flatnonzero(tree.children_left != -1)
        on = float32_at_or_below(tree.threshold[split])
        above = np.nextafter(on, np.float32(np.inf))
        values = np.concatenate([on, above]).astype(np.float64)
        features = np.concatenate([tree.feature[split], tree.feature[split]])
        block = rng.normal(0.0, 3.0, size=(len(values), n_features))
        block[np.arange(len(values)), features] = values
        rows.append(block)
    block = rng.normal(0.0, 3.0, size=(len(specials) * n_features, n_features))
    for i, (value, feature) in enumerate((v, f) for v in specials for f in range(n_features)):
        block[i, feature] = value
    rows.append(block)
    return np.vstack(rows)


def _assert_layouts_equal(forest: Any, rows: np.ndarray, want: np.ndarray) -> None:
    n_features = rows.shape[1]
    for complete in (True, False):
        packed = forest_kernel.pack(_trees(forest), n_features, normalize=False, complete=complete)
        assert isinstance(packed.trees, CompleteTrees if complete else LinkedTrees)
        for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, len(rows)):
            got = packed.predict(rows[:n])
            assert got.shape == want[:n].shape
            assert np.array_equal(got, want[:n]), (complete, n)
        for chunk in (1, 5, 7):  # every row through the path of the rows after full blocks
            parts = [packed.predict(rows[i : i + chunk]) for i in range(0, len(rows), chunk)]
            assert np.array_equal(np.vstack(parts), want), (complete, chunk)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_features=st.integers(1, 6),
    n_classes=st.integers(2, 5),
    n_trees=st.integers(1, 11),
    max_depth=st.one_of(st.none(), st.integers(1, 7)),
    single_node_trees=st.sets(st.integers(0, 10), max_size=3),
)
def test_generated_classifiers_equal_predict_proba_in_both_layouts(
    seed: int,
    n_features: int,
    n_classes: int,
    n_trees: int,
    max_depth: int | None,
    single_node_trees: set[int],
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 2.0, size=(120, n_features))
    y = rng.integers(0, n_classes, size=120)
    y[:n_classes] = np.arange(n_classes)  # every class present
    forest = RandomForestClassifier(
        n_estimators=n_trees, max_depth=max_depth, random_state=seed % 1000
    ).fit(X, y)
    for i in single_node_trees & set(range(n_trees)):  # a root that is a leaf
        forest.estimators_[i] = DecisionTreeClassifier(min_samples_split=10**6).fit(X, y)
    rows = _probe_rows(forest, n_features, rng)
    with np.errstate(over="ignore", invalid="ignore"):  # scikit-learn's sums of +-max
        want = forest.predict_proba(rows)
    _assert_layouts_equal(forest, rows, want)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_features=st.integers(1, 5),
    n_trees=st.integers(1, 9),
    max_depth=st.one_of(st.none(), st.integers(1, 6)),
)
def test_generated_regressors_equal_predict_in_both_layouts(
    seed: int, n_features: int, n_trees: int, max_depth: int | None
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 2.0, size=(100, n_features))
    y = rng.normal(0.0, 10.0, size=100) * np.exp(rng.normal(0.0, 3.0))
    forest = RandomForestRegressor(
        n_estimators=n_trees, max_depth=max_depth, random_state=seed % 1000
    ).fit(X, y)
    rows = _probe_rows(forest, n_features, rng)
    with np.errstate(over="ignore", invalid="ignore"):  # scikit-learn's sums of +-max
        want = forest.predict(rows).reshape(-1, 1)
    _assert_layouts_equal(forest, rows, want)


def test_a_forest_of_single_leaves_is_its_class_frequencies() -> None:
    """Depth 0 everywhere: the complete layout has no inner nodes at all."""
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 3
    forest = RandomForestClassifier(n_estimators=6, min_samples_split=10**6, random_state=0)
    forest.fit(X, y)
    assert {t.max_depth for t in _trees(forest)} == {0}
    packed = _compile_forest(forest)
    assert packed is not None and isinstance(packed.trees, CompleteTrees)
    assert packed.trees.depth == 0
    _assert_layouts_equal(forest, X, forest.predict_proba(X))


@pytest.mark.parametrize(("max_depth", "layout"), [(COMPLETE_MAX_DEPTH, CompleteTrees),
                                                   (None, LinkedTrees)])  # fmt: skip
def test_shallow_forests_are_complete_trees_deep_ones_linked(
    max_depth: int | None, layout: type
) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 8))
    y = (X[:, 0] + rng.normal(size=3000) > 0).astype(int)  # noisy: trees grow deep
    forest = RandomForestClassifier(n_estimators=4, max_depth=max_depth, random_state=0)
    forest.fit(X, y)
    depth = max(t.max_depth for t in _trees(forest))
    assert (depth <= COMPLETE_MAX_DEPTH) == (layout is CompleteTrees)
    packed = _compile_forest(forest)
    assert packed is not None and isinstance(packed.trees, layout)
    rows = rng.normal(size=(100, 8))
    assert np.array_equal(packed.predict(rows), forest.predict_proba(rows))


def test_complete_trees_send_padded_nodes_left_to_the_leaf_s_values() -> None:
    """A tree of depth 1 beside a deeper one: the short one is padded to the forest's
    depth, and every bottom node under each of its two leaves holds that leaf's values."""
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [7.0]])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    short = DecisionTreeClassifier(max_depth=1).fit(X, y)
    deep = DecisionTreeClassifier().fit(X, np.array([0, 1, 0, 1, 0, 1, 0, 1]))
    packed = forest_kernel.pack([short.tree_, deep.tree_], 1, normalize=False)
    trees = packed.trees
    depth = deep.tree_.max_depth
    assert depth >= 3
    assert isinstance(trees, CompleteTrees) and trees.depth == depth
    inner, half = 2**depth - 1, 2 ** (depth - 1)
    assert np.all(np.isinf(trees.threshold[1:inner]))  # below the short tree's root
    short_leaves = trees.values[: 2 * half]
    assert np.array_equal(short_leaves[:half], np.tile([1.0, 0.0], (half, 1)))
    assert np.array_equal(short_leaves[half:], np.tile([0.0, 1.0], (half, 1)))
    rows = np.linspace(-1.0, 8.0, 37).reshape(-1, 1)
    want = (short.predict_proba(rows) + deep.predict_proba(rows)) / 2
    assert np.array_equal(packed.predict(rows), want)
