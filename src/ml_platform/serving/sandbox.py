"""A tenant's sandbox process: the only place that tenant's pickle/joblib models are loaded.

One sandbox per tenant with pickle-based deployments, never shared between tenants. Front
workers batch requests and forward one vectorized call per batch over a Unix socket
(``sandbox_wire``); the supervisor tells the sandbox what to load over a JSON control pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ml_platform.serving import sandbox_wire as wire
from ml_platform.serving.control import ControlChannel, Message
from ml_platform.serving.models import LoadState, ServedModel
from ml_platform.serving.runtimes import ModelRuntime, load_runtime, warm_up

logger = logging.getLogger(__name__)

RETIRE_GRACE_SECONDS = 5.0


def _deployment(key: str) -> str:
    """``tenant/deployment`` of a model key (``tenant/deployment/version/revision``)."""
    return key.rsplit("/", 2)[0]


class Sandbox:
    def __init__(self, tenant_id: str, channel_conn: Connection, compile_forests: bool) -> None:
        self.tenant_id = tenant_id
        self._compile_forests = compile_forests
        self._models: dict[str, ModelRuntime] = {}
        self._labels: dict[str, bytes] = {}
        self._failed: dict[str, str] = {}
        self._desired: dict[str, ServedModel] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sandbox-load")
        # Versions no longer desired stay loaded until their replacement is ready (front
        # workers switch only then), plus a grace period: rolling swaps never fail requests.
        self._retiring: dict[str, float | None] = {}
        self._wake = asyncio.Event()
        self.stopped = asyncio.Event()
        self.channel = ControlChannel(channel_conn, self._on_control, self.stopped.set)
        self._pid = os.getpid()

    # -- control -------------------------------------------------------------------------------

    def _on_control(self, msg: Message) -> None:
        if msg.get("op") == "desired":
            models = [ServedModel.from_dict(d) for d in msg["models"]]
            self._desired = {m.key: m for m in models if m.tenant_id == self.tenant_id}
            for key in self._models:
                if key not in self._desired:
                    self._retiring.setdefault(key, None)
            self._wake.set()
        elif msg.get("op") == "stop":
            self.stopped.set()

    def _report(self, m: ServedModel, state: LoadState, reason: str = "") -> None:
        self.channel.send(
            {"op": "status", "key": m.key, "state": state.value, "reason": reason, "pid": self._pid}
        )

    async def retire_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.5)
            pending = {
                _deployment(k)
                for k in self._desired
                if k not in self._models and k not in self._failed
            }
            for key, at in list(self._retiring.items()):
                if key in self._desired:
                    del self._retiring[key]
                elif _deployment(key) in pending:
                    self._retiring[key] = None
                elif at is None:
                    self._retiring[key] = loop.time() + RETIRE_GRACE_SECONDS
                elif loop.time() >= at:
                    del self._retiring[key]
                    self._models.pop(key, None)
                    self._labels.pop(key, None)

    async def load_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            for key, m in list(self._desired.items()):
                if key in self._models or key in self._failed or key not in self._desired:
                    continue
                self._report(m, LoadState.LOADING)
                try:
                    runtime, labels = await loop.run_in_executor(
                        self._executor, _load, m, self._compile_forests
                    )
                except Exception as exc:
                    self._failed[key] = f"{type(exc).__name__}: {exc}"[:500]
                    self._report(m, LoadState.FAILED, self._failed[key])
                    continue
                self._models[key] = runtime
                self._labels[key] = wire.LABEL_SEP.join(labels).encode()
                self._report(m, LoadState.READY)

    # -- data ----------------------------------------------------------------------------------

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readexactly(wire.REQUEST.size)
                body_len, rid, op, key_len, rows, cols = wire.REQUEST.unpack(head)
                if body_len > wire.MAX_FRAME_BYTES or key_len > body_len:
                    return
                body = await reader.readexactly(body_len)
                key = body[:key_len].decode(errors="replace")
                writer.write(self._answer(rid, op, key, rows, cols, body[key_len:]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return  # client went away, or we are shutting down
        finally:
            writer.close()

    def _answer(self, rid: int, op: int, key: str, rows: int, cols: int, payload: bytes) -> bytes:
        if op == wire.OP_STATUS:
            if key in self._models:
                return wire.encode_response(rid, wire.ST_OK, self._pid, 0, self._labels[key])
            if key in self._failed:
                return wire.encode_response(rid, wire.ST_FAILED, 0, 0, self._failed[key].encode())
            return wire.encode_response(rid, wire.ST_NOT_READY, 0, 0, b"")
        runtime = self._models.get(key)
        if runtime is None:
            return wire.encode_response(rid, wire.ST_NOT_READY, 0, 0, b"")
        if len(payload) != rows * cols * 8:
            return wire.encode_response(rid, wire.ST_MODEL_ERROR, 0, 0, b"malformed request frame")
        data = np.frombuffer(payload, dtype=np.float64).reshape(rows, cols)
        try:
            pred = runtime.predict(data)
            values = np.ascontiguousarray(pred.values, dtype=np.float64)
            probs = (
                None
                if pred.probabilities is None
                else np.ascontiguousarray(pred.probabilities, dtype=np.float64)
            )
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"[:500]
            return wire.encode_response(rid, wire.ST_MODEL_ERROR, 0, 0, msg.encode())
        k = 0 if probs is None else probs.shape[1]
        body = values.tobytes() + (b"" if probs is None else probs.tobytes())
        return wire.encode_response(rid, wire.ST_OK, values.shape[0], k, body)


def _load(m: ServedModel, compile_forests: bool) -> tuple[ModelRuntime, tuple[str, ...]]:
    runtime = load_runtime(m, compile_forests=compile_forests)
    pred = warm_up(runtime, len(m.signature.inputs))
    return runtime, pred.labels


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def _owner_only(path: str) -> None:
    Path(path).chmod(0o600)


async def _run(tenant_id: str, socket_path: str, conn: Connection, compile_forests: bool) -> None:
    sandbox = Sandbox(tenant_id, conn, compile_forests)
    sandbox.channel.start()
    _remove(socket_path)
    server = await asyncio.start_unix_server(
        sandbox.serve_client, path=socket_path, limit=wire.MAX_FRAME_BYTES
    )
    _owner_only(socket_path)
    loader = asyncio.get_running_loop().create_task(sandbox.load_loop())
    retirer = asyncio.get_running_loop().create_task(sandbox.retire_loop())
    sandbox.channel.send({"op": "hello", "pid": os.getpid()})
    await sandbox.stopped.wait()
    loader.cancel()
    retirer.cancel()
    server.close()
    _remove(socket_path)


def sandbox_main(
    tenant_id: str, socket_path: str, conn: Connection, log_level: int, compile_forests: bool = True
) -> None:
    """Entry point of a sandbox process (multiprocessing ``spawn`` target)."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s sandbox[{os.getpid()}] %(levelname)s %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us via the pipe
    asyncio.run(_run(tenant_id, socket_path, conn, compile_forests))
