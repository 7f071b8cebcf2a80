"""A worker's set of loaded models: reconcile to the desired set, resolve requests.

Loads run one at a time in a background task while the worker keeps serving. A new
version is loaded and warmed up before it replaces the old one in a single dict
assignment, so requests in flight finish on the old version and new ones use the new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_platform.core.errors import NotFound, PlatformError, PreconditionFailed, Unavailable
from ml_platform.serving.models import LoadState, ServedModel
from ml_platform.serving.plane import metrics
from ml_platform.serving.plane.batching import Batcher
from ml_platform.serving.runtimes import ModelLoadError, ModelRuntime, load_runtime, warm_up
from ml_platform.serving.runtimes.base import FloatArray, Prediction
from ml_platform.serving.sandbox import wire as sandbox_wire
from ml_platform.serving.sandbox.client import RemoteModel, SandboxConnection, SandboxModelError

logger = logging.getLogger(__name__)

StatusCallback = Callable[[ServedModel, LoadState, str, int], None]
"""(model, state, reason, pid of the process holding the model)."""

PICKLE_DISABLED = (
    "pickle-based artifacts ({fmt}) are disabled on this server (allow_pickle=false): "
    "register the model as skops, ONNX or XGBoost JSON/UBJ instead"
)


@dataclass(eq=False, slots=True)
class LoadedModel:
    """One ready deployment version as the data plane sees it."""

    served: ServedModel
    batcher: Batcher
    index: dict[str, int]
    input_dtype: np.dtype[Any]
    pid: int
    value_dtype: np.dtype[Any]  # the float width the model computes in (ModelRuntime's)
    isolation: str = "shared-worker"  # where it runs; or "tenant-sandbox"
    loaded_from: str = "artifact"  # or "sandbox-export": a pickle's skops export, see _from_export
    why_sandboxed: str = ""  # for a pickle model served from its sandbox: why not from an export
    version_str: str = field(init=False)

    def __post_init__(self) -> None:
        self.version_str = str(self.served.version)

    @property
    def n_features(self) -> int:
        return len(self.served.signature.inputs)


class ModelRepository:
    def __init__(
        self,
        *,
        allow_pickle: bool,
        load_timeout: float,
        sandbox_dir: str | None,
        on_status: StatusCallback,
        compile_forests: bool = True,
        sandbox_export: bool = True,
    ) -> None:
        self._compile_forests = compile_forests
        self._sandbox_export = sandbox_export
        self._allow_pickle = allow_pickle
        self._load_timeout = load_timeout
        self._sandbox_dir = sandbox_dir
        self._on_status = on_status
        self._model_executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._load_executor = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._desired: dict[tuple[str, str], ServedModel] = {}
        self._live: dict[tuple[str, str], LoadedModel] = {}
        self._by_model_name: dict[tuple[str, str], tuple[str, str]] = {}
        self._failed: dict[tuple[str, str], tuple[str, str]] = {}  # -> (model key, reason)
        self._sandboxes: dict[str, SandboxConnection] = {}
        self._loading: tuple[str, asyncio.Future[LoadedModel]] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready_once = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._reconcile_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for conn in self._sandboxes.values():
            await conn.close()
        self._model_executor.shutdown(wait=False, cancel_futures=True)
        self._load_executor.shutdown(wait=False, cancel_futures=True)

    def apply(
        self,
        models: list[ServedModel] | tuple[ServedModel, ...],
        blamed: dict[str, str] | None = None,
    ) -> None:
        """Adopt a new desired set: removals take effect now, loads in the background.

        ``blamed`` maps model keys to a reason: models that crashed or hung a process while
        loading. They are marked failed here and never loaded again.
        """
        self._desired = {(m.tenant_id, m.deployment): m for m in models}
        for k, m in self._desired.items():
            reason = (blamed or {}).get(m.key)
            if reason is not None and self._failed.get(k, ("", ""))[0] != m.key:
                self._failed[k] = (m.key, reason)
                self._live.pop(k, None)
                self._on_status(m, LoadState.FAILED, reason, os.getpid())
                if self._loading is not None and self._loading[0] == m.key:
                    self._loading[1].cancel()
        for k in [k for k in self._live if k not in self._desired]:
            gone = self._live.pop(k)
            self._on_status(gone.served, LoadState.UNLOADED, "", gone.pid)
        self._failed = {k: v for k, v in self._failed.items() if k in self._desired}
        self._reindex()
        self._wake.set()

    # -- lookups (hot path) ------------------------------------------------------------------

    def resolve(self, tenant_id: str, model_id: str, version: str) -> LoadedModel:
        key = (tenant_id, model_id)
        lm = self._live.get(key)
        if lm is None:
            alt = self._by_model_name.get(key)
            if alt is not None:
                key = alt
                lm = self._live.get(alt)
        if lm is None:
            self._raise_not_ready(key, model_id)
        assert lm is not None
        if (
            not version
            or version == "latest"
            or version == lm.version_str
            or version in lm.served.aliases
        ):
            return lm
        raise NotFound(
            f"version '{version}' of model '{model_id}' is not deployed "
            f"(serving version {lm.served.version}; use 'latest', a version number or an alias)"
        )

    def _raise_not_ready(self, key: tuple[str, str], model_id: str) -> None:
        if key in self._desired:
            failed = self._failed.get(key)
            if failed is not None and failed[0] == self._desired[key].key:
                raise PreconditionFailed(f"model '{model_id}' failed to load: {failed[1]}")
            raise Unavailable(f"model '{model_id}' is still loading; retry shortly")
        raise NotFound(f"model '{model_id}' not found")

    def live_models(self, tenant_id: str) -> list[LoadedModel]:
        return [m for (t, _), m in self._live.items() if t == tenant_id]

    def deployment_state(self, tenant_id: str, model_id: str) -> tuple[str, str]:
        """(state, reason) of a deployment for health checks; raises NotFound."""
        key = (tenant_id, model_id)
        if key in self._live:
            return LoadState.READY.value, ""
        if key in self._desired:
            failed = self._failed.get(key)
            if failed is not None:
                return LoadState.FAILED.value, failed[1]
            return LoadState.LOADING.value, ""
        alt = self._by_model_name.get(key)
        if alt is not None:
            return self.deployment_state(*alt)
        raise NotFound(f"model '{model_id}' not found")

    @property
    def all_ready(self) -> bool:
        return all(k in self._live or k in self._failed for k in self._desired)

    def _reindex(self) -> None:
        index: dict[tuple[str, str], tuple[str, str]] = {}
        for (tenant, dep), m in sorted(self._desired.items()):
            index.setdefault((tenant, m.model), (tenant, dep))
        self._by_model_name = index

    # -- loading -----------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for k, m in list(self._desired.items()):
                if self._desired.get(k) is not m:
                    continue  # superseded while we were loading something else
                cur = self._live.get(k)
                if cur is not None and cur.served.key == m.key:
                    if cur.served != m:  # aliases or batching changed: same runtime, new settings
                        self._live[k] = self._rebatch(cur, m)
                    continue
                failed = self._failed.get(k)
                if failed is not None and failed[0] == m.key:
                    continue
                await self._load(k, m)
            if self.all_ready:
                self.ready_once.set()

    def _rebatch(self, cur: LoadedModel, m: ServedModel) -> LoadedModel:
        old = cur.batcher
        batcher = Batcher(
            old._predict,
            max_batch_size=m.max_batch_size,
            max_batch_delay_ms=m.max_batch_delay_ms,
            predict_inline=old._inline,
            predict_then=old._then,
            executor=old._executor,
        )
        batcher.on_batch = metrics.batch_observer(m)
        return LoadedModel(
            m,
            batcher,
            cur.index,
            cur.input_dtype,
            cur.pid,
            cur.value_dtype,
            cur.isolation,
            cur.loaded_from,
            cur.why_sandboxed,
        )

    async def _load(self, k: tuple[str, str], m: ServedModel) -> None:
        self._on_status(m, LoadState.LOADING, "", os.getpid())
        fut = asyncio.ensure_future(asyncio.wait_for(self._load_model(m), self._load_timeout))
        self._loading = (m.key, fut)
        started = time.perf_counter()
        try:
            loaded = await fut
        except asyncio.CancelledError:
            if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return  # blamed by the supervisor while we waited; already reported failed
        except (ModelLoadError, TimeoutError) as exc:
            reason = (
                str(exc)
                if isinstance(exc, ModelLoadError)
                else (f"timed out loading the model after {self._load_timeout:.0f}s")
            )
            self._failed[k] = (m.key, reason)
            metrics.observe_model_load(m, time.perf_counter() - started, ready=False)
            logger.warning(
                "deployment %s/%s v%s failed to load: %s",
                m.tenant_id,
                m.deployment,
                m.version,
                reason,
            )
            self._on_status(m, LoadState.FAILED, reason, os.getpid())
            return
        except Exception as exc:  # any other loader bug still fails only this deployment
            reason = f"{type(exc).__name__}: {exc}"
            self._failed[k] = (m.key, reason)
            metrics.observe_model_load(m, time.perf_counter() - started, ready=False)
            logger.exception("deployment %s/%s failed to load", m.tenant_id, m.deployment)
            self._on_status(m, LoadState.FAILED, reason, os.getpid())
            return
        finally:
            self._loading = None
        metrics.observe_model_load(m, time.perf_counter() - started, ready=True)
        if self._desired.get(k) is not m:
            return  # superseded during the load; the loop will pick up the newer one
        self._failed.pop(k, None)
        loaded.batcher.on_batch = metrics.batch_observer(m)
        self._live[k] = loaded
        self._on_status(m, LoadState.READY, "", loaded.pid)

    async def _load_model(self, m: ServedModel) -> LoadedModel:
        index = {name: i for i, name in enumerate(m.signature.input_names)}
        if m.artifact_format.runs_code_on_load:
            return await self._load_remote(m, index)
        runtime = await asyncio.get_running_loop().run_in_executor(
            self._load_executor, _load_and_warm, m, self._compile_forests
        )
        return self._in_process(m, runtime, index)

    def _in_process(
        self, m: ServedModel, runtime: ModelRuntime, index: dict[str, int]
    ) -> LoadedModel:
        dtype = runtime.input_dtype

        def run(rows: FloatArray) -> Prediction:
            return runtime.predict(rows if rows.dtype == dtype else rows.astype(dtype))

        batcher = Batcher(  # on the loop while cheap, else in the model thread
            None,
            max_batch_size=m.max_batch_size,
            max_batch_delay_ms=m.max_batch_delay_ms,
            predict_inline=run,
            executor=self._model_executor,
        )
        return LoadedModel(m, batcher, index, runtime.input_dtype, os.getpid(), runtime.value_dtype)

    async def _load_remote(self, m: ServedModel, index: dict[str, int]) -> LoadedModel:
        if not self._allow_pickle:
            raise ModelLoadError(PICKLE_DISABLED.format(fmt=m.artifact_format.value))
        if self._sandbox_dir is None:
            raise ModelLoadError(
                "this server runs no tenant sandboxes, so it cannot serve pickle-based artifacts"
            )
        conn = self._sandboxes.get(m.tenant_id)
        if conn is None:
            conn = SandboxConnection(sandbox_wire.socket_path(self._sandbox_dir, m.tenant_id))
            self._sandboxes[m.tenant_id] = conn
        remote = RemoteModel(conn, m.key, len(m.signature.inputs))
        await remote.wait_ready(self._load_timeout)
        exported = (
            await self._from_export(m, remote)
            if self._sandbox_export
            else "this server serves pickle models from their sandbox (serving_sandbox_export off)"
        )
        if not isinstance(exported, str):
            lm = self._in_process(m, exported, index)
            lm.loaded_from = "sandbox-export"
            return lm
        batcher = Batcher(
            remote.predict,
            max_batch_size=m.max_batch_size,
            max_batch_delay_ms=m.max_batch_delay_ms,
            predict_then=remote.predict_then,
        )
        return LoadedModel(
            m,
            batcher,
            index,
            np.dtype(np.float64),
            remote.pid,
            remote.value_dtype,
            isolation="tenant-sandbox",
            why_sandboxed=exported,
        )

    async def _from_export(self, m: ServedModel, remote: RemoteModel) -> ModelRuntime | str:
        """The sandboxed model loaded here from its sandbox's skops export, or why it stays in
        the sandbox: the export is untrusted input, so it is loaded exactly as a skops upload
        is (the same refused types), and kept only if it predicts the probe rows exactly as
        the sandbox does."""
        where = f"deployment {m.tenant_id}/{m.deployment} v{m.version} ({m.artifact_format.value})"
        try:
            data = await remote.export()
        except (SandboxModelError, PlatformError) as exc:
            logger.info("%s is served from its sandbox: %s", where, exc)
            return f"no skops export: {exc}"
        loop = asyncio.get_running_loop()
        probe = _export_probe(len(m.signature.inputs))
        try:
            runtime = await loop.run_in_executor(
                self._load_executor, _load_export, m, data, self._compile_forests
            )
            want = await remote.predict(probe)
            got = await loop.run_in_executor(self._load_executor, runtime.predict, probe)
        except Exception as exc:  # whatever went wrong, the sandbox still serves the model
            logger.info("%s is served from its sandbox: its export failed: %s", where, exc)
            return f"its skops export failed: {exc}"
        if not same_prediction(want, got):
            logger.warning(
                "%s is served from its sandbox: its skops export predicts differently", where
            )
            runtime.unload()
            return "its skops export predicted the probe rows differently"
        logger.info("%s is served in this worker from its sandbox's skops export", where)
        return runtime


def _export_probe(n_features: int) -> FloatArray:
    """Rows an exported model must predict exactly as its sandbox: zeros, then random ones."""
    rows = np.random.default_rng(0).normal(0.0, 3.0, size=(64, n_features))
    rows[0] = 0.0
    return rows


def same_prediction(a: Prediction, b: Prediction) -> bool:
    """Bit for bit: values and probabilities as float64 (NaN equal to NaN), and labels."""

    def same(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return bool(
            np.array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64), equal_nan=True)
        )

    return (
        same(a.values, b.values)
        and same(a.probabilities, b.probabilities)
        and tuple(a.labels) == tuple(b.labels)
    )


def _load_export(m: ServedModel, data: bytes, compile_forests: bool) -> ModelRuntime:
    from ml_platform.serving.runtimes.scikit_learn import load_skops

    return _warmed(m, load_skops(data, compile_forests=compile_forests))


def _load_and_warm(m: ServedModel, compile_forests: bool) -> ModelRuntime:
    return _warmed(m, load_runtime(m, compile_forests=compile_forests))


def _warmed(m: ServedModel, runtime: ModelRuntime) -> ModelRuntime:
    try:
        warm_up(runtime, len(m.signature.inputs))
    except Exception as exc:
        raise ModelLoadError(
            "model loaded but failed its warm-up prediction on "
            f"{len(m.signature.inputs)} features: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return runtime
