"""Signature inference: load an artifact in a limited process and read what it expects.

The artifact is never loaded in the API process. A fork server (``_inspect_worker``, its
own interpreter started on the first inspection, with an environment built from scratch and,
when the server runs as root with ``job_user`` configured, as that unprivileged user) has the
model libraries imported and forks a fresh loader per artifact: the loader caps its address
space and CPU time, reads the file from a descriptor passed to it and prints JSON. The
parent enforces a wall-clock timeout and kills the loader's whole process group on expiry.
Loading a model's libraries once instead of per upload takes a model upload from ~1.3 s of
imports to a fork.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_platform.core.errors import FieldViolation, InvalidArgument, Unavailable
from ml_platform.schemas.models import ModelFormat

logger = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("_inspect_worker.py")
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_MAX_OUTPUT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Inspection:
    """What loading the artifact revealed. ``input_features`` is empty when unknown."""

    framework: str
    estimator: str
    input_features: list[dict[str, str]] = field(default_factory=list)
    output_labels: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def has_signature(self) -> bool:
        return bool(self.input_features)


def not_a_model(message: str) -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation("artifact", message)])


class SignatureInspector:
    """Runs the inspection worker with a time and memory limit."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 60.0,
        memory_mb: int = 2048,
        job_user: str | None = None,
        python: str | None = None,
        allow_pickle: bool = True,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.allow_pickle = allow_pickle
        python = python or sys.executable
        self._user: pwd.struct_passwd | None = None
        if job_user:
            try:
                self._user = pwd.getpwnam(job_user)
            except KeyError as exc:
                raise ValueError(f"job_user {job_user!r} does not exist on this machine") from exc
            if os.geteuid() != 0:
                logger.warning(
                    "job_user=%s is ignored for signature inference: the server is not root",
                    job_user,
                )
                self._user = None
        self._server = _ForkServer(python, self._user)  # its process starts on first use

    def can_load(self, fmt: ModelFormat) -> bool:
        return self.allow_pickle or fmt not in (ModelFormat.JOBLIB, ModelFormat.PICKLE)

    def inspect(self, path: Path, fmt: ModelFormat) -> Inspection:
        """Load ``path`` as ``fmt`` in a loader process; ``InvalidArgument`` when it is no
        model, ``Unavailable`` when no loader can be started."""
        request = {
            "format": fmt.value,
            "memory_mb": self.memory_mb,
            "cpu_seconds": max(1, int(self.timeout_seconds)),
        }
        ends = [os.pipe() for _ in range(3)]  # stdout, stderr, status: (read, write) each
        try:
            with open(path, "rb") as artifact:
                self._server.fork(request, [artifact.fileno(), *(w for _, w in ends)])
        finally:
            for _, write in ends:
                os.close(write)
        with contextlib.ExitStack() as stack:
            for read, _ in ends:
                stack.callback(os.close, read)
            returncode, stdout, stderr = self._collect(*(read for read, _ in ends))
        return self._parse(returncode, stdout[:_MAX_OUTPUT], stderr, fmt)

    def _collect(self, stdout: int, stderr: int, status: int) -> tuple[int, bytes, bytes]:
        """The loader's exit code, stdout (kept up to ``_MAX_OUTPUT``) and stderr tail, read
        until it exits; its process group is killed at ``timeout_seconds`` (counted from its
        start: the fork server's first start, its imports, is not the artifact's time)."""
        outputs = {stdout: bytearray(), stderr: bytearray(), status: bytearray()}
        group: int | None = None
        deadline = time.monotonic() + _START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            for fd in outputs:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    if group is None:
                        raise Unavailable(
                            "signature inference is unavailable on this server (its loader did "
                            f"not start within {_START_TIMEOUT:g}s); try again, or give the "
                            "signature explicitly"
                        )
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(group, signal.SIGKILL)
                    raise not_a_model(
                        f"loading the artifact took longer than {self.timeout_seconds:g}s; "
                        "give the signature explicitly or raise the inference timeout"
                    )
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    kept = outputs[key.fd]
                    if len(kept) < _MAX_OUTPUT:  # drained either way: a flood fills no memory
                        kept += chunk[: _MAX_OUTPUT - len(kept)]
                if group is None and b"\n" in outputs[status]:
                    group = _number(outputs[status].split(b"\n")[0])
                    if group is None or group <= 1:  # never signal what is not its group
                        raise not_a_model("the loader process reported no process id")
                    deadline = time.monotonic() + self.timeout_seconds
        lines = outputs[status].split(b"\n")
        # no exit code: the process between server and loader died (killed from outside)
        code = _number(lines[1]) if len(lines) > 2 else None
        returncode = -signal.SIGKILL if code is None else code
        return returncode, bytes(outputs[stdout]), bytes(outputs[stderr])

    def _parse(self, returncode: int, stdout: bytes, stderr: bytes, fmt: ModelFormat) -> Inspection:
        try:
            result = json.loads(stdout) if stdout else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            logger.warning("signature inference failed (exit %s): %s", returncode, " | ".join(tail))
            if returncode < 0:
                reason = _signal_reason(-returncode, self.memory_mb)
            elif any("MemoryError" in line for line in tail):
                reason = f"it exceeded the {self.memory_mb} MB memory limit"
            else:
                reason = f"the loader exited with status {returncode}"
            raise not_a_model(f"could not load the artifact as {fmt.value}: {reason}")
        if not result.get("ok"):
            raise not_a_model(str(result.get("error") or "the artifact is not a model"))
        details = {k: v for k, v in result.items() if k not in _KNOWN_KEYS}
        return Inspection(
            framework=str(result.get("framework") or ""),
            estimator=str(result.get("estimator") or ""),
            input_features=list(result.get("input_features") or []),
            output_labels=[str(x) for x in result.get("output_labels") or []],
            details=details,
        )


