"""Signature inference: load an artifact in a limited subprocess and read what it expects.

The artifact is never loaded in the API process. A child interpreter (``_inspect_worker``)
gets the file on stdin, caps its own address space and CPU time before importing anything,
and prints JSON. The parent also enforces a wall-clock timeout and kills the child's whole
process group on expiry. When the server runs as root with ``job_user`` configured, the
child runs as that unprivileged user, with an environment built from scratch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import subprocess
import sys
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
        self._python = python or sys.executable
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

    def can_load(self, fmt: ModelFormat) -> bool:
        return self.allow_pickle or fmt not in (ModelFormat.JOBLIB, ModelFormat.PICKLE)

    def inspect(self, path: Path, fmt: ModelFormat) -> Inspection:
        """Load ``path`` as ``fmt`` in a child process; ``InvalidArgument`` when it is no model."""
        argv = [
            self._python,
            "-I",
            str(WORKER),
            "--format",
            fmt.value,
            "--memory-mb",
            str(self.memory_mb),
            "--cpu-seconds",
            str(max(1, int(self.timeout_seconds))),
        ]
        env = {
            "PATH": _SAFE_PATH,
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "HOME": "/tmp",
        }
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        with open(path, "rb") as stdin:
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd="/",
                    start_new_session=True,
                    close_fds=True,
                    **kwargs,
                )
            except OSError as exc:
                logger.error("cannot start the signature inference process: %s", exc)
                raise Unavailable(
                    "signature inference is unavailable on this server (cannot start its "
                    f"interpreter: {exc.strerror}); give the signature explicitly or ask an "
                    "operator to check ML_PLATFORM_JOB_PYTHON / ML_PLATFORM_JOB_USER"
                ) from exc
            try:
                stdout, stderr = process.communicate(timeout=self.timeout_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.communicate()
                raise not_a_model(
                    f"loading the artifact took longer than {self.timeout_seconds:g}s; "
                    "give the signature explicitly or raise the inference timeout"
                ) from None
        return self._parse(process.returncode, stdout[:_MAX_OUTPUT], stderr, fmt)

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


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
