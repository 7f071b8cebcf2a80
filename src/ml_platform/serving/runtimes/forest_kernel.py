"""Every tree of a fitted scikit-learn forest in flat arrays, walked by numba loops.

:func:`pack` lays out a forest in one of two ways:

- **complete trees** (every tree at most :data:`COMPLETE_MAX_DEPTH` deep): each tree padded
  to a perfect binary tree of the forest's depth ``d`` (a leaf above the bottom becomes a
  node with an infinite threshold, so rows go left, and every bottom leaf below it carries
  its values). Node ``i``'s children are ``2i+1`` and ``2i+2``, so a step is one feature
  load, one threshold load and arithmetic (no child index to load): :func:`_walk_complete`
  walks one tree for 16 rows at once (16 independent chains of loads in flight), and the
  rows after the last full 16 walk 4 trees at once (a single row has no other parallelism).
- **linked trees** (deeper forests): per node a feature, a threshold and two child indices;
  leaves point to themselves with an infinite threshold, so every tree is walked for its
  depth without a data-dependent branch, 32 rows in lock-step (:func:`_walk_linked`).

Both add each leaf's values into the output in tree order and divide by the number of
trees at the end: scikit-learn's own arithmetic (zeros, ``+=`` per tree in order, one
``/=``), so the sums are equal to the last bit.

Thresholds are stored as float32: scikit-learn compares a float32 feature ``x`` with a
float64 threshold ``t``, and for every float32 ``x``, ``x <= t`` holds exactly when
``x <= t32``, with ``t32`` the largest float32 not above ``t``. Indices are unsigned
(signed indices cost numba a wraparound check per load: half the time).

The kernels read without bounds checks: callers give them rows of exactly the forest's
feature count, all finite (scikit-learn routes NaN by its own rules and refuses infinity:
:class:`~ml_platform.serving.runtimes.scikit_learn.SklearnRuntime` leaves those rows to
it). ``cache=True`` keeps the machine code in ``__pycache__`` (or numba's user-wide cache
when that is not writable); :func:`available` is False when numba is missing or cannot
compile here, and forests are then predicted by scikit-learn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

BLOCK_ROWS = 16
"""Rows walked at once through one complete tree (the rows after the last full block walk
4 trees at once). The bench forest (50 trees of depth 8), 1,000 rows: about 3 times faster
than the linked layout's 32-row lock-step, 1 row about 2.5 times. Blocks of 16 against 8:
1.27 times faster at 1,000 rows, 1.32 at 100, 1.21 at 16 (medians of 7 interleaved rounds
on one AMD EPYC core); 12 and 24 are slower than 16 (24 chains no longer fit in registers)."""

COMPLETE_MAX_DEPTH = 10
"""Deeper forests keep the linked layout: a complete tree of depth ``d`` has ``2**d``
leaves, each with a row of values, whatever the tree's own node count."""

_LINKED_BLOCK_ROWS = 32
"""Rows walked in lock-step through one linked tree. 1,000 rows, 50 trees of depth 8: 16,
32 and 64 within 3% of each other; one row at a time about 4 times slower."""

_Kernel = Callable[..., None]
_kernels: tuple[_Kernel, _Kernel] | None = None  # complete, linked
_unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class CompleteTrees:
    """Trees padded to perfect binary trees of one depth, end to end.

    Node ``i`` of tree ``t`` is ``t * (2**depth - 1) + i``, its leaf ``j`` (bottom nodes
    left to right) ``t * 2**depth + j``.
    """

    depth: int
    feature: npt.NDArray[np.uint32]  # (trees * (2**depth - 1),) 0 where padded
    threshold: npt.NDArray[np.float32]  # (trees * (2**depth - 1),) +inf where padded
    values: npt.NDArray[np.float64]  # (trees * 2**depth, outputs) C-contiguous

    def accumulate(self, kernels: tuple[_Kernel, _Kernel], x: Any, out: Any) -> None:
        kernels[0](x, self.depth, self.feature, self.threshold, self.values, out)


