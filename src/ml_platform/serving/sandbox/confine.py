"""Confining a tenant's pickle sandbox before it unpickles anything (issue 5).

Pickle and joblib files run arbitrary code when loaded. A sandbox process per tenant keeps
tenants' models apart in memory; this module keeps that code away from everything else on
the machine. It applies when the server runs as root and ``settings.job_user`` is set (the
same switch the local job executor uses for job code): the sandbox is started as root with
the server's interpreter, and then, *before it reads one byte of any artifact*:

1. :func:`preload` imports what loading a model legitimately needs (numpy, scipy, joblib,
   scikit-learn and every estimator module, xgboost, skops, pandas, plus
   ``settings.serving_sandbox_preload``). The interpreter and its libraries live where the
   job user may not read (e.g. under ``/root``), and after step 3 no path resolves anyway,
   so a pickle that needs a module that was not preloaded fails to load with
   ``ModuleNotFoundError`` and a hint (accepted: that is the price of the guarantee below).
2. :func:`confine` then, in this order:

   * ``unshare(CLONE_NEWNET)``: a network namespace of its own with no usable interface, so
     tenant code cannot reach the platform's PostgreSQL or Redis on 127.0.0.1 (nor anything
     else). Its Unix socket to the front workers was bound before and keeps working;
   * ``chroot`` into an empty directory owned by the job user, then ``chdir("/")``: no host
     path resolves any more: not the SQLite database, the credentials file, the artifact
     store, other tenants' job directories, nor ``/proc``;
   * ``setgroups([])``, ``setresgid``, ``setresuid`` to the job user. Irreversible, and
     checked: regaining uid 0 must fail or the sandbox exits;
   * umask 077, ``PR_SET_NO_NEW_PRIVS`` (no setuid program can hand rights back) and
     ``PR_SET_DUMPABLE=0`` (other processes of the job user, such as another tenant's
     sandbox or job, cannot ptrace this one or read its memory).

The namespace and chroot steps are defence in depth: should the kernel refuse them (a
container without CAP_SYS_ADMIN / CAP_SYS_CHROOT), a WARNING is logged and the sandbox goes
on with the privilege drop alone; files are then protected by their modes (the database
0600, artifacts inside 0700 directories). Failing to drop privileges is fatal.

Artifacts are opened by the supervisor and passed as open file descriptors (SCM_RIGHTS,
``sandbox_wire.send_artifact``), so the sandbox never needs read access to the artifact
store. The environment is built from scratch by the launcher (no server secrets) and the
process inherits no descriptor besides stdio and its sockets.

Residual risks, documented in the README: every sandbox (and every job) runs as the same job
user, so one tenant's pickle code may signal (e.g. kill) another tenant's sandbox (the
supervisor replaces it) or job; it cannot read their memory (not dumpable) nor files (not in
the chroot). Stdio is inherited for logging: if the server's stderr is a file opened for
reading too, the sandbox could read it back through that descriptor.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_CLONE_NEWNET = 0x40000000
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38

PRELOAD_MODULES: tuple[str, ...] = (
    # standard library pieces pickles and loaders reach for lazily
    "encodings.latin_1",
    "encodings.ascii",
    "encodings.utf_8",
    "encodings.unicode_escape",
    "_compat_pickle",
    "copyreg",
    "pickle",
    "collections",
    "collections.abc",
    "datetime",
    "decimal",
    "fractions",
    "functools",
    "numbers",
    "pathlib",
    "re",
    "uuid",
    "zlib",
    "gzip",
    "bz2",
    "lzma",
    # numpy (numpy.core.* is what pickles written by numpy 1.x name)
    "numpy",
    "numpy.core",
    "numpy.core.multiarray",
    "numpy.core.numeric",
    "numpy._core.multiarray",
    "numpy._core.numeric",
    "numpy.random",
    "numpy.random._pickle",
    "numpy.linalg",
    "numpy.fft",
    "numpy.ma",
    # the scientific stack scikit-learn models are made of
    "scipy",
    "scipy.sparse",
    "scipy.sparse.csgraph",
    "scipy.sparse.linalg",
    "scipy.special",
    "scipy.linalg",
    "scipy.stats",
    "scipy.optimize",
    "scipy.interpolate",
    "scipy.spatial",
    "scipy.spatial.distance",
    "threadpoolctl",
    "joblib",
    "joblib.numpy_pickle",
    "joblib.numpy_pickle_compat",
    "sklearn",
    "pandas",
    "xgboost",
    "xgboost.sklearn",
    "skops.io",
    "encodings.cp437",  # zipfile decodes member names with it: the sandbox's skops exports
)


@dataclass(frozen=True, slots=True)
class Confinement:
    """Who a sandbox becomes and where it is locked in (given by the supervisor)."""

    uid: int
    gid: int
    root: str  # an empty directory owned by uid, mode 0700

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "root": self.root}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Confinement:
        return cls(int(data["uid"]), int(data["gid"]), str(data["root"]))


class ConfinementError(RuntimeError):
    """Privileges could not be dropped: the sandbox must not load anything."""


def preload(extra: Iterable[str] = ()) -> list[str]:
    """Import what model loading needs while the interpreter's files are still readable.

    Returns the modules that could not be imported (optional packages that are not
    installed are expected; an administrator's ``extra`` module missing is logged).
    """
    started = time.perf_counter()
    missing: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy.core.* deprecation and friends
        for name in PRELOAD_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                missing.append(name)
        _import_sklearn_estimators()
        _warm_caches()
        for name in extra:
            try:
                importlib.import_module(name)
            except Exception as exc:
                missing.append(name)
                logger.warning("sandbox preload: cannot import %r: %s", name, exc)
    logger.debug(
        "sandbox preloaded modules in %.2fs (not available: %s)",
        time.perf_counter() - started,
        ", ".join(missing) or "none",
    )
    return missing


def _import_sklearn_estimators() -> None:
    """Import every public scikit-learn module that defines an estimator."""
    try:
        from sklearn.utils.discovery import all_estimators
    except ImportError:
        return
    try:
        all_estimators()
    except Exception as exc:  # a broken optional dependency must not stop the sandbox
        logger.warning("sandbox preload: scikit-learn estimator discovery failed: %s", exc)


def _warm_caches() -> None:
    """Answers libraries compute once from /proc or a subprocess, unavailable once confined."""
    with contextlib.suppress(Exception):
        import joblib

        # loky caches the physical core count (scikit-learn's OpenMP estimators ask for it).
        joblib.cpu_count(only_physical_cores=True)
    from ml_platform.serving.runtimes import forest_kernel

    # numba imports lazily and reads its cache from the source tree: compile (or load) the
    # forest kernel now, or confined forests fall back to scikit-learn's own predict.
    forest_kernel.available()


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _unshare_network(libc: Any) -> bool:
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        logger.warning(
            "pickle sandbox keeps network access: unshare(CLONE_NEWNET) failed: %s",
            os.strerror(err),
        )
        return False
    return True


def _chroot(root: str) -> bool:
    try:
        os.chroot(root)
    except OSError as exc:
        logger.warning("pickle sandbox is not chrooted (%s); it relies on file modes alone", exc)
        os.chdir(root)
        return False
    os.chdir("/")
    return True


def confine(c: Confinement) -> None:
    """Lock this process in and become ``c.uid`` for good. Raises ConfinementError."""
    if os.geteuid() != 0:
        raise ConfinementError("confining a sandbox needs root")
    libc = _libc()
    _unshare_network(libc)
    _chroot(c.root)
    try:
        os.setgroups([])
        os.setresgid(c.gid, c.gid, c.gid)
        os.setresuid(c.uid, c.uid, c.uid)
    except OSError as exc:
        raise ConfinementError(f"cannot drop privileges to uid {c.uid}: {exc}") from exc
    if os.getresuid() != (c.uid, c.uid, c.uid) or os.getresgid() != (c.gid, c.gid, c.gid):
        raise ConfinementError("privilege drop did not take effect")
    if os.getgroups() not in ([], [c.gid]):
        raise ConfinementError("supplementary groups survived the privilege drop")
    if c.uid != 0:
        regained = False
        with contextlib.suppress(OSError):
            os.setuid(0)
            regained = True
        if regained:
            raise ConfinementError("the sandbox could regain root after dropping it")
    os.umask(0o077)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        logger.warning("pickle sandbox: PR_SET_NO_NEW_PRIVS failed")
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        logger.warning("pickle sandbox: PR_SET_DUMPABLE=0 failed")


def missing_module_hint(exc: BaseException) -> str:
    """The explanation appended when a confined sandbox cannot import what a pickle names."""
    name = getattr(exc, "name", None) or "?"
    return (
        f" (pickle sandboxes import only modules loaded before they drop privileges; "
        f"{name!r} was not: an administrator can add it to ML_PLATFORM_SERVING_SANDBOX_PRELOAD)"
    )
