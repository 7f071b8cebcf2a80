"""Every tree of a fitted scikit-learn forest in flat arrays, walked by one numba loop.

:func:`pack` lays the trees of a forest end to end: per node a feature index, a threshold,
two child indices, and a row of leaf values (class probabilities or the regression value).
Leaves point to themselves with an infinite threshold, so every tree is walked for exactly
its depth without a data-dependent branch. :func:`accumulate` then walks tree after tree,
32 rows in lock-step (their independent chains of loads overlap in the CPU), adds each
leaf's row into the output in tree order and divides by the number of trees at the end:
scikit-learn's own arithmetic (zeros, ``+=`` per tree in order, one ``/=``), so the sums
are equal to the last bit.

Thresholds are stored as float32: scikit-learn compares a float32 feature ``x`` with a
float64 threshold ``t``, and for every float32 ``x``, ``x <= t`` holds exactly when
``x <= t32``, with ``t32`` the largest float32 not above ``t``. The indices are unsigned
32-bit (signed indices cost numba a wraparound check per load: half the time).

The kernel reads without bounds checks: callers give it rows of exactly the forest's
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

BLOCK_ROWS = 32
"""Rows walked in lock-step through one tree. 1,000 rows, 50 trees of depth 8: 16, 32 and 64
within 3% of each other; one row at a time about 4 times slower, signed indices 2 times."""

_Kernel = Callable[..., None]
_kernel: _Kernel | None = None
_unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class PackedForest:
    """The trees of one forest, end to end (node ``i`` of tree ``t`` is ``roots[t] + i``)."""

    roots: npt.NDArray[np.uint32]  # (trees,)
    depths: npt.NDArray[np.intp]  # (trees,) steps from the root to the deepest leaf
    feature: npt.NDArray[np.uint32]  # (nodes,) 0 at leaves
    threshold: npt.NDArray[np.float32]  # (nodes,) +inf at leaves
    children: npt.NDArray[np.uint32]  # (2 * nodes,) left, right; a leaf's are itself
    values: npt.NDArray[np.float64]  # (nodes, outputs) C-contiguous
    n_features: int

    def predict(self, rows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """The forest's averaged leaf values for finite ``rows`` of ``n_features``.

        ValueError, as scikit-learn, when a value overflows float32.
        """
        kernel = _kernel if _kernel is not None else _compiled()
        try:
            with np.errstate(over="raise"):
                x = np.ascontiguousarray(rows, dtype=np.float32)
        except FloatingPointError:
            raise ValueError("Input X contains a value too large for dtype('float32').") from None
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"rows of shape {x.shape} for a forest of {self.n_features} features")
        out = np.zeros((x.shape[0], self.values.shape[1]))
        kernel(
            x, self.roots, self.depths, self.feature, self.threshold, self.children,
            self.values, out,
        )  # fmt: skip
        return out


def pack(trees: Sequence[Any], n_features: int, *, normalize: bool) -> PackedForest:
    """Pack scikit-learn ``Tree`` objects of one output (``estimator.tree_``).

    ``normalize`` divides each leaf's values by their sum: scikit-learn < 1.4 stored class
    counts in ``value`` and normalised at every prediction.
    """
    if any(t.n_outputs != 1 for t in trees):
        raise ValueError("multi-output forests are not packed")
    counts = [int(t.node_count) for t in trees]
    roots = np.cumsum([0, *counts[:-1]])
    if roots[-1] + counts[-1] >= 2**31:
        raise ValueError("forest too large for 32-bit node indices")
    feature, threshold, children, values = [], [], [], []
    for t, root in zip(trees, roots, strict=True):
        leaf = t.children_left == -1
        here = np.arange(t.node_count) + root
        left = np.where(leaf, here, t.children_left + root)
        right = np.where(leaf, here, t.children_right + root)
        children.append(np.stack([left, right], axis=1).ravel())
        feature.append(np.where(leaf, 0, t.feature))
        threshold.append(np.where(leaf, np.inf, t.threshold))
        value = np.asarray(t.value[:, 0, :], dtype=np.float64)
        if normalize:
            norm = value.sum(axis=1, keepdims=True)
            norm[norm == 0] = 1.0
            value = value / norm
        values.append(value)
    return PackedForest(
        roots=roots.astype(np.uint32),
        depths=np.array([t.max_depth for t in trees], dtype=np.intp),
        feature=np.concatenate(feature).astype(np.uint32),
        threshold=float32_at_or_below(np.concatenate(threshold)),
        children=np.concatenate(children).astype(np.uint32),
        values=np.ascontiguousarray(np.concatenate(values)),
        n_features=n_features,
    )


def float32_at_or_below(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The largest float32 not above each ``t`` (so ``x <= t`` iff ``x <= result``)."""
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf (+inf stepped down)
        nearest = t.astype(np.float32)
        below = np.nextafter(nearest, np.float32(-np.inf))
    return np.where(nearest.astype(np.float64) > t, below, nearest)


def available() -> bool:
    """Whether the kernel compiles (or loads from numba's cache) in this process."""
    try:
        _compiled()
    except Exception:
        return False
    return True


def _compiled() -> _Kernel:
    """The kernel, compiled for its one signature on first use (about 1 s, or the cache).

    Cached first; should that fail (no writable cache directory, or one that went away, as
    in a sandbox's chroot: numba raises on saving), compiled again in memory only.
    """
    global _kernel, _unavailable
    if _kernel is not None:
        return _kernel
    if _unavailable is not None:
        raise RuntimeError(_unavailable)
    failures = []
    for cache in (True, False):
        try:
            kernel = _jit(cache)
            leaf = _single_leaf()
            kernel(
                np.zeros((1, 1), dtype=np.float32), leaf.roots, leaf.depths, leaf.feature,
                leaf.threshold, leaf.children, leaf.values, np.zeros((1, 1)),
            )  # fmt: skip
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if failures:
            logger.info("forest kernel compiled without numba's cache (%s)", failures[0])
        _kernel = kernel
        return kernel
    _unavailable = "the numba forest kernel is unavailable: " + "; ".join(failures)
    logger.warning("%s; forests are predicted by scikit-learn", _unavailable)
    raise RuntimeError(_unavailable)


def _single_leaf() -> PackedForest:
    """A forest of one tree that is one leaf of value 1 (compiles the kernel's signature)."""
    return PackedForest(
        roots=np.zeros(1, dtype=np.uint32),
        depths=np.zeros(1, dtype=np.intp),
        feature=np.zeros(1, dtype=np.uint32),
        threshold=np.full(1, np.inf, dtype=np.float32),
        children=np.zeros(2, dtype=np.uint32),
        values=np.ones((1, 1)),
        n_features=1,
    )


def _jit(cache: bool) -> _Kernel:
    from numba import njit

    return njit(cache=cache, nogil=True)(_accumulate)


def _accumulate(
    x: npt.NDArray[np.float32],
    roots: npt.NDArray[np.uint32],
    depths: npt.NDArray[np.intp],
    feature: npt.NDArray[np.uint32],
    threshold: npt.NDArray[np.float32],
    children: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - runs compiled by numba
    """Add every tree's leaf values for every row into ``out`` (zeros), then average."""
    n_rows = x.shape[0]
    n_out = values.shape[1]
    nodes = np.empty(BLOCK_ROWS, dtype=np.uint32)
    two = np.uint32(2)
    for t in range(roots.shape[0]):
        root = roots[t]
        for start in range(0, n_rows, BLOCK_ROWS):
            block = min(BLOCK_ROWS, n_rows - start)
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
