"""The transport-neutral data plane: resolve, validate, batch, predict.

gRPC (seed ``ModelServing`` and V2) and REST (V2) adapters convert their wire types to numpy
rows and call this; everything here speaks ``core.errors`` and numpy only.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from ml_platform.core.errors import (
    ErrorCode,
    FieldViolation,
    InvalidArgument,
    PlatformError,
)
from ml_platform.serving.models import Principal
from ml_platform.serving.plane import metrics
from ml_platform.serving.plane.auth_cache import AuthCache
from ml_platform.serving.plane.repository import LoadedModel, ModelRepository
from ml_platform.serving.runtimes.base import FloatArray, Prediction
from ml_platform.serving.sandbox.client import SandboxModelError

logger = logging.getLogger(__name__)

SERVER_NAME = "ml-platform"
SERVER_VERSION = "0.1.0"


class ModelFailed(PlatformError):
    """The model raised while predicting: INTERNAL with a message safe to show."""

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(
            f"model '{model.served.deployment}' version {model.served.version} "
            "failed while predicting; "
            "the input was valid, the error is logged on the server",
            ErrorCode.INTERNAL,
        )


def signature_hint(model: LoadedModel) -> str:
    sig = model.served.signature
    served = model.served
    return (
        f"model '{served.deployment}' v{served.version} expects {len(sig.inputs)} features "
        f"{sig.describe()}"
    )


def invalid(
    model: LoadedModel, problem: str, violations: list[FieldViolation] | None = None
) -> InvalidArgument:
    return InvalidArgument(f"{problem}; {signature_hint(model)}", violations)


_MAX_NAMED = 10  # features named in one error message (the rest are counted)
_max = np.maximum.reduce  # the ufunc itself: ndarray.max adds a Python layer (~0.5 us)


@functools.cache
def _float_limit(input_dtype: np.dtype[Any]) -> np.float64:
    """The largest finite value of the model's input dtype (float64's for non-float inputs).

    A float64 scalar, so that comparing rows of a narrower float (FP32 requests are read in
    their own dtype) promotes the rows instead of casting the limit down to Infinity."""
    dtype = input_dtype if np.issubdtype(input_dtype, np.floating) else np.float64
    return np.float64(np.finfo(dtype).max)


def _bad_values(model: LoadedModel, rows: FloatArray) -> npt.NDArray[np.bool_]:
    """True where a value is NaN (unless the model allows it), +-Infinity, or overflows the
    model's input dtype (a float64 beyond float32 becomes Infinity when converted)."""
    limit = _float_limit(model.value_dtype)
    with np.errstate(invalid="ignore"):
        if model.served.signature.allow_nan:
            return np.asarray(np.abs(rows) > limit)  # NaN compares False: allowed
        return np.asarray(~(np.abs(rows) <= limit))  # NaN compares False: refused


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class InferRequest(Generic[R]):
    """One inference call as an adapter hands it to ``DataPlane.infer``.

    The adapter supplies only the conversions: ``decode`` turns its wire message into a 2-D
    row matrix in signature order for the resolved model (raising ``core.errors``),
    ``encode`` turns the prediction into its wire response. ``deadline`` is the caller's
    deadline on the ``time.monotonic()`` clock (None: no deadline).
    """

    model_id: str
    version: str
    decode: Callable[[LoadedModel], FloatArray]
    encode: Callable[[LoadedModel, Prediction], R]
    deadline: float | None = None


def deadline_after(seconds: float | None) -> float | None:
    """A ``time.monotonic()`` deadline ``seconds`` from now (None stays None)."""
    return None if seconds is None else time.monotonic() + seconds


@dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    status: str
    details: dict[str, str]


