"""The numba forest kernel against scikit-learn itself: equal to the last bit, or not used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from ml_platform.serving.runtimes import forest_kernel
from ml_platform.serving.runtimes.forest_kernel import (
    BLOCK_ROWS,
    PackedForest,
    float32_at_or_below,
)
from ml_platform.serving.runtimes.scikit_learn import SklearnRuntime, _compile_forest

SIZES = (1, 4, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 1000)


def _rows(n_features: int, n: int = 1000, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3.0, size=(n, n_features))


def _edge_rows(forest: Any, n_features: int) -> np.ndarray:
    """For every split of every tree: a row on its threshold (as float32 sees it) and one
    float32 step above, plus rows with a feature at float32's extremes or -0."""
    base = np.zeros(n_features, dtype=np.float32)
    rows = []
    for est in forest.estimators_:
        t = est.tree_
        for node in np.flatnonzero(t.children_left != -1):
            on = float32_at_or_below(np.array([t.threshold[node]]))[0]
            for value in (on, np.nextafter(on, np.float32(np.inf))):
                row = base.copy()
                row[t.feature[node]] = value
                rows.append(row)
    big = np.finfo(np.float32).max
    for feature in range(n_features):  # one extreme per row (a sum of them overflows)
        for value in (big, -big, -0.0):
            row = base.copy()
            row[feature] = value
            rows.append(row)
    return np.vstack(rows)


def _assert_packed_equals(
    forest: Any, rows: np.ndarray, sklearn_outputs: Callable[[np.ndarray], np.ndarray]
) -> None:
    """The packed forest equals scikit-learn at every batch size and on the edge rows."""
    packed = _compile_forest(forest)
    assert isinstance(packed, PackedForest)
    want = sklearn_outputs(rows)
    for n in SIZES:
        assert np.array_equal(packed.predict(rows[:n]), want[:n])
    edges = _edge_rows(forest, rows.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):  # scikit-learn's sum of +-max
        want_edges = sklearn_outputs(edges)
    assert np.array_equal(packed.predict(edges), want_edges)


@pytest.mark.parametrize("cls", [RandomForestClassifier, ExtraTreesClassifier])
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("max_depth", [3, 8, None])
def test_classifier_probabilities_equal_predict_proba(
    cls: type, n_classes: int, max_depth: int | None
) -> None:
    X, y = make_classification(
        n_samples=500, n_features=12, n_informative=6, n_classes=n_classes, random_state=2
    )
    forest = cls(n_estimators=25, max_depth=max_depth, random_state=0).fit(X, y)
    rows = _rows(12)
    want = forest.predict_proba(rows)
    _assert_packed_equals(forest, rows, lambda x: forest.predict_proba(x))
    runtime = SklearnRuntime(forest)
    out = runtime.predict(rows)
    assert out.probabilities is not None and np.array_equal(out.probabilities, want)
    assert np.array_equal(out.values, forest.predict(rows).astype(np.float64))


@pytest.mark.parametrize("cls", [RandomForestRegressor, ExtraTreesRegressor])
@pytest.mark.parametrize("max_depth", [4, None])
def test_regressor_values_equal_predict(cls: type, max_depth: int | None) -> None:
    X, y = make_regression(n_samples=400, n_features=7, noise=3.0, random_state=3)
    forest = cls(n_estimators=20, max_depth=max_depth, random_state=0).fit(X, y)
    rows = _rows(7)
    want = forest.predict(rows)
    _assert_packed_equals(forest, rows, lambda x: forest.predict(x).reshape(-1, 1))
    out = SklearnRuntime(forest).predict(rows)
    assert out.probabilities is None and np.array_equal(out.values, want)


def test_float32_at_or_below_keeps_every_comparison() -> None:
    rng = np.random.default_rng(0)
    t = np.concatenate(
        [rng.normal(0, 10, 2000), [0.0, -0.0, 1e39, -1e39, np.inf, 3.4028235e38, 1e-46]]
    )
    t32 = float32_at_or_below(t)
    assert t32.dtype == np.float32
    # float32 values around each threshold: its nearest float32 and the steps either side
    with np.errstate(over="ignore"):  # float32's max stepped up: +inf
        near = t.astype(np.float32)
        around = (near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, -np.inf))
    for x in around:
        x = x.astype(np.float32)
        assert np.array_equal(x.astype(np.float64) <= t, x <= t32)