_KNOWN_KEYS = frozenset({"ok", "framework", "estimator", "input_features", "output_labels"})


def _signal_reason(signum: int, memory_mb: int) -> str:
    if signum == signal.SIGXCPU:
        return "it used up its CPU time limit"
    if signum in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT):
        return f"the loader crashed ({signal.Signals(signum).name}; memory limit {memory_mb} MB)"
    return f"the loader was killed by {signal.Signals(signum).name}"


def _number(line: bytes | bytearray) -> int | None:
    """A number the loader's parent wrote to the status pipe, or None (it is the only
    writer, but nothing read from a pipe is trusted to parse)."""
    try:
        return int(line)
    except ValueError:
        return None


class _ForkServer:
    """The ``_inspect_worker`` fork server: started on first use, restarted when it is gone
    (a request it can no longer receive), stopped when this object is collected (its end of
    the socket closes and the server's ``recv`` returns nothing)."""

    def __init__(self, python: str, user: pwd.struct_passwd | None) -> None:
        self._python = python
        self._user = user
        self._lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def fork(self, request: dict[str, Any], fds: list[int]) -> None:
        message = json.dumps(request).encode()
        with self._lock:
            for attempt in (1, 2):
                channel = self._channel if self._channel is not None else self._start()
                try:
                    socket.send_fds(channel, [message], fds)
                    return
                except OSError:
                    self._stop()
                    if attempt == 2:
                        raise Unavailable(
                            "signature inference is unavailable on this server (its loader "
                            "process cannot be reached); try again, or give the signature "
                            "explicitly"
                        ) from None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        try:
            self._process = subprocess.Popen(
                [self._python, "-I", str(WORKER), "--fork-server"],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                env=_LOADER_ENV,
                cwd="/",
                start_new_session=True,
                close_fds=True,
                **kwargs,
            )
        except OSError as exc:
            ours.close()
            logger.error("cannot start the signature inference process: %s", exc)
            raise Unavailable(
                "signature inference is unavailable on this server (cannot start its "
                f"interpreter: {exc.strerror}); give the signature explicitly or ask an "
                "operator to check ML_PLATFORM_JOB_PYTHON / ML_PLATFORM_JOB_USER"
            ) from exc
        finally:
            theirs.close()
        self._channel = ours
        return ours

    def _stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
            self._process = None

    def __del__(self) -> None:
        if self._channel is not None:
            self._channel.close()


_START_TIMEOUT = 120.0  # the fork server's first start imports the model libraries
_LOADER_ENV = {
    "PATH": _SAFE_PATH,
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HOME": "/tmp",
}