@dataclass(frozen=True, slots=True)
class LinkedTrees:
    """The trees end to end (node ``i`` of tree ``t`` is ``roots[t] + i``)."""

    roots: npt.NDArray[np.uint32]  # (trees,)
    depths: npt.NDArray[np.intp]  # (trees,) steps from the root to the deepest leaf
    feature: npt.NDArray[np.uint32]  # (nodes,) 0 at leaves
    threshold: npt.NDArray[np.float32]  # (nodes,) +inf at leaves
    children: npt.NDArray[np.uint32]  # (2 * nodes,) left, right; a leaf's are itself
    values: npt.NDArray[np.float64]  # (nodes, outputs) C-contiguous

    def accumulate(self, kernels: tuple[_Kernel, _Kernel], x: Any, out: Any) -> None:
        kernels[1](
            x, self.roots, self.depths, self.feature, self.threshold, self.children,
            self.values, out,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PackedForest:
    """The trees of one forest in one of the two layouts, for rows of ``n_features``."""

    trees: CompleteTrees | LinkedTrees
    n_features: int
    n_outputs: int

    def predict(self, rows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """The forest's averaged leaf values for finite ``rows`` of ``n_features``.

        ValueError, as scikit-learn, when a value overflows float32.
        """
        kernels = _kernels if _kernels is not None else _compiled()
        try:
            with np.errstate(over="raise"):
                x = np.ascontiguousarray(rows, dtype=np.float32)
        except FloatingPointError:
            raise ValueError("Input X contains a value too large for dtype('float32').") from None
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"rows of shape {x.shape} for a forest of {self.n_features} features")
        out = np.zeros((x.shape[0], self.n_outputs))
        self.trees.accumulate(kernels, x, out)
        return out


def pack(
    trees: Sequence[Any], n_features: int, *, normalize: bool, complete: bool | None = None
) -> PackedForest:
    """Pack scikit-learn ``Tree`` objects of one output (``estimator.tree_``).

    ``normalize`` divides each leaf's values by their sum: scikit-learn < 1.4 stored class
    counts in ``value`` and normalised at every prediction. ``complete`` picks the layout
    (by default complete trees when none is deeper than :data:`COMPLETE_MAX_DEPTH`).
    """
    if any(t.n_outputs != 1 for t in trees):
        raise ValueError("multi-output forests are not packed")
    depth = max(int(t.max_depth) for t in trees)
    if complete is None:
        complete = depth <= COMPLETE_MAX_DEPTH
    values = [_leaf_values(t, normalize) for t in trees]
    packed = _pack_complete(trees, values, depth) if complete else _pack_linked(trees, values)
    return PackedForest(packed, n_features=n_features, n_outputs=values[0].shape[1])


def _leaf_values(tree: Any, normalize: bool) -> npt.NDArray[np.float64]:
    value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
    if normalize:
        norm = value.sum(axis=1, keepdims=True)
        norm[norm == 0] = 1.0
        value = value / norm
    return value


def _pack_complete(
    trees: Sequence[Any], values: Sequence[npt.NDArray[np.float64]], depth: int
) -> CompleteTrees:
    n_inner, n_leaves = 2**depth - 1, 2**depth
    feature = np.zeros((len(trees), n_inner), dtype=np.uint32)
    threshold = np.full((len(trees), n_inner), np.inf)
    leaf_values = np.zeros((len(trees), n_leaves, values[0].shape[1]))
    for t, (tree, value) in enumerate(zip(trees, values, strict=True)):
        left, right = tree.children_left, tree.children_right
        stack = [(0, 0, 0)]  # the tree's node, its place in the complete tree, its depth
        while stack:
            node, place, level = stack.pop()
            if left[node] == -1:  # every bottom node below ``place`` is this leaf
                first, span = place, 1
                for _ in range(depth - level):
                    first, span = 2 * first + 1, 2 * span
                leaf_values[t, first - n_inner : first - n_inner + span] = value[node]
                continue
            feature[t, place] = tree.feature[node]
            threshold[t, place] = tree.threshold[node]
            stack.append((left[node], 2 * place + 1, level + 1))
            stack.append((right[node], 2 * place + 2, level + 1))
    return CompleteTrees(
        depth=depth,
        feature=feature.ravel(),
        threshold=float32_at_or_below(threshold.ravel()),
        values=np.ascontiguousarray(leaf_values.reshape(len(trees) * n_leaves, -1)),
    )


def _pack_linked(trees: Sequence[Any], values: Sequence[npt.NDArray[np.float64]]) -> LinkedTrees:
    counts = [int(t.node_count) for t in trees]
    roots = np.cumsum([0, *counts[:-1]])
    if roots[-1] + counts[-1] >= 2**31:
        raise ValueError("forest too large for 32-bit node indices")
    feature, threshold, children = [], [], []
    for t, root in zip(trees, roots, strict=True):
        leaf = t.children_left == -1
        here = np.arange(t.node_count) + root
        left = np.where(leaf, here, t.children_left + root)
        right = np.where(leaf, here, t.children_right + root)
        children.append(np.stack([left, right], axis=1).ravel())
        feature.append(np.where(leaf, 0, t.feature))
        threshold.append(np.where(leaf, np.inf, t.threshold))
    return LinkedTrees(
        roots=roots.astype(np.uint32),
        depths=np.array([t.max_depth for t in trees], dtype=np.intp),
        feature=np.concatenate(feature).astype(np.uint32),
        threshold=float32_at_or_below(np.concatenate(threshold)),
        children=np.concatenate(children).astype(np.uint32),
        values=np.ascontiguousarray(np.concatenate(values)),
    )


def float32_at_or_below(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The largest float32 not above each ``t`` (so ``x <= t`` iff ``x <= result``)."""
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf (+inf stepped down)
        nearest = t.astype(np.float32)
        below = np.nextafter(nearest, np.float32(-np.inf))
    return np.where(nearest.astype(np.float64) > t, below, nearest)


def available() -> bool:
    """Whether the kernels compile (or load from numba's cache) in this process."""
    try:
        _compiled()
    except Exception:
        return False
    return True


def _compiled() -> tuple[_Kernel, _Kernel]:
    """Both kernels, compiled for their one signature on first use (about 3 s, or the cache).

    Cached first; should that fail (no writable cache directory, or one that went away, as
    in a sandbox's chroot: numba raises on saving), compiled again in memory only.
    """
    global _kernels, _unavailable
    if _kernels is not None:
        return _kernels
    if _unavailable is not None:
        raise RuntimeError(_unavailable)
    failures = []
    for cache in (True, False):
        try:
            kernels = _jit(cache)
            for complete in (True, False):  # one leaf of value 1 compiles each signature
                leaf = _single_leaf(complete)
                row = np.zeros((1, 1), dtype=np.float32)
                leaf.trees.accumulate(kernels, row, np.zeros((1, 1)))
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if failures:
            logger.info("forest kernel compiled without numba's cache (%s)", failures[0])
        _kernels = kernels
        return kernels
    _unavailable = "the numba forest kernel is unavailable: " + "; ".join(failures)
    logger.warning("%s; forests are predicted by scikit-learn", _unavailable)
    raise RuntimeError(_unavailable)


def _single_leaf(complete: bool) -> PackedForest:
    """A forest of one tree that is one leaf of value 1."""
    trees: CompleteTrees | LinkedTrees
    if complete:
        empty = np.zeros(0, dtype=np.uint32)
        trees = CompleteTrees(0, empty, empty.astype(np.float32), np.ones((1, 1)))
    else:
        trees = LinkedTrees(
            roots=np.zeros(1, dtype=np.uint32),
            depths=np.zeros(1, dtype=np.intp),
            feature=np.zeros(1, dtype=np.uint32),
            threshold=np.full(1, np.inf, dtype=np.float32),
            children=np.zeros(2, dtype=np.uint32),
            values=np.ones((1, 1)),
        )
    return PackedForest(trees, n_features=1, n_outputs=1)


def _jit(cache: bool) -> tuple[_Kernel, _Kernel]:
    from numba import njit

    jit = njit(cache=cache, nogil=True)
    return jit(_walk_complete), jit(_walk_linked)


def _walk_complete(
    x: npt.NDArray[np.float32],
    depth: int,
    feature: npt.NDArray[np.uint32],
    threshold: npt.NDArray[np.float32],
    values: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - runs compiled by numba
    """Add every complete tree's leaf values for every row into ``out`` (zeros), average.

    One step: ``i = 2i + 1 + (x[feature[i]] > threshold[i])``; after ``depth`` steps ``i``
    is bottom node ``i - inner``. The chains are written out (16 rows, or 4 trees, each in
    its own variable) so they stay in flight together; each tree's arrays are sliced once
    per tree and each row once per block, so a step indexes one view (no offset arithmetic).
    """
    n_rows, n_features = x.shape
    n_out = values.shape[1]
    n_trees = values.shape[0] >> depth
    one, two = np.uint64(1), np.uint64(2)
    zero = np.uint64(0)
    width = np.uint64(n_features)
    inner = np.uint64((1 << depth) - 1)
    leaves = inner + one
    xs = x.ravel()
    n_inner = (1 << depth) - 1  # the slices' bounds (int64: uint64 * int64 is a float)
    full = n_rows - n_rows % 16
    for t in range(n_trees):
        f = feature[t * n_inner : (t + 1) * n_inner]  # this tree's nodes
        th = threshold[t * n_inner : (t + 1) * n_inner]
        v = values[t * (n_inner + 1) : (t + 1) * (n_inner + 1)]  # bottom node i: leaf i - inner
        for s in range(0, full, 16):
            r0 = xs[s * n_features : (s + 1) * n_features]
            r1 = xs[(s + 1) * n_features : (s + 2) * n_features]
            r2 = xs[(s + 2) * n_features : (s + 3) * n_features]
            r3 = xs[(s + 3) * n_features : (s + 4) * n_features]
            r4 = xs[(s + 4) * n_features : (s + 5) * n_features]
            r5 = xs[(s + 5) * n_features : (s + 6) * n_features]
            r6 = xs[(s + 6) * n_features : (s + 7) * n_features]
            r7 = xs[(s + 7) * n_features : (s + 8) * n_features]
            r8 = xs[(s + 8) * n_features : (s + 9) * n_features]
            r9 = xs[(s + 9) * n_features : (s + 10) * n_features]
            r10 = xs[(s + 10) * n_features : (s + 11) * n_features]
            r11 = xs[(s + 11) * n_features : (s + 12) * n_features]
            r12 = xs[(s + 12) * n_features : (s + 13) * n_features]
            r13 = xs[(s + 13) * n_features : (s + 14) * n_features]
            r14 = xs[(s + 14) * n_features : (s + 15) * n_features]
            r15 = xs[(s + 15) * n_features : (s + 16) * n_features]
            i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = zero
            i8 = i9 = i10 = i11 = i12 = i13 = i14 = i15 = zero
            for _ in range(depth):
                i0 = two * i0 + one + np.uint64(r0[f[i0]] > th[i0])
                i1 = two * i1 + one + np.uint64(r1[f[i1]] > th[i1])
                i2 = two * i2 + one + np.uint64(r2[f[i2]] > th[i2])
                i3 = two * i3 + one + np.uint64(r3[f[i3]] > th[i3])
                i4 = two * i4 + one + np.uint64(r4[f[i4]] > th[i4])
                i5 = two * i5 + one + np.uint64(r5[f[i5]] > th[i5])
                i6 = two * i6 + one + np.uint64(r6[f[i6]] > th[i6])
                i7 = two * i7 + one + np.uint64(r7[f[i7]] > th[i7])
                i8 = two * i8 + one + np.uint64(r8[f[i8]] > th[i8])
                i9 = two * i9 + one + np.uint64(r9[f[i9]] > th[i9])
                i10 = two * i10 + one + np.uint64(r10[f[i10]] > th[i10])
                i11 = two * i11 + one + np.uint64(r11[f[i11]] > th[i11])
                i12 = two * i12 + one + np.uint64(r12[f[i12]] > th[i12])
                i13 = two * i13 + one + np.uint64(r13[f[i13]] > th[i13])
                i14 = two * i14 + one + np.uint64(r14[f[i14]] > th[i14])
                i15 = two * i15 + one + np.uint64(r15[f[i15]] > th[i15])
            for k in range(n_out):
                out[s, k] += v[i0 - inner, k]
                out[s + 1, k] += v[i1 - inner, k]
                out[s + 2, k] += v[i2 - inner, k]
                out[s + 3, k] += v[i3 - inner, k]
                out[s + 4, k] += v[i4 - inner, k]
                out[s + 5, k] += v[i5 - inner, k]
                out[s + 6, k] += v[i6 - inner, k]
                out[s + 7, k] += v[i7 - inner, k]
                out[s + 8, k] += v[i8 - inner, k]
                out[s + 9, k] += v[i9 - inner, k]
                out[s + 10, k] += v[i10 - inner, k]
                out[s + 11, k] += v[i11 - inner, k]
                out[s + 12, k] += v[i12 - inner, k]
                out[s + 13, k] += v[i13 - inner, k]
                out[s + 14, k] += v[i14 - inner, k]
                out[s + 15, k] += v[i15 - inner, k]
    four, all_trees = np.uint64(4), np.uint64(n_trees)
    for r in range(full, n_rows):
        o = np.uint64(r) * width
        u = np.uint64(0)
        while u + four <= all_trees:
            b0 = u * inner
            b1 = b0 + inner
            b2 = b1 + inner
            b3 = b2 + inner
            i0 = i1 = i2 = i3 = zero
            for _ in range(depth):
                n0, n1, n2, n3 = b0 + i0, b1 + i1, b2 + i2, b3 + i3
                i0 = two * i0 + one + np.uint64(xs[o + feature[n0]] > threshold[n0])
                i1 = two * i1 + one + np.uint64(xs[o + feature[n1]] > threshold[n1])
                i2 = two * i2 + one + np.uint64(xs[o + feature[n2]] > threshold[n2])
                i3 = two * i3 + one + np.uint64(xs[o + feature[n3]] > threshold[n3])
            bottom = u * leaves - inner
            for k in range(n_out):  # in tree order, as scikit-learn adds them
                total = out[r, k]
                total += values[bottom + i0, k]
                total += values[bottom + leaves + i1, k]
                total += values[bottom + two * leaves + i2, k]
                total += values[bottom + np.uint64(3) * leaves + i3, k]
                out[r, k] = total
            u += four
        while u < all_trees:
            b0 = u * inner
            i0 = zero
            for _ in range(depth):
                n0 = b0 + i0
                i0 = two * i0 + one + np.uint64(xs[o + feature[n0]] > threshold[n0])
            for k in range(n_out):
                out[r, k] += values[u * leaves - inner + i0, k]
            u += one
    for r in range(n_rows):
        for k in range(n_out):
            out[r, k] /= n_trees


def _walk_linked(
    x: npt.NDArray[np.float32],
    roots: npt.NDArray[np.uint32],
    depths: npt.NDArray[np.intp],
    feature: npt.NDArray[np.uint32],
    threshold: npt.NDArray[np.float32],
    children: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - runs compiled by numba
    """Add every linked tree's leaf values for every row into ``out`` (zeros), average."""
    n_rows = x.shape[0]
    n_out = values.shape[1]
    nodes = np.empty(_LINKED_BLOCK_ROWS, dtype=np.uint32)
    two = np.uint32(2)
    for t in range(roots.shape[0]):
        root = roots[t]
        for start in range(0, n_rows, _LINKED_BLOCK_ROWS):
            block = min(_LINKED_BLOCK_ROWS, n_rows - start)
            for j in range(block):
                nodes[j] = root
            for _ in range(depths[t]):
                for j in range(block):
                    node = nodes[j]
                    right = np.uint32(x[start + j, feature[node]] > threshold[node])
                    nodes[j] = children[two * node + right]
            for j in range(block):
                for k in range(n_out):
                    out[start + j, k] += values[nodes[j], k]
    n_trees = roots.shape[0]
    for r in range(n_rows):
        for k in range(n_out):
            out[r, k] /= n_trees