def test_rows_with_nan_or_the_wrong_width_go_to_scikit_learn() -> None:
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    runtime = SklearnRuntime(forest)
    rows = _rows(5, 6)
    rows[3, 2] = np.nan
    out = runtime.predict(rows)
    assert out.probabilities is not None
    assert np.array_equal(out.probabilities, forest.predict_proba(rows))
    with pytest.raises(ValueError, match="features"):
        runtime.predict(_rows(4, 3))
    # infinity, given or by overflowing float32, is refused as scikit-learn refuses it
    rows[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        runtime.predict(rows)
    rows[3, 2] = 1e39
    with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
        runtime.predict(rows)
    with (  # the same message as scikit-learn's own
        np.errstate(over="ignore"),
        pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"),
    ):
        forest.predict_proba(rows)


def test_only_plain_single_output_forests_are_compiled() -> None:
    X, y = make_regression(n_samples=200, n_features=4, n_targets=2, random_state=0)
    multi = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    assert _compile_forest(multi) is None
    sub = type("Sub", (RandomForestClassifier,), {})(n_estimators=5).fit(X, y[:, 0] > 0)
    assert _compile_forest(sub) is None


def test_without_numba_forests_are_predicted_by_scikit_learn() -> None:
    """A process where numba cannot be imported still serves the forest, exactly."""
    code = """
import sys
sys.modules["numba"] = None  # import numba -> ImportError
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from ml_platform.serving.runtimes.scikit_learn import SklearnRuntime
X, y = make_classification(n_samples=200, n_features=5, random_state=0)
forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
runtime = SklearnRuntime(forest)
assert runtime._compiled is None, runtime._compiled
proba = runtime.predict(X).probabilities
assert proba is not None and np.array_equal(proba, forest.predict_proba(X))
print("served by scikit-learn")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "served by scikit-learn" in done.stdout
    assert "numba forest kernel is unavailable" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs a mount namespace"
)
def test_a_read_only_source_tree_compiles_in_memory() -> None:
    """The package on a read-only file system and no writable user cache: numba has no
    cache directory (it refuses to cache), so the kernel is compiled in memory instead."""
    src = Path(forest_kernel.__file__).parents[3]  # .../src
    code = """
import logging
logging.basicConfig(level=logging.INFO)
from ml_platform.serving.runtimes import forest_kernel
assert forest_kernel.available()
print("compiled")
"""
    script = f'mount --bind -o ro "{src}" "{src}" && exec "$0" -c "$1"'
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(src / "no-cache")  # numba's user-wide cache: read-only too
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, sys.executable, code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "compiled" in done.stdout
    assert "compiled without numba's cache" in done.stderr
    assert "no locator available" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="confinement needs root")
def test_a_confined_sandbox_compiles_forests_with_the_kernel(tmp_path: Path) -> None:
    """The sandbox's preload readies the kernel before the chroot and privilege drop, after
    which numba could neither import its lazy modules nor read its cache."""
    root = tmp_path / "jail"
    root.mkdir(mode=0o700)
    code = f"""
import os, pwd
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from ml_platform.serving.runtimes.forest_kernel import PackedForest
from ml_platform.serving.runtimes.scikit_learn import SklearnRuntime
from ml_platform.serving.sandbox.confine import Confinement, confine, preload
X = np.random.default_rng(0).normal(size=(300, 5))
forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, X[:, 0] > 0)
preload()
nobody = pwd.getpwnam("nobody")
os.chown({str(root)!r}, nobody.pw_uid, nobody.pw_gid)
confine(Confinement(nobody.pw_uid, nobody.pw_gid, {str(root)!r}))
assert os.getuid() == nobody.pw_uid and not os.path.exists("/proc/self")
runtime = SklearnRuntime(forest)
assert isinstance(runtime._compiled, PackedForest), runtime._compiled
assert np.array_equal(runtime.predict(X).probabilities, forest.predict_proba(X))
print("kernel in the sandbox")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "kernel in the sandbox" in done.stdout
