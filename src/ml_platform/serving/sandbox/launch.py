"""Supervisor side of a tenant sandbox: who it runs as, how it starts, what it is handed.

* :func:`sandbox_identity` decides once, at startup, whether sandboxes are confined: only
  when the server is root and ``settings.job_user`` names an existing user (the job
  executor's rule). Otherwise it logs one WARNING: sandboxes run with the server's rights.
* :func:`prepare_sandbox` builds a :class:`SandboxProcess`: the server's interpreter run as
  ``python -P -c 'from ml_platform.serving.sandbox.child import main; main()' <json>`` with an
  environment built from scratch (no ``ML_PLATFORM_*`` secrets, no credentials), stdin on
  /dev/null and only its two sockets passed (``close_fds``): the JSON control pipe and the
  artifact socket. See ``sandbox_confine`` for what the confined process does.
* :meth:`SandboxProcess.send_artifacts` opens each pickle artifact *here*, as the server,
  and passes the open descriptor, so a confined sandbox never needs the artifact store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import orjson

from ml_platform.config import Settings
from ml_platform.serving.models import ServedModel
from ml_platform.serving.sandbox import wire as sandbox_wire
from ml_platform.serving.sandbox.confine import Confinement

logger = logging.getLogger(__name__)

_ENV_PASSTHROUGH = (
    "LANG",
    "LC_ALL",
    "TZ",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_ENTRY = "from ml_platform.serving.sandbox.child import main; main()"


@dataclass(frozen=True, slots=True)
class SandboxIdentity:
    """The unprivileged OS user confined sandboxes become."""

    user: str
    uid: int
    gid: int


def sandbox_identity(settings: Settings) -> SandboxIdentity | None:
    """The user pickle sandboxes drop to, or None (then they keep the server's rights).

    Raises ValueError when the server is root and ``job_user`` does not exist: silently
    serving tenant pickles as root would be worse than refusing to start.
    """
    user = settings.job_user
    euid = os.geteuid()
    if euid == 0 and user:
        try:
            entry = pwd.getpwnam(user)
        except KeyError as exc:
            raise ValueError(f"job_user {user!r} does not exist on this machine") from exc
        if entry.pw_uid == 0:
            raise ValueError(f"job_user {user!r} is root: it cannot confine pickle sandboxes")
        return SandboxIdentity(user, entry.pw_uid, entry.pw_gid)
    if settings.allow_pickle:
        why = (
            f"job_user={user!r} is ignored because the server is not root"
            if user
            else "ML_PLATFORM_JOB_USER is not set"
        )
        logger.warning(
            "pickle sandboxes run with the server's rights (uid %d): %s, so a tenant's "
            "pickle/joblib model can read whatever this server can (its database, keys and "
            "other tenants' artifacts); run the server as root with ML_PLATFORM_JOB_USER "
            "set to confine them",
            euid,
            why,
        )
    return None


class SandboxProcess:
    """A sandbox subprocess, with the slice of ``multiprocessing.Process`` the supervisor uses."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        child_socks: list[socket.socket],
        artifacts: socket.socket,
    ) -> None:
        self._argv = argv
        self._env = env
        self._child_socks = child_socks
        self._artifacts = artifacts
        self._artifacts.setblocking(False)
        self._sent: set[str] = set()
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._popen = subprocess.Popen(
            self._argv,
            env=self._env,
            stdin=subprocess.DEVNULL,
            close_fds=True,
            pass_fds=[s.fileno() for s in self._child_socks],
        )

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def exitcode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def kill(self) -> None:
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout)
            if self._popen.returncode is not None:
                self._close_artifacts()

    def _close_artifacts(self) -> None:
        with contextlib.suppress(OSError):
            self._artifacts.close()

    def send_artifacts(self, models: Iterable[ServedModel]) -> None:
        """Pass an open descriptor for each model not passed yet (before its ``desired``)."""
        for m in models:
            if m.key in self._sent:
                continue
            try:
                fd = _open_artifact(m.artifact_path)
            except OSError as exc:
                reason = f"cannot open the model artifact: {exc.strerror or exc}"
                logger.error("sandbox artifact %s: %s", m.key, reason)
                fd, error = None, reason
            else:
                error = ""
            try:
                sandbox_wire.send_artifact(self._artifacts, m.key, fd, error)
            except (BlockingIOError, InterruptedError):
                logger.warning("sandbox artifact socket full; %s is passed later", m.key)
                continue
            except OSError:
                return  # the sandbox is gone; the supervisor replaces it
            finally:
                if fd is not None:
                    os.close(fd)
            self._sent.add(m.key)


class _ChildEnds:
    """The child's socket ends, closed in the supervisor once the child has them."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self._socks = socks

    def close(self) -> None:
        for s in self._socks:
            s.close()


def _open_artifact(path: str) -> int:
    """Open a regular file read-only without blocking the supervisor on a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _private_root(run_dir: str, socket_path: str, identity: SandboxIdentity) -> str:
    """A fresh empty directory only the job user owns: the confined sandbox's ``/``."""
    root = Path(run_dir) / ("root-" + Path(socket_path).stem)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o700)
    os.chown(root, identity.uid, identity.gid)
    return str(root)


def _environment(confined: bool) -> dict[str, str]:
    """Built from scratch: nothing of the server's environment but locale and thread knobs."""
    keep = _ENV_PASSTHROUGH if confined else (*_ENV_PASSTHROUGH, "HOME", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{_SAFE_PATH}",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if confined:
        env.update({"HOME": "/", "TMPDIR": "/"})  # the private root, once chrooted
    return env


def prepare_sandbox(
    tenant_id: str,
    run_dir: str,
    settings: Settings,
    identity: SandboxIdentity | None,
    log_level: int = logging.WARNING,
) -> tuple[SandboxProcess, Connection, _ChildEnds]:
    """A not yet started sandbox for ``tenant_id``, the supervisor's control end, child ends."""
    socket_path = sandbox_wire.socket_path(run_dir, tenant_id)
    control_parent, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    art_parent, art_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    confine: Confinement | None = None
    if identity is not None:
        confine = Confinement(
            identity.uid, identity.gid, _private_root(run_dir, socket_path, identity)
        )
    config = {
        "tenant_id": tenant_id,
        "socket_path": socket_path,
        "control_fd": control_child.fileno(),
        "artifacts_fd": art_child.fileno(),
        "log_level": log_level,
        "compile_forests": bool(settings.serving_compile_forests),
        "export": bool(settings.serving_sandbox_export),
        "confine": None if confine is None else confine.to_dict(),
        "preload": list(getattr(settings, "serving_sandbox_preload", ())),
    }
    argv = [sys.executable, "-P", "-c", _ENTRY, orjson.dumps(config).decode()]
    env = _environment(confine is not None)
    proc = SandboxProcess(argv, env, [control_child, art_child], art_parent)
    parent = Connection(control_parent.detach())
    return proc, parent, _ChildEnds([control_child, art_child])
