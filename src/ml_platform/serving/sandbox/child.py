"""A tenant's sandbox process: the only place that tenant's pickle/joblib models are loaded.

One sandbox per tenant with pickle-based deployments, never shared between tenants. Front
workers batch requests and forward one vectorized call per batch over a Unix socket
(``sandbox_wire``); the supervisor tells the sandbox what to load over a JSON control pipe
and hands it each artifact as an already-open file descriptor (a second socket, SCM_RIGHTS).

The process is started by ``sandbox_launch`` (``python -P -c ... main()``) with an
environment built from scratch and no inherited descriptor besides stdio and its sockets.
When the server is root and ``job_user`` is set, it preloads the model libraries, binds its
socket and then confines itself (``sandbox_confine``: own network namespace, chroot into an
empty directory, setuid to the job user) before it reads any artifact: tenant code that runs
at unpickling cannot open the platform's database, credentials or other tenants' files.
Otherwise it runs with the server's rights, and the supervisor logged a WARNING saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from ml_platform import startup_heap
from ml_platform.serving.control import ControlChannel, Message
from ml_platform.serving.models import ArtifactFormat, LoadState, ServedModel
from ml_platform.serving.runtimes import ModelRuntime, warm_up
from ml_platform.serving.runtimes.base import ModelLoadError
from ml_platform.serving.runtimes.scikit_learn import SklearnRuntime, skops_export
from ml_platform.serving.sandbox import wire
from ml_platform.serving.sandbox.confine import (
    Confinement,
    ConfinementError,
    confine,
    missing_module_hint,
    preload,
)

logger = logging.getLogger(__name__)

RETIRE_GRACE_SECONDS = 5.0
MAX_EXPORT_BYTES = wire.MAX_FRAME_BYTES // 4  # a model's skops export is held in memory here


def _deployment(key: str) -> str:
    """``tenant/deployment`` of a model key (``tenant/deployment/version/revision``)."""
    return key.rsplit("/", 2)[0]


class Sandbox:
    def __init__(
        self,
        tenant_id: str,
        channel_conn: Connection,
        compile_forests: bool,
        artifacts: socket.socket,
        confined: bool = False,
        refuse: str = "",
        export: bool = True,
    ) -> None:
        self.tenant_id = tenant_id
        self._export = export  # write each loaded model as skops, for OP_EXPORT
        self._refuse = refuse  # why nothing may load here (confinement failed)
        self._compile_forests = compile_forests
        self._artifacts = artifacts
        self._artifacts.setblocking(False)
        self._confined = confined
        self._fds: dict[str, int] = {}  # model key -> open artifact, until loaded
        self._fd_errors: dict[str, str] = {}
        self._models: dict[str, ModelRuntime] = {}
        self._labels: dict[str, bytes] = {}
        self._exports: dict[str, bytes | str] = {}  # skops bytes, or why there are none
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

    def start_artifact_reader(self) -> None:
        asyncio.get_running_loop().add_reader(self._artifacts.fileno(), self._drain_artifacts)

    def _drain_artifacts(self) -> None:
        try:
            received = wire.receive_artifacts(self._artifacts)
        except (EOFError, OSError):
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._artifacts.fileno())
            self.stopped.set()  # the supervisor is gone
            return
        for key, fd, error in received:
            self._close_fd(key)
            if fd is not None:
                self._fds[key] = fd
            else:
                self._fd_errors[key] = error or "the artifact could not be opened"
        if received:
            self._wake.set()

    def _close_fd(self, key: str) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _on_control(self, msg: Message) -> None:
        if msg.get("op") == "desired":
            # The supervisor sent this message's descriptors before it: take them first.
            self._drain_artifacts()
            models = [ServedModel.from_dict(d) for d in msg["models"]]
            self._desired = {m.key: m for m in models if m.tenant_id == self.tenant_id}
            for key in list(self._fds):
                if key not in self._desired:
                    self._close_fd(key)
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
                    self._exports.pop(key, None)

    async def load_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            for key, m in list(self._desired.items()):
                if key in self._models or key in self._failed or key not in self._desired:
                    continue
                if self._refuse or key in self._fd_errors:
                    self._close_fd(key)
                    self._failed[key] = (self._refuse or self._fd_errors.pop(key))[:500]
                    self._report(m, LoadState.FAILED, self._failed[key])
                    continue
                fd = self._fds.pop(key, None)
                if fd is None:
                    continue  # its descriptor is on the way; the reader wakes us
                self._report(m, LoadState.LOADING)
                try:
                    runtime, labels, export = await loop.run_in_executor(
                        self._executor,
                        _load,
                        m,
                        fd,
                        self._compile_forests,
                        self._confined,
                        self._export,
                    )
                except Exception as exc:
                    self._failed[key] = f"{type(exc).__name__}: {exc}"[:500]
                    self._report(m, LoadState.FAILED, self._failed[key])
                    continue
                self._exports[key] = export
                self._models[key] = runtime
                self._labels[key] = wire.LABEL_SEP.join(labels).encode()
                self._report(m, LoadState.READY)

    # -- data ----------------------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        """Each front worker's connection gets a thread of its own (see ``serve_connection``)."""
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("sandbox accept failed: %s", exc)
                return
            conn.setblocking(True)
            threading.Thread(
                target=self.serve_connection, args=(conn,), name="sandbox-conn", daemon=True
            ).start()

    def serve_connection(self, conn: socket.socket) -> None:
        """Answer one front worker's requests in order, with blocking calls and no event loop.

        A round trip is then usually one ``recv_into`` (whatever has arrived, into a reused
        buffer: the whole request frame, often more) and one ``sendmsg`` (header plus the
        result arrays' own memory) here: the thread sleeps in ``recv`` with the GIL released,
        so the loop thread (control, loading) is unaffected.
        """
        head_size = wire.REQUEST.size
        buf = bytearray(64 * 1024)
        view = memoryview(buf)
        have = 0  # bytes received and not yet answered, from buf[0]
        with conn:
            try:
                while True:
                    have = _recv_at_least(conn, view, have, head_size)
                    if have < head_size:
                        return
                    body_len, rid, op, key_len, rows, cols = wire.REQUEST.unpack_from(buf)
                    if body_len > wire.MAX_FRAME_BYTES or key_len > body_len:
                        return
                    end = head_size + body_len
                    if end > len(buf):
                        grown = bytearray(end)
                        grown[:have] = view[:have]
                        buf, view = grown, memoryview(grown)
                    have = _recv_at_least(conn, view, have, end)
                    if have < end:
                        return
                    key = bytes(view[head_size : head_size + key_len]).decode(errors="replace")
                    payload = view[head_size + key_len : end]
                    _send_all(conn, self._answer(rid, op, key, rows, cols, payload))
                    if have > end:  # the worker's next request(s) came in the same read
                        buf[: have - end] = buf[end:have]
                    have -= end
            except OSError:
                return  # the front worker went away, or we are shutting down
            except Exception:  # a bug here: drop this connection (the worker sees Unavailable)
                logger.exception("sandbox connection failed")

    def _answer(
        self, rid: int, op: int, key: str, rows: int, cols: int, payload: memoryview
    ) -> list[bytes | memoryview]:
        if op == wire.OP_STATUS:
            labels = self._labels.get(key)  # set after the model: this thread may look between
            if labels is not None and key in self._models:
                # k: the byte width of the float the model computes in (4: float32)
                width = self._models[key].value_dtype.itemsize
                return wire.response_parts(rid, wire.ST_OK, self._pid, width, labels)
            if key in self._failed:
                return wire.response_parts(rid, wire.ST_FAILED, 0, 0, self._failed[key].encode())
            return wire.response_parts(rid, wire.ST_NOT_READY, 0, 0)
        runtime = self._models.get(key)
        if runtime is None:
            return wire.response_parts(rid, wire.ST_NOT_READY, 0, 0)
        if op == wire.OP_EXPORT:
            export = self._exports.get(key, "this sandbox does not export its models")
            if isinstance(export, str):
                return wire.response_parts(rid, wire.ST_MODEL_ERROR, 0, 0, export.encode())
            return wire.response_parts(rid, wire.ST_OK, 0, 0, export)
        if payload.nbytes != rows * cols * 8:
            return wire.response_parts(rid, wire.ST_MODEL_ERROR, 0, 0, b"malformed request frame")
        data = np.frombuffer(payload, dtype=np.float64).reshape(rows, cols)
        try:
            pred = runtime.predict(data)
            values = _float64(pred.values)
            probs = None if pred.probabilities is None else _float64(pred.probabilities)
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"[:500]
            return wire.response_parts(rid, wire.ST_MODEL_ERROR, 0, 0, msg.encode())
        n = values.shape[0]
        if probs is None:
            return [wire.RESPONSE.pack(values.nbytes, rid, wire.ST_OK, n, 0), values.data]
        head = wire.RESPONSE.pack(values.nbytes + probs.nbytes, rid, wire.ST_OK, n, probs.shape[1])
        return [head, values.data, probs.data]


