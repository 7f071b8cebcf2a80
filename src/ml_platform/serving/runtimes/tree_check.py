"""Refuse a scikit-learn tree whose node arrays would make prediction read out of bounds.

``Tree.__setstate__`` (what skops calls to rebuild a tree) checks the arrays' dtypes and
shapes, not the indices in them, and the compiled walks (``Tree.apply``, the histogram
gradient-boosting ``TreePredictor``) follow child indices and read ``X[:, feature]``
unchecked: a crafted skops file (an upload, or a sandbox's export of a pickle) could make the
shared worker read any memory, or loop forever. So every tree in a model loaded in a shared
worker is checked first: children in range and after their parent (so every walk ends at a
leaf), split features within the rows' width, categorical splits within their bitsets.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from ml_platform.serving.runtimes.base import ModelLoadError

_MAX_OBJECTS = 1_000_000  # a model graph larger than this is refused rather than walked

IntArray = npt.NDArray[np.int64]


def check_trees(model: Any) -> int:
    """Check every tree reachable from ``model``: ``sklearn.tree._tree.Tree`` (decision
    trees, forests, gradient boosting) and histogram gradient boosting's ``TreePredictor``;
    the number checked. Raises ModelLoadError naming the first bad tree and node."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    checked = 0
    for tree, width in _reachable(model, (Tree, TreePredictor)):
        where = f"tree {checked} of the model"
        if isinstance(tree, Tree):
            _check_tree(tree, where)
        else:
            _check_predictor(tree, width, where)
        checked += 1
    return checked


def _reachable(root: Any, kinds: tuple[type, ...]) -> list[tuple[Any, int | None]]:
    """Instances of ``kinds`` in ``root``'s graph, each with the row width of the nearest
    estimator holding it (``n_features_in_``), through containers, object arrays and the
    attributes of scikit-learn objects (estimators, pipelines, their fitted parts)."""
    found: list[tuple[Any, int | None]] = []
    seen: set[int] = set()
    # breadth first: a forest's trees are numbered in its order
    queue: deque[tuple[Any, int | None]] = deque([(root, None)])
    while queue:
        obj, width = queue.popleft()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool):
            continue
        seen.add(id(obj))
        if len(seen) > _MAX_OBJECTS:
            raise ModelLoadError("the model holds too many objects to check")
        if isinstance(obj, kinds):
            found.append((obj, width))
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                queue.extend((item, width) for item in obj.ravel().tolist())
        elif isinstance(obj, dict):
            queue.extend((item, width) for item in obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            queue.extend((item, width) for item in obj)
        elif type(obj).__module__.startswith("sklearn.") and hasattr(obj, "__dict__"):
            state = vars(obj)  # an estimator's fitted state (not a class)
            own = state.get("n_features_in_")
            inner = int(own) if isinstance(own, int | np.integer) else width
            queue.extend((item, inner) for item in state.values())
    return found


def _check_children(
    left: IntArray, right: IntArray, split: npt.NDArray[np.bool_], where: str
) -> None:
    n = len(left)
    index = np.arange(n)
    for side, children in (("left", left), ("right", right)):
        wrong = split & ((children <= index) | (children >= n))
        if wrong.any():
            bad = int(np.flatnonzero(wrong)[0])
            raise ModelLoadError(
                f"{where}: node {bad}'s {side} child {int(children[bad])} is not a later "
                f"node of its {n}"
            )


def _check_features(
    feature: IntArray, split: npt.NDArray[np.bool_], width: int, where: str
) -> None:
    wrong = split & ((feature < 0) | (feature >= width))
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        what = f"feature {int(feature[bad])} of {width}"
        raise ModelLoadError(f"{where}: node {bad} splits on {what}")


def _check_tree(tree: Any, where: str) -> None:
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    n = int(tree.node_count)
    if not (len(left) == len(right) == len(feature) == n) or n < 1:
        raise ModelLoadError(f"{where} has inconsistent node arrays")
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        bad = int(np.flatnonzero(leaf != (right == -1))[0])
        raise ModelLoadError(f"{where}: node {bad} has one child")
    _check_children(left, right, ~leaf, where)
    _check_features(feature, ~leaf, int(tree.n_features), where)


def _check_predictor(predictor: Any, width: int | None, where: str) -> None:
    nodes = np.asarray(predictor.nodes)
    names = nodes.dtype.names or ()
    if len(nodes) < 1 or not {"left", "right", "feature_idx", "is_leaf"} <= set(names):
        raise ModelLoadError(f"{where} has inconsistent node arrays")
    if width is None:
        raise ModelLoadError(f"{where} is a boosting tree outside its estimator")
    split = nodes["is_leaf"] == 0
    _check_children(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), split, where)
    _check_features(nodes["feature_idx"].astype(np.int64), split, width, where)
    if "is_categorical" in names and "bitset_idx" in names:
        categorical = split & (nodes["is_categorical"] != 0)
        bitsets = len(np.asarray(predictor.raw_left_cat_bitsets))
        index = nodes["bitset_idx"].astype(np.int64)
        wrong = categorical & ((index < 0) | (index >= bitsets))
        if wrong.any():
            bad = int(np.flatnonzero(wrong)[0])
            raise ModelLoadError(
                f"{where}: node {bad}'s category set {int(index[bad])} is not one of {bitsets}"
            )
