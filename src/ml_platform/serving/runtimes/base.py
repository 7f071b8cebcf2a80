"""The loader interface every model runtime implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True)
class Prediction:
    """Outputs of one vectorized call: a value per row, and class probabilities if any."""

    values: npt.NDArray[np.float64]  # shape (n,)
    probabilities: npt.NDArray[np.float64] | None = None  # shape (n, len(labels))
    labels: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def slice(self, start: int, stop: int) -> Prediction:
        probs = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.values[start:stop], probs, self.labels)


class ModelRuntime(Protocol):
    """A loaded model. ``predict`` takes a 2-D array of rows in signature order."""

    input_dtype: np.dtype[Any]
    value_dtype: np.dtype[Any]
    """The float width the model computes in (scikit-learn's trees cast rows to float32): the
    data plane refuses a value beyond its range with INVALID_ARGUMENT before batching, where
    the model itself would raise (INTERNAL) or answer from Infinity."""

    def predict(self, rows: FloatArray) -> Prediction: ...

    def unload(self) -> None: ...


class ModelLoadError(Exception):
    """The artifact could not be loaded; the message is safe to show to the model's owner."""
