"""Seed protobuf <-> numpy. Protobuf types stop here; the data plane sees arrays."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.serving.plane.dataplane import invalid
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.proto import serving_pb2
from ml_platform.serving.runtimes.base import FloatArray, Prediction

_SCALAR_KINDS = ("float_value", "int_value", "bool_value")


def features_to_row(model: LoadedModel, features: Sequence[serving_pb2.Feature]) -> FloatArray:
    """One request's features as a (1, n) row in signature order.

    Named features are matched by name in any order; unnamed ones are positional, and a
    single ``float_array`` may carry the whole row.
    """
    return np.array(features_to_values(model, features), dtype=np.float64).reshape(1, -1)


def features_to_values(model: LoadedModel, features: Sequence[serving_pb2.Feature]) -> list[float]:
    """Like ``features_to_row`` but a plain list (PredictBatch stacks many into one array)."""
    n = model.n_features
    if not features:
        raise invalid(model, "no features given", [FieldViolation("features", "must not be empty")])
    if features[0].name:
        if len(features) == n:
            fast = _named_fast(model.index, features, n)
            if fast is not None:
                return fast
        return _named(model, features, n)
    return _positional(model, features, n)


def _named_fast(
    index: dict[str, int], features: Sequence[serving_pb2.Feature], n: int
) -> list[float] | None:
    """The common case (every feature a float_value, each name once) or None."""
    values: list[float | None] = [None] * n
    try:
        for f in features:
            if f.WhichOneof("value") != "float_value":
                return None
            values[index[f.name]] = f.float_value
    except KeyError:
        return None
    if None in values:
        return None
    return values  # type: ignore[return-value]


def _scalar(model: LoadedModel, f: serving_pb2.Feature, label: str) -> float:
    kind = f.WhichOneof("value")
    if kind == "float_value":
        return f.float_value
    if kind == "int_value":
        return float(f.int_value)
    if kind == "bool_value":
        return 1.0 if f.bool_value else 0.0
    got = "no value" if kind is None else kind
    raise invalid(
        model,
        f"feature {label} has {got}; numeric features take float_value, int_value or bool_value",
        [FieldViolation(f"features.{label}", f"wrong type: {got}")],
    )


def _named(model: LoadedModel, features: Sequence[serving_pb2.Feature], n: int) -> list[float]:
    index = model.index
    out = [0.0] * n
    seen = [False] * n
    unknown: list[str] = []
    for f in features:
        i = index.get(f.name)
        if i is None:
            unknown.append(f.name or "<unnamed>")
            continue
        if seen[i]:
            raise invalid(
                model,
                f"feature {f.name} given twice",
                [FieldViolation(f"features.{f.name}", "duplicate")],
            )
        seen[i] = True
        out[i] = _scalar(model, f, f.name)
    if unknown or len(features) - len(unknown) != n:
        missing = [
            name
            for name, ok in zip(model.served.signature.input_names, seen, strict=True)
            if not ok
        ]
        parts = []
        if unknown:
            parts.append("unknown feature(s) " + ", ".join(unknown))
        if missing:
            parts.append("missing feature(s) " + ", ".join(missing))
        violations = [FieldViolation(f"features.{u}", "unknown feature") for u in unknown] + [
            FieldViolation(f"features.{m}", "missing") for m in missing
        ]
        raise invalid(model, "; ".join(parts), violations)
    return out


def _positional(model: LoadedModel, features: Sequence[serving_pb2.Feature], n: int) -> list[float]:
    if len(features) == 1 and features[0].WhichOneof("value") == "float_array":
        values = list(features[0].float_array.values)
        if len(values) != n:
            raise invalid(
                model,
                f"float_array has {len(values)} values",
                [FieldViolation("features", "wrong count")],
            )
        return values
    if len(features) != n:
        raise invalid(
            model,
            f"got {len(features)} unnamed features",
            [FieldViolation("features", "wrong count")],
        )
    out = [0.0] * n
    for i, f in enumerate(features):
        if f.name:
            raise InvalidArgument("features must be all named or all unnamed")
        out[i] = _scalar(model, f, str(i))
    return out


def to_response(
    model: LoadedModel, pred: Prediction, i: int, started_ns: int
) -> serving_pb2.PredictResponse:
    resp = serving_pb2.PredictResponse(
        predictions=(float(pred.values[i]),),
        latency_microseconds=(time.perf_counter_ns() - started_ns) // 1000,
        model_version_used=model.version_str,
    )
    if pred.probabilities is not None:
        scores = resp.confidence_scores
        for label, p in zip(pred.labels, pred.probabilities[i].tolist(), strict=True):
            scores[label] = p
    return resp