def _float64(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a`` as C-contiguous float64 (itself when it already is: the usual case)."""
    if a.dtype == np.float64 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.float64)


def _recv_at_least(conn: socket.socket, view: memoryview, have: int, need: int) -> int:
    """Receive into ``view[have:]`` until it holds ``need`` bytes (taking whatever else has
    arrived, up to the buffer's end); the bytes held, fewer than ``need`` at end of stream."""
    while have < need:
        n = conn.recv_into(view[have:])
        if n == 0:
            return have
        have += n
    return have


def _send_all(conn: socket.socket, parts: list[bytes | memoryview]) -> None:
    sent = conn.sendmsg(parts)
    if sent < wire.RESPONSE.size + wire.RESPONSE.unpack_from(parts[0])[0]:
        # interrupted part-way (a signal, or a huge answer): send the rest
        conn.sendall(b"".join(parts)[sent:])


def _load(
    m: ServedModel, fd: int, compile_forests: bool, confined: bool, export: bool
) -> tuple[ModelRuntime, tuple[str, ...], bytes | str]:
    """The loaded, warmed-up model, its labels, and its skops export or why there is none."""
    with open(fd, "rb", closefd=True) as fh:
        runtime = load_from_file(m.artifact_format, fh, compile_forests, confined)
    pred = warm_up(runtime, len(m.signature.inputs))
    if not export:
        return runtime, pred.labels, "this sandbox does not export its models"
    try:
        return runtime, pred.labels, skops_export(runtime, max_bytes=MAX_EXPORT_BYTES)
    except ModelLoadError as exc:
        return runtime, pred.labels, str(exc)[:500]


def load_from_file(
    fmt: ArtifactFormat, fh: IO[bytes], compile_forests: bool, confined: bool = False
) -> ModelRuntime:
    """Unpickle (or joblib-load) an already-open artifact. Runs the tenant's code."""
    try:
        if fmt is ArtifactFormat.JOBLIB:
            import joblib

            obj = joblib.load(fh)
        elif fmt is ArtifactFormat.PICKLE:
            obj = pickle.load(fh)  # noqa: S301 - this process is the tenant's own sandbox
        else:
            raise ModelLoadError(f"{fmt.value} artifacts are not loaded in pickle sandboxes")
    except ModelLoadError:
        raise
    except Exception as exc:
        what = "joblib artifact" if fmt is ArtifactFormat.JOBLIB else "pickle artifact"
        message = f"cannot load {what}: {type(exc).__name__}: {exc}"
        if confined and isinstance(exc, ImportError):
            message += missing_module_hint(exc)
        raise ModelLoadError(message) from exc
    return SklearnRuntime(obj, compile_forests=compile_forests)


def _bind(socket_path: str) -> socket.socket:
    """Listen on the tenant's socket (owner-only: the front workers run as the server)."""
    Path(socket_path).unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(socket_path)
    Path(socket_path).chmod(0o600)
    sock.listen(128)
    return sock


async def _run(sandbox: Sandbox, listener: socket.socket, confined: bool) -> None:
    sandbox.channel.start()
    sandbox.start_artifact_reader()
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    loop.add_reader(listener.fileno(), sandbox.accept, listener)
    loader = asyncio.get_running_loop().create_task(sandbox.load_loop())
    retirer = asyncio.get_running_loop().create_task(sandbox.retire_loop())
    startup_heap.freeze()
    sandbox.channel.send({"op": "hello", "pid": os.getpid(), "confined": confined})
    await sandbox.stopped.wait()
    loader.cancel()
    retirer.cancel()
    loop.remove_reader(listener.fileno())
    listener.close()


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()


def main(argv: list[str] | None = None) -> None:
    """Entry point of a sandbox process; ``argv[1]`` is the launcher's JSON configuration."""
    cfg: dict[str, Any] = orjson.loads((argv or sys.argv)[1])
    logging.basicConfig(
        level=int(cfg["log_level"]),
        format=f"%(asctime)s sandbox[{os.getpid()}] %(levelname)s %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us via the pipe
    conn = Connection(int(cfg["control_fd"]))
    artifacts = socket.socket(fileno=int(cfg["artifacts_fd"]))
    listener = _bind(str(cfg["socket_path"]))
    confinement = Confinement.from_dict(cfg["confine"]) if cfg.get("confine") is not None else None
    refuse = ""
    if confinement is not None:
        preload(cfg.get("preload", ()))
        try:
            confine(confinement)
        except ConfinementError as exc:
            # Stay up so every pickle deployment of this tenant fails with the reason.
            logging.getLogger(__name__).error("pickle sandbox refuses to load anything: %s", exc)
            refuse = f"the pickle sandbox could not drop its privileges: {exc}"
    sandbox = Sandbox(
        str(cfg["tenant_id"]),
        conn,
        bool(cfg["compile_forests"]),
        artifacts,
        confined=confinement is not None,
        refuse=refuse,
        export=bool(cfg["export"]),
    )
    asyncio.run(_run(sandbox, listener, confinement is not None))
    if confinement is None:  # a confined sandbox cannot see the path; the supervisor cleans up
        _unlink_quietly(str(cfg["socket_path"]))
