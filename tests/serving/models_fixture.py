"""Tiny real models built in the test, saved in every format the serving plane loads."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_platform.serving import ArtifactFormat, FeatureSpec, ModelSignature, ServedModel

N_FEATURES = 6
FEATURES = tuple(f"f{i}" for i in range(N_FEATURES))


@dataclass
class Built:
    estimator: Any
    X: np.ndarray
    paths: dict[ArtifactFormat, Path]


def dataset() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=300, n_features=N_FEATURES, n_informative=4, random_state=0
    )
    return X.astype(np.float32).astype(np.float64), y


def build_models(root: Path) -> dict[str, Built]:
    """Fit a RandomForest and a LogisticRegression (joblib, pickle, skops, ONNX) and XGBoost."""
    import joblib
    import skops.io as sio
    import xgboost as xgb
    from skl2onnx import to_onnx

    X, y = dataset()
    out: dict[str, Built] = {}
    for name, est in (
        ("rf", RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)),
        ("logreg", LogisticRegression(max_iter=500)),
    ):
        est.fit(X, y)
        paths = {
            ArtifactFormat.JOBLIB: root / f"{name}.joblib",
            ArtifactFormat.PICKLE: root / f"{name}.pkl",
            ArtifactFormat.SKOPS: root / f"{name}.skops",
            ArtifactFormat.ONNX: root / f"{name}.onnx",
        }
        joblib.dump(est, paths[ArtifactFormat.JOBLIB])
        paths[ArtifactFormat.PICKLE].write_bytes(pickle.dumps(est))
        sio.dump(est, paths[ArtifactFormat.SKOPS])
        onx = to_onnx(est, X[:1].astype(np.float32), options={id(est): {"zipmap": False}})
        paths[ArtifactFormat.ONNX].write_bytes(onx.SerializeToString())
        out[name] = Built(est, X, paths)
    booster = xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0)
    booster.fit(X, y)
    xpaths = {
        ArtifactFormat.XGBOOST_JSON: root / "xgb.json",
        ArtifactFormat.XGBOOST_UBJ: root / "xgb.ubj",
    }
    booster.save_model(xpaths[ArtifactFormat.XGBOOST_JSON])
    booster.save_model(xpaths[ArtifactFormat.XGBOOST_UBJ])
    out["xgb"] = Built(booster, X, xpaths)
    return out


def signature(labels: tuple[str, ...] = ("0", "1"), allow_nan: bool = False) -> ModelSignature:
    return ModelSignature(tuple(FeatureSpec(f) for f in FEATURES), labels, allow_nan)


def served(
    tenant: str,
    deployment: str,
    path: Path,
    fmt: ArtifactFormat,
    *,
    version: int = 1,
    model: str | None = None,
    aliases: tuple[str, ...] = (),
    max_batch_size: int = 32,
    allow_nan: bool = False,
) -> ServedModel:
    return ServedModel(
        tenant_id=tenant,
        deployment=deployment,
        model=model or deployment,
        version=version,
        artifact_format=fmt,
        artifact_path=str(path),
        signature=signature(allow_nan=allow_nan),
        framework="xgboost"
        if fmt.value.startswith("xgboost")
        else ("onnx" if fmt is ArtifactFormat.ONNX else "sklearn"),
        aliases=aliases,
        max_batch_size=max_batch_size,
        revision=f"r{version}",
    )


class CrashOnLoad:
    """Unpickling this kills the process that loads it (a hostile or broken artifact)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        import os

        return (os._exit, (13,))


class HangOnLoad:
    """Unpickling this sleeps far longer than the load timeout."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        import time

        return (time.sleep, (3600,))


class RaiseOnPredict:
    """A picklable 'estimator' that raises on rows whose first feature exceeds 1e6."""

    classes_ = np.array([0, 1])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if (X[:, 0] > 1e6).any():
            raise RuntimeError("secret internal detail: /etc/model.cfg missing")
        return np.tile([0.25, 0.75], (X.shape[0], 1))


def _wait_for(path: str, limit: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + limit
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _load_after(gate: str) -> GatedPredict:
    _wait_for(gate)
    return GatedPredict("", "")


class GatedLoad:
    """Unpickling this waits until the file ``gate`` exists (at most a minute): a model that
    is still loading for as long as the test wants, with no timing in the test."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_load_after, (self.gate,))


class GatedPredict:
    """A picklable classifier; on a row whose first feature is 777 it touches ``started`` and
    blocks until ``gate`` exists (at most a minute): a slow model the test controls."""

    classes_ = np.array([0, 1])

    def __init__(self, started: str, gate: str) -> None:
        self.started = started
        self.gate = gate

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.gate and (X[:, 0] == 777).any():
            Path(self.started).touch()
            _wait_for(self.gate)
        return np.tile([0.25, 0.75], (X.shape[0], 1))
