"""The serving supervisor: owns the seams, spawns and replaces worker processes.

* N front workers share the gRPC and REST ports (SO_REUSEPORT). Each loads safe formats
  itself and reaches pickle-based models through their tenant's sandbox.
* One sandbox process per tenant with pickle-based deployments (never shared).
* The supervisor polls the ``DeploymentSource``, pushes the desired set to every child,
  aggregates load reports into the ``DeploymentStatusSink``, answers authentication
  requests (workers cache them), and replaces any child that dies.
* A child that dies, or stays stuck, while loading a model blames that model: the model's
  deployment fails with the reason and is never loaded again; other deployments keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from ml_platform.config import Settings
from ml_platform.core.errors import Unauthenticated
from ml_platform.serving.control import ControlChannel, Message
from ml_platform.serving.models import DeploymentSnapshot, DeploymentStatus, LoadState, ServedModel
from ml_platform.serving.plane.metrics import MultiprocDir
from ml_platform.serving.sandbox.launch import SandboxProcess, prepare_sandbox, sandbox_identity
from ml_platform.serving.seams import Authenticator, DeploymentSource, DeploymentStatusSink

logger = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
_HANG_GRACE_SECONDS = 5.0
_RESTART_BACKOFF_SECONDS = 0.5


@dataclass(eq=False)
class Child:
    kind: str  # "front" or "sandbox"
    name: str  # slot number or tenant id
    process: BaseProcess | SandboxProcess
    channel: ControlChannel
    pid: int = 0
    ready: bool = False
    loading: dict[str, float] = field(default_factory=dict)  # model key -> monotonic start
    states: dict[str, tuple[str, str, int]] = field(
        default_factory=dict
    )  # key -> (state, reason, pid)
    exited: bool = False


class PortUnavailable(OSError):
    """A serving port cannot be bound (taken by another process, or not this host's)."""


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) so the port stays ours while workers bind it too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(exc.errno, f"cannot bind {host}:{port}: {exc.strerror}") from None
    return sock, sock.getsockname()[1]


class _Closable(Protocol):
    def close(self) -> None: ...


