"""Open Inference Protocol (V2) semantics shared by its gRPC and REST adapters.

Inputs are either one 2-D tensor ``[rows, n_features]`` in signature order (any name), or
one tensor per feature named as in the signature (shape ``[rows]`` or ``[rows, 1]``).
Outputs are ``predictions`` (FP64 ``[rows]``) and, for classifiers, ``probabilities``
(FP64 ``[rows, n_classes]``, columns ordered as the model metadata's labels).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.serving.plane.dataplane import invalid
from ml_platform.serving.plane.repository import LoadedModel
from ml_platform.serving.runtimes.base import FloatArray, Prediction

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
V2_NAMES = {dt: name for name, dt in DTYPES.items()}

OUT_PREDICTIONS = "predictions"
OUT_PROBABILITIES = "probabilities"


class Tensor(NamedTuple):
    """One named tensor (a NamedTuple: built per output of every answer, and a frozen
    dataclass's ``__init__`` costs about 1 us)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]


def numpy_dtype(model: LoadedModel, name: str, datatype: str) -> np.dtype[Any]:
    dt = DTYPES.get(datatype)
    if dt is None:
        raise invalid(
            model,
            f"input {name} has datatype {datatype or '<none>'}; "
            "numeric datatypes only (FP32, FP64, INT64, ...)",
            [FieldViolation(f"inputs.{name}.datatype", "unsupported datatype")],
        )
    return dt


def check_shape(model: LoadedModel, name: str, shape: tuple[int, ...], count: int) -> None:
    if any(d < 0 for d in shape) or math.prod(shape) != count:
        raise invalid(
            model,
            f"input {name} has shape {list(shape)} but {count} elements",
            [FieldViolation(f"inputs.{name}.shape", "does not match the data")],
        )


def tensors_to_rows(model: LoadedModel, tensors: list[Tensor]) -> FloatArray:
    n = model.n_features
    if not tensors:
        raise invalid(model, "no inputs given", [FieldViolation("inputs", "must not be empty")])
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].name not in model.index:
        t = tensors[0]
        if t.shape[1] != n:
            raise invalid(
                model,
                f"input {t.name} has {t.shape[1]} columns",
                [FieldViolation(f"inputs.{t.name}.shape", "wrong width")],
            )
        return np.ascontiguousarray(t.data.reshape(t.shape), dtype=np.float64)
    by_name = {t.name: t for t in tensors}
    unknown = [name for name in by_name if name not in model.index]
    missing = [name for name in model.served.signature.input_names if name not in by_name]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown input(s) " + ", ".join(unknown))
        if missing:
            parts.append("missing input(s) " + ", ".join(missing))
        raise invalid(
            model,
            "; ".join(parts) + " (send one [rows, n_features] tensor, or one tensor per feature)",
            [FieldViolation(f"inputs.{u}", "unknown") for u in unknown]
            + [FieldViolation(f"inputs.{m}", "missing") for m in missing],
        )
    lengths = {t.data.size for t in tensors}
    if len(lengths) != 1:
        raise InvalidArgument("per-feature input tensors must all have the same number of rows")
    rows = np.empty((lengths.pop(), n), dtype=np.float64)
    for name, i in model.index.items():
        rows[:, i] = by_name[name].data.reshape(-1)
    return rows


def prediction_tensors(model: LoadedModel, pred: Prediction, requested: list[str]) -> list[Tensor]:
    values = np.ascontiguousarray(pred.values, dtype=np.float64)
    out = [Tensor(OUT_PREDICTIONS, "FP64", (values.shape[0],), values)]
    if pred.probabilities is not None:
        probs = np.ascontiguousarray(pred.probabilities, dtype=np.float64)
        out.append(Tensor(OUT_PROBABILITIES, "FP64", tuple(probs.shape), probs))
    if not requested:
        return out
    available = {t.name: t for t in out}
    unknown = [r for r in requested if r not in available]
    if unknown:
        raise invalid(
            model,
            f"unknown output(s) {', '.join(unknown)}; available: {', '.join(available)}",
            [FieldViolation(f"outputs.{u}", "unknown output") for u in unknown],
        )
    return [available[r] for r in requested]


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    served = model.served
    n = model.n_features
    outputs: list[dict[str, Any]] = [{"name": OUT_PREDICTIONS, "datatype": "FP64", "shape": [-1]}]
    if served.signature.outputs:
        outputs.append(
            {
                "name": OUT_PROBABILITIES,
                "datatype": "FP64",
                "shape": [-1, len(served.signature.outputs)],
            }
        )
    return {
        "name": served.deployment,
        "versions": [model.version_str],
        "platform": served.framework or served.artifact_format.value,
        "inputs": [
            {"name": "input", "datatype": V2_NAMES.get(model.input_dtype, "FP64"), "shape": [-1, n]}
        ],
        "outputs": outputs,
    }


def model_config(model: LoadedModel) -> dict[str, Any]:
    """The model's configuration in Triton's ``model_config.proto`` JSON form (what
    tritonclient's ``get_model_config`` reads): batching, and inputs/outputs with datatype and
    dims from the signature. With ``max_batch_size > 0`` the batch dimension is implicit, so
    ``dims`` leave it out; ``predictions`` is ``[rows]``, hence ``dims [1]`` reshaped to ``[]``."""
    served = model.served
    meta = model_metadata(model)
    outputs: list[dict[str, Any]] = [
        {
            "name": OUT_PREDICTIONS,
            "data_type": "TYPE_FP64",
            "dims": [1],
            "reshape": {"shape": []},
        }
    ]
    if served.signature.outputs:
        outputs.append(
            {
                "name": OUT_PROBABILITIES,
                "data_type": "TYPE_FP64",
                "dims": [len(served.signature.outputs)],
            }
        )
    input_type = meta["inputs"][0]["datatype"]
    return {
        "name": served.deployment,
        "platform": meta["platform"],
        "backend": served.artifact_format.value,
        "max_batch_size": served.max_batch_size,
        "input": [{"name": "input", "data_type": f"TYPE_{input_type}", "dims": [model.n_features]}],
        "output": outputs,
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(served.max_batch_delay_ms * 1000),
        },
    }