class DataPlane:
    def __init__(self, repository: ModelRepository, auth: AuthCache) -> None:
        self.repository = repository
        self._auth = auth
        self.pid = os.getpid()

    async def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        try:
            return await self._auth.principal(api_key, bearer)
        except PlatformError as exc:  # bad credentials, or over the data-plane rate limit
            metrics.count_rejection(exc.code.value)
            raise

    def resolve(self, principal: Principal, model_id: str, version: str) -> LoadedModel:
        if not model_id:
            raise InvalidArgument(
                "model_id is required", [FieldViolation("model_id", "must not be empty")]
            )
        return self.repository.resolve(principal.tenant_id, model_id, version)

    async def infer(self, principal: Principal, request: InferRequest[R]) -> R:
        """The one data-plane flow: resolve -> decode -> check -> predict -> encode."""
        deployment: str | None = None  # counted by deployment once resolved (metrics)
        try:
            model = self.resolve(principal, request.model_id, request.version)
            deployment = model.served.deployment
            rows = request.decode(model)
            self.check_rows(model, rows)
            prediction = await self.predict(model, rows, request.deadline)
            result = request.encode(model, prediction)
        except Exception as exc:
            code = exc.code.value if isinstance(exc, PlatformError) else "INTERNAL"
            metrics.count_prediction(principal.tenant_id, deployment, code)
            raise
        metrics.count_prediction(principal.tenant_id, deployment, metrics.OK)
        return result

    def model_ready(self, principal: Principal, model_id: str, version: str) -> bool:
        """V2 model readiness: False while loading or failed; NOT_FOUND when not deployed."""
        try:
            self.resolve(principal, model_id, version)
        except PlatformError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                raise
            return False
        return True

    # -- validation helpers shared by the adapters --------------------------------------------

    def check_rows(self, model: LoadedModel, rows: FloatArray) -> None:
        """Raise INVALID_ARGUMENT for an empty batch or NaN the model cannot take."""
        if rows.ndim != 2 or rows.shape[1] != model.n_features:
            raise invalid(model, f"got rows of shape {list(rows.shape)}")
        if rows.shape[0] == 0:
            raise invalid(model, "empty batch: send at least one row")
        bad = self.nan_rows(model, rows)
        if bad is not None:
            raise self.nan_error(model, rows[int(np.argmax(bad))])

    def nan_rows(self, model: LoadedModel, rows: FloatArray) -> npt.NDArray[np.bool_] | None:
        """Rows holding a value the model cannot take (NaN unless allowed, +-Infinity, or a
        number beyond the model's float width), or None when every row is fine."""
        if rows.dtype.kind != "f":
            return None
        # one reduction when every value is fine; NaN propagates and compares False (no
        # warning: neither abs, the max nor the comparison of a NaN sets numpy's error state)
        if rows.size and _max(np.abs(rows), axis=None) <= _float_limit(model.value_dtype):
            return None
        mask = _bad_values(model, rows)
        if not mask.any():
            return None
        return np.asarray(mask.any(axis=1))

    def nan_error(self, model: LoadedModel, row: FloatArray) -> InvalidArgument:
        bad = np.flatnonzero(_bad_values(model, row.reshape(1, -1))[0])
        names = [model.served.signature.inputs[i].name for i in bad[:_MAX_NAMED]]
        more = f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        accepted = "" if model.served.signature.allow_nan else "NaN, "
        return invalid(
            model,
            f"non-finite value in feature(s) {', '.join(names)}{more}; this model does not "
            f"accept {accepted}Infinity or numbers beyond its {model.value_dtype} range "
            "(NaN means a missing value)",
            [FieldViolation(f"features.{n}", "NaN/Infinity is not accepted") for n in names],
        )

    # -- prediction --------------------------------------------------------------------------

    async def predict(
        self, model: LoadedModel, rows: FloatArray, deadline: float | None = None
    ) -> Prediction:
        """One vectorized call (possibly merged with other callers' rows by the batcher);
        rows whose ``deadline`` passes while queued are dropped before the model sees them."""
        try:
            return await model.batcher.submit(rows, deadline)
        except PlatformError:
            raise
        except SandboxModelError as exc:
            logger.warning(
                "model %s/%s raised in its sandbox: %s",
                model.served.tenant_id,
                model.served.deployment,
                exc,
            )
            raise ModelFailed(model) from exc
        except Exception as exc:
            logger.warning(
                "model %s/%s v%s raised %s: %s",
                model.served.tenant_id,
                model.served.deployment,
                model.served.version,
                type(exc).__name__,
                exc,
            )
            raise ModelFailed(model) from exc

    # -- metadata ----------------------------------------------------------------------------

    def health(self, principal: Principal, model_id: str) -> HealthReport:
        if not model_id:
            live = self.repository.live_models(principal.tenant_id)
            ready = self.repository.ready_once.is_set()  # as gRPC health and V2 readiness
            return HealthReport(
                ready, "SERVING" if ready else "NOT_SERVING", {"models_ready": str(len(live))}
            )
        state, reason = self.repository.deployment_state(principal.tenant_id, model_id)
        details = {"state": state}
        if reason:
            details["reason"] = reason
        if state == "ready":
            lm = self.repository.resolve(principal.tenant_id, model_id, "")
            details.update(
                version=lm.version_str,
                isolation=lm.isolation,
                model_calls=str(lm.batcher.calls),
                rows_predicted=str(lm.batcher.rows),
            )
            if lm.loaded_from != "artifact":
                details["loaded_from"] = lm.loaded_from
            if lm.why_sandboxed:
                details["why_sandboxed"] = lm.why_sandboxed[:500]
        return HealthReport(state == "ready", state.upper(), details)
