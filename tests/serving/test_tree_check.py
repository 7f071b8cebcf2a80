"""A skops model whose tree node arrays point outside the tree is refused before any
prediction can follow them (scikit-learn's own loader checks dtypes and shapes only)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor
from sklearn.tree._tree import Tree

from ml_platform.serving.runtimes.base import ModelLoadError
from ml_platform.serving.runtimes.scikit_learn import load_skops
from ml_platform.serving.runtimes.tree_check import check_trees
from tests.serving.models_fixture import dataset

X, Y = dataset()
FOREST = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, Y)


@pytest.mark.parametrize(
    ("model", "trees"),
    [
        (FOREST, 4),
        (GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, Y), 3),
        (
            Pipeline([("s", StandardScaler()), ("t", DecisionTreeRegressor(max_depth=3))]).fit(
                X, Y
            ),
            1,
        ),
        (HistGradientBoostingClassifier(max_iter=3, max_depth=3).fit(X, Y), 3),
        (LogisticRegression().fit(X, Y), 0),
    ],
)
def test_every_tree_of_a_fitted_model_is_found_and_accepted(model: Any, trees: int) -> None:
    data = sio.dumps(model)
    assert check_trees(model) == trees
    assert check_trees(sio.loads(data, trusted=sio.get_untrusted_types(data=data))) == trees
    load_skops(data)  # the shared worker's loader takes it


def _with_nodes(tree: Any, edit: Any) -> Tree:
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    edit(nodes)
    crafted = Tree(tree.n_features, tree.n_classes, tree.n_outputs)
    crafted.__setstate__({**state, "nodes": nodes})
    return crafted


@settings(max_examples=60, deadline=None)
@given(
    which=st.integers(0, len(FOREST.estimators_) - 1),
    field=st.sampled_from(["left_child", "right_child", "feature"]),
    data=st.data(),
)
def test_a_tree_pointing_outside_itself_is_refused(
    which: int, field: str, data: st.DataObject
) -> None:
    tree = FOREST.estimators_[which].tree_
    n = tree.node_count
    split = data.draw(st.sampled_from(np.flatnonzero(tree.children_left != -1).tolist()))
    if field == "feature":  # outside the rows' width
        value = data.draw(
            st.one_of(st.integers(-(2**40), -1), st.integers(X.shape[1], 2**40)), label="value"
        )
    else:  # -1 (a split with one child), itself or an earlier node, or past the last node
        value = data.draw(
            st.one_of(st.integers(-(2**40), split), st.integers(n, 2**40)), label="value"
        )
    model = copy.deepcopy(FOREST)

    def edit(nodes: np.ndarray) -> None:
        nodes[field][split] = value

    model.estimators_[which].tree_ = _with_nodes(tree, edit)
    with pytest.raises(ModelLoadError, match=f"tree {which} of the model"):
        load_skops(sio.dumps(model))


def test_a_leaf_with_one_child_is_refused() -> None:
    model = copy.deepcopy(FOREST)
    tree = model.estimators_[0].tree_
    leaf = int(np.flatnonzero(tree.children_left == -1)[0])

    def edit(nodes: np.ndarray) -> None:
        nodes["left_child"][leaf] = tree.node_count - 1

    model.estimators_[0].tree_ = _with_nodes(model.estimators_[0].tree_, edit)
    with pytest.raises(ModelLoadError, match=f"node {leaf} has one child"):
        load_skops(sio.dumps(model))


BOOSTED = HistGradientBoostingClassifier(max_iter=3, max_depth=3, random_state=0).fit(X, Y)


@settings(max_examples=30, deadline=None)
@given(
    which=st.integers(0, len(BOOSTED._predictors) - 1),
    field=st.sampled_from(["left", "right", "feature_idx"]),
    data=st.data(),
)
def test_a_boosting_tree_pointing_outside_itself_is_refused(
    which: int, field: str, data: st.DataObject
) -> None:
    model = copy.deepcopy(BOOSTED)
    nodes = model._predictors[which][0].nodes
    split = data.draw(st.sampled_from(np.flatnonzero(nodes["is_leaf"] == 0).tolist()))
    if field == "feature_idx":
        value = data.draw(st.integers(X.shape[1], 2**31 - 1))
    else:  # itself, an earlier node, or past the last one
        value = data.draw(st.one_of(st.integers(0, split), st.integers(len(nodes), 2**31 - 1)))
    nodes[field][split] = value
    with pytest.raises(ModelLoadError, match=f"tree {which} of the model: node {split}"):
        load_skops(sio.dumps(model))


def test_a_categorical_split_outside_its_category_sets_is_refused() -> None:
    rows = np.column_stack([np.arange(len(X)) % 5, X[:, 1:]])  # feature 0: categories 0-4
    model = HistGradientBoostingClassifier(
        max_iter=2, max_depth=2, categorical_features=[0], random_state=0
    ).fit(rows, rows[:, 0] % 2 == 0)
    assert check_trees(model) == 2
    predictor = model._predictors[0][0]
    split = int(np.flatnonzero(predictor.nodes["is_categorical"] != 0)[0])
    predictor.nodes["bitset_idx"][split] = len(predictor.raw_left_cat_bitsets)
    with pytest.raises(ModelLoadError, match=f"tree 0 of the model: node {split}'s category set"):
        check_trees(model)
