"""Refuse a scikit-learn tree whose node arrays would make prediction read out of bounds.

``Tree.__setstate__`` (what skops calls to rebuild a tree) checks the arrays' dtypes and
shapes, not the indices in them, and the compiled ``apply`` follows ``left_child`` /
``right_child`` and reads ``X[:, feature]`` unchecked: a crafted skops file (an upload, or a
sandbox's export of a pickle) could make the shared worker read any memory, or loop
forever. So every tree in a model loaded in a shared worker is checked first: children in
range and after their parent (so every walk ends at a leaf), features within the rows'
width, leaves with no children.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ml_platform.serving.runtimes.base import ModelLoadError

_MAX_OBJECTS = 1_000_000  # a model graph larger than this is refused rather than walked


def check_trees(model: Any) -> int:
    """Check every ``sklearn.tree._tree.Tree`` reachable from ``model``; the number checked.

    Raises ModelLoadError naming the first bad node.
    """
    from sklearn.tree._tree import Tree

    checked = 0
    for tree in _reachable(model, Tree):
        _check(tree, checked)
        checked += 1
    return checked


def _reachable(root: Any, kind: type) -> list[Any]:
    """Instances of ``kind`` in ``root``'s graph: through containers, object arrays and the
    attributes of scikit-learn objects (estimators, pipelines, their fitted parts)."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = deque([root])  # breadth first: a forest's trees are numbered in its order
    while stack:
        obj = stack.popleft()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool):
            continue
        seen.add(id(obj))
        if len(seen) > _MAX_OBJECTS:
            raise ModelLoadError("the model holds too many objects to check")
        if isinstance(obj, kind):
            found.append(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif type(obj).__module__.startswith("sklearn.") and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())  # an estimator's fitted state (not a class)
    return found


def _check(tree: Any, number: int) -> None:
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    feature = np.asarray(tree.feature)
    n = int(tree.node_count)
    where = f"tree {number} of the model"
    if not (len(left) == len(right) == len(feature) == n) or n < 1:
        raise ModelLoadError(f"{where} has inconsistent node arrays")
    index = np.arange(n)
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        bad = int(np.flatnonzero(leaf != (right == -1))[0])
        raise ModelLoadError(f"{where}: node {bad} has one child")
    split = ~leaf
    for side, children in (("left", left), ("right", right)):
        wrong = split & ((children <= index) | (children >= n))
        if wrong.any():
            bad = int(np.flatnonzero(wrong)[0])
            raise ModelLoadError(
                f"{where}: node {bad}'s {side} child {int(children[bad])} is not a later "
                f"node of its {n}"
            )
    features = int(tree.n_features)
    wrong = split & ((feature < 0) | (feature >= features))
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        raise ModelLoadError(
            f"{where}: node {bad} splits on feature {int(feature[bad])} of {features}"
        )
