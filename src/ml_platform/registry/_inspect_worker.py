"""Load one model artifact from stdin and print its signature as JSON on stdout.

Runs as its own interpreter (``python -I this_file ...``), never inside the API process:
loading a pickle runs arbitrary code, and loading anything can exhaust memory. The parent
sets the limits on the command line; this script applies them before importing anything
heavy, then reads the artifact from stdin (an inherited file descriptor, so an unprivileged
user needs no access to the platform's files).

Standard library only at import time; ``ml_platform`` is not imported.
Output: one JSON object, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
from typing import Any

SAFE_SKOPS_PREFIXES = ("sklearn.", "numpy.", "scipy.", "xgboost.", "builtins.", "collections.")


class NotAModel(Exception):
    pass


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _dtype_name(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "f")
    if kind == "b":
        return "bool"
    if kind in "iu":
        return "int64"
    if kind in "OUS":
        return "string"
    return "float64"


def _sklearn_like(model: Any) -> dict[str, Any]:
    cls = type(model)
    estimator = f"{cls.__module__}.{cls.__qualname__}"
    framework = "xgboost" if cls.__module__.startswith("xgboost") else "sklearn"
    names = getattr(model, "feature_names_in_", None)
    count = getattr(model, "n_features_in_", None)
    if names is None and count is None:
        if not hasattr(model, "predict"):
            raise NotAModel(
                f"the artifact holds a {estimator} object, not a scikit-learn or XGBoost model"
            )
        raise NotAModel(
            f"{estimator} has no n_features_in_ or feature_names_in_: is it fitted? "
            "Give the signature explicitly"
        )
    if names is not None:
        features = [{"name": str(n), "dtype": "float64"} for n in list(names)]
    else:
        features = [{"name": f"f{i}", "dtype": "float64"} for i in range(int(count or 0))]
    if framework == "xgboost":
        for feature in features:
            feature["dtype"] = "float32"
    classes = getattr(model, "classes_", None)
    labels = [str(c) for c in list(classes)] if classes is not None else []
    return {
        "framework": framework,
        "estimator": estimator,
        "input_features": features,
        "output_labels": labels,
    }


_XGB_TYPES = {"int": "int64", "i": "bool", "float": "float32", "q": "float32"}


def _booster(data: bytes) -> dict[str, Any]:
    import xgboost

    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgboost.core.XGBoostError as exc:
        raise NotAModel(f"not a valid XGBoost model: {str(exc).splitlines()[0]}") from exc
    names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
    types = booster.feature_types or ["float"] * len(names)
    features = [
        {"name": n, "dtype": _XGB_TYPES.get(t, "float32")}
        for n, t in zip(names, types, strict=False)
    ]
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    objective = str(learner.get("objective", {}).get("name", ""))
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    if objective.startswith("multi:"):
        labels = [str(i) for i in range(num_class)]
    elif objective.startswith("binary:"):
        labels = ["0", "1"]
    else:
        labels = []
    return {
        "framework": "xgboost",
        "estimator": f"xgboost.Booster({objective})",
        "input_features": features,
        "output_labels": labels,
    }


def _onnx(data: bytes) -> dict[str, Any]:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise NotAModel(f"not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from exc
    inputs = [
        {"name": i.name, "type": i.type, "shape": [str(d) for d in i.shape]}
        for i in session.get_inputs()
    ]
    return {"framework": "", "estimator": "onnx", "onnx_inputs": inputs}


def _skops(data: bytes) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:
        raise NotAModel(f"not a valid skops file: {exc}") from exc
    unsafe = [t for t in untrusted if not t.startswith(SAFE_SKOPS_PREFIXES)]
    if unsafe:
        raise NotAModel(
            "the skops file references types outside scikit-learn, NumPy, SciPy and XGBoost: "
            + ", ".join(sorted(unsafe)[:10])
        )
    return skops.io.loads(data, trusted=untrusted)


def inspect(data: bytes, fmt: str) -> dict[str, Any]:
    if fmt in ("joblib", "pickle"):
        import joblib

        try:
            model = joblib.load(io.BytesIO(data))
        except MemoryError:
            raise
        except Exception as exc:
            raise NotAModel(
                f"could not load the {fmt} artifact: {type(exc).__name__}: {exc}"
            ) from exc
        return _sklearn_like(model)
    if fmt == "skops":
        return _sklearn_like(_skops(data))
    if fmt in ("xgboost-json", "xgboost-ubj"):
        return _booster(data)
    if fmt == "onnx":
        return _onnx(data)
    raise NotAModel(f"unknown format {fmt!r}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", required=True)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpu-seconds", type=int, default=0)
    args = parser.parse_args()
    _limit(args.memory_mb, args.cpu_seconds)
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the model prints while loading must not corrupt our JSON
    try:
        data = sys.stdin.buffer.read()
        result: dict[str, Any] = {"ok": True, **inspect(data, args.format)}
    except NotAModel as exc:
        result = {"ok": False, "error": str(exc)}
    except MemoryError:
        result = {"ok": False, "error": "loading the artifact exceeded the memory limit"}
    out.write(json.dumps(result))
    out.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