class ServingSupervisor:
    def __init__(
        self,
        settings: Settings,
        source: DeploymentSource,
        status_sink: DeploymentStatusSink,
        authenticator: Authenticator,
    ) -> None:
        self.settings = settings
        self._source = source
        self._sink = status_sink
        self._authenticator = authenticator
        # Whether pickle sandboxes drop to job_user (else: one WARNING, server's rights).
        self._sandbox_identity = sandbox_identity(settings)
        self._run_dir = tempfile.mkdtemp(prefix="mlp-serving-")
        Path(self._run_dir).chmod(0o700)
        self._fronts: dict[str, Child] = {}
        self._sandboxes: dict[str, Child] = {}
        self._snapshot = DeploymentSnapshot(revision="")
        self._blamed: dict[str, str] = {}
        self._reported: dict[str, tuple[str, str]] = {}
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="serving-seams")
        self._sink_pool = ThreadPoolExecutor(1, thread_name_prefix="serving-status")
        self._reserved: list[socket.socket] = []
        self.grpc_port = 0
        self.rest_port = 0
        self._stopping = False
        self.started = asyncio.Event()
        self._metrics_dir: MultiprocDir | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        try:
            # a port taken fails the start (ServingServer.start raises it), nothing left bound
            grpc_sock, self.grpc_port = reserve_port(s.grpc_host, s.grpc_port)
            self._reserved.append(grpc_sock)
            rest_sock, self.rest_port = reserve_port(s.grpc_host, s.serving_rest_port)
            self._reserved.append(rest_sock)
            # before any worker is spawned: workers inherit it and write their metrics there
            self._metrics_dir = MultiprocDir(s.data_dir)
            self._snapshot = await loop.run_in_executor(self._pool, self._source.snapshot)
            for slot in range(s.serving_workers):
                self._spawn_front(str(slot))
            self._sync_sandboxes()
            self.started.set()
            next_poll = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + s.serving_source_poll_seconds
                    await self._poll_source()
                self._check_hangs()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._stopping = True
        children = [*self._fronts.values(), *self._sandboxes.values()]
        for child in children:
            child.channel.send({"op": "stop"})
        deadline = time.monotonic() + 5.0
        for child in children:
            while child.process.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if child.process.is_alive():
                child.process.kill()
            child.process.join(1)
            child.channel.close()
        for sock in self._reserved:
            sock.close()
        self._pool.shutdown(wait=False)
        self._sink_pool.shutdown(wait=True)
        shutil.rmtree(self._run_dir, ignore_errors=True)
        if self._metrics_dir is not None:
            self._metrics_dir.close()

    # -- children --------------------------------------------------------------------------------

    def _spawn_front(self, slot: str) -> None:
        from ml_platform.serving.workers.worker import worker_main

        parent, child_end = _SPAWN.Pipe()
        proc = _SPAWN.Process(
            target=worker_main,
            args=(self.settings, child_end, self._run_dir, self.grpc_port, self.rest_port),
            name=f"mlp-serving-worker-{slot}",
            daemon=True,
        )
        self._start_child("front", slot, proc, parent, child_end, self._fronts)

    def _spawn_sandbox(self, tenant_id: str) -> None:
        proc, parent, child_end = prepare_sandbox(
            tenant_id, self._run_dir, self.settings, self._sandbox_identity
        )
        self._start_child("sandbox", tenant_id, proc, parent, child_end, self._sandboxes)

    def _start_child(
        self,
        kind: str,
        name: str,
        proc: BaseProcess | SandboxProcess,
        parent: Connection,
        child_end: _Closable,
        registry: dict[str, Child],
    ) -> None:
        holder: list[Child] = []
        channel = ControlChannel(
            parent,
            lambda msg: self._on_child_message(holder[0], msg),
            lambda: self._on_child_exit(holder[0]),
        )
        child = Child(kind, name, proc, channel)
        holder.append(child)
        proc.start()
        child_end.close()
        registry[name] = child
        channel.start()

    def _on_child_exit(self, child: Child) -> None:
        if child.exited:
            return
        child.exited = True
        child.process.join(0.5)
        code = child.process.exitcode
        if child.kind == "front" and self._metrics_dir is not None:
            self._metrics_dir.process_exited(child.pid)
        for key in list(child.loading):
            reason = f"the model crashed its serving process while loading (exit code {code})"
            logger.error("%s %s died while loading %s: %s", child.kind, child.name, key, reason)
            self._blame(key, reason)
        registry = self._fronts if child.kind == "front" else self._sandboxes
        if registry.get(child.name) is child:
            del registry[child.name]
        if self._stopping:
            return
        logger.warning(
            "serving %s %s (pid %s) exited with %s; replacing it",
            child.kind,
            child.name,
            child.pid,
            code,
        )
        asyncio.get_running_loop().call_later(_RESTART_BACKOFF_SECONDS, self._respawn, child)

    def _respawn(self, child: Child) -> None:
        if self._stopping:
            return
        if child.kind == "front":
            if child.name not in self._fronts:
                self._spawn_front(child.name)
        else:
            self._sync_sandboxes()
        self._aggregate_all()

    def _check_hangs(self) -> None:
        limit = self.settings.serving_model_load_timeout_seconds + _HANG_GRACE_SECONDS
        now = time.monotonic()
        for child in [*self._fronts.values(), *self._sandboxes.values()]:
            for key, started in list(child.loading.items()):
                if now - started > limit:
                    reason = (
                        "the model hung its serving process while loading "
                        f"(no answer after {limit:.0f}s); "
                        "the process was restarted without it"
                    )
                    logger.error(
                        "%s %s stuck loading %s; killing pid %s",
                        child.kind,
                        child.name,
                        key,
                        child.pid,
                    )
                    self._blame(key, reason)
                    child.loading.pop(key, None)
                    if child.process.is_alive():
                        child.process.kill()

    def _blame(self, key: str, reason: str) -> None:
        self._blamed[key] = reason
        self._push_desired()
        self._aggregate_all()

    # -- messages --------------------------------------------------------------------------------

    def _on_child_message(self, child: Child, msg: Message) -> None:
        op = msg.get("op")
        if op == "hello":
            child.pid = int(msg.get("pid", 0))
            child.ready = True
            self._send_desired(child)
        elif op == "status":
            key, state = str(msg.get("key", "")), str(msg.get("state", ""))
            if state == LoadState.LOADING.value:
                # Fronts only wait on sandboxes for pickle models: the sandbox is what may hang.
                if child.kind == "sandbox" or not self._runs_code(key):
                    child.loading[key] = time.monotonic()
            else:
                child.loading.pop(key, None)
            child.states[key] = (state, str(msg.get("reason", ""))[:1000], int(msg.get("pid", 0)))
            self._aggregate(key)
        elif op == "auth" and child.kind == "front":
            asyncio.get_running_loop().create_task(self._answer_auth(child, msg))

    def _runs_code(self, key: str) -> bool:
        m = self._model_by_key().get(key)
        return m is not None and m.artifact_format.runs_code_on_load

    async def _answer_auth(self, child: Child, msg: Message) -> None:
        loop = asyncio.get_running_loop()
        reply: Message = {"op": "auth", "id": msg.get("id")}
        api_key, bearer = msg.get("api_key"), msg.get("bearer")
        try:
            principal = await loop.run_in_executor(
                self._pool, self._authenticator.authenticate, api_key, bearer
            )
            reply.update(ok=True, tenant_id=principal.tenant_id, name=principal.name)
        except Unauthenticated as exc:
            reply.update(ok=False, code="UNAUTHENTICATED", message=exc.message)
        except Exception:
            logger.exception("authenticator failed")
            reply.update(ok=False, code="UNAVAILABLE")
        child.channel.send(reply)

    # -- desired state ---------------------------------------------------------------------------

    async def _poll_source(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            snap = await loop.run_in_executor(self._pool, self._source.snapshot)
        except Exception:
            logger.exception("deployment source failed; keeping the current set")
            return
        if snap.revision == self._snapshot.revision:
            return
        old = self._model_by_key()
        self._snapshot = snap
        new = self._model_by_key()
        for key, m in old.items():
            if key not in new and not any(
                n.tenant_id == m.tenant_id and n.deployment == m.deployment for n in new.values()
            ):
                self._report(m, LoadState.UNLOADED, "")
        self._sync_sandboxes()
        self._push_desired()

    def _model_by_key(self) -> dict[str, ServedModel]:
        return {m.key: m for m in self._snapshot.models}

    def _pickle_tenants(self) -> set[str]:
        if not self.settings.allow_pickle:
            return set()
        return {m.tenant_id for m in self._snapshot.models if m.artifact_format.runs_code_on_load}

    def _sync_sandboxes(self) -> None:
        wanted = self._pickle_tenants()
        for tenant in wanted - set(self._sandboxes):
            self._spawn_sandbox(tenant)
        for tenant in set(self._sandboxes) - wanted:
            self._sandboxes[tenant].channel.send({"op": "stop"})

    def _push_desired(self) -> None:
        for child in [*self._fronts.values(), *self._sandboxes.values()]:
            if child.ready:
                self._send_desired(child)

    def _send_desired(self, child: Child) -> None:
        models = self._snapshot.models
        if child.kind == "sandbox":
            models = tuple(
                m
                for m in models
                if m.tenant_id == child.name
                and m.artifact_format.runs_code_on_load
                and m.key not in self._blamed
            )
            if isinstance(child.process, SandboxProcess):
                child.process.send_artifacts(models)  # descriptors go before the message
        child.channel.send(
            {
                "op": "desired",
                "revision": self._snapshot.revision,
                "models": [m.to_dict() for m in models],
                "blamed": self._blamed,
            }
        )

    # -- status ----------------------------------------------------------------------------------

    def _aggregate_all(self) -> None:
        for key in self._model_by_key():
            self._aggregate(key)

    def _aggregate(self, key: str) -> None:
        m = self._model_by_key().get(key)
        if m is None:
            return
        if key in self._blamed:
            self._report(m, LoadState.FAILED, self._blamed[key])
            return
        expected = [c for c in self._fronts.values() if not c.exited]
        if m.artifact_format.runs_code_on_load and self.settings.allow_pickle:
            expected += [
                c for c in self._sandboxes.values() if c.name == m.tenant_id and not c.exited
            ]
        states = [c.states.get(key) for c in expected]
        failed = [s for s in states if s is not None and s[0] == LoadState.FAILED.value]
        if failed:
            self._report(m, LoadState.FAILED, failed[0][1])
        elif expected and all(s is not None and s[0] == LoadState.READY.value for s in states):
            pids = tuple(sorted({s[2] for s in states if s is not None}))
            self._report(m, LoadState.READY, "", pids)
        elif any(s is not None for s in states):
            self._report(m, LoadState.LOADING, "")

    def _report(
        self, m: ServedModel, state: LoadState, reason: str, pids: tuple[int, ...] = ()
    ) -> None:
        if self._reported.get(m.key) == (state.value, reason):
            return
        self._reported[m.key] = (state.value, reason)
        status = DeploymentStatus(m.tenant_id, m.deployment, m.version, state, reason, pids)
        self._sink_pool.submit(self._safe_report, status)

    def _safe_report(self, status: DeploymentStatus) -> None:
        try:
            self._sink.report(status)
        except Exception:
            logger.exception("deployment status sink failed")
