"""Load one model artifact and print its signature as JSON.

Runs as its own interpreter (``python -I this_file --fork-server``), never inside the API
process: loading a pickle runs arbitrary code, and loading anything can exhaust memory.

The interpreter imports the libraries models need (NumPy, scikit-learn, skops, XGBoost,
ONNX Runtime: trusted code, before any artifact exists) and then only forks. For each
request the parent sends over the socket on stdin (the format, the limits, and four file
descriptors: the artifact, stdout, stderr and a status pipe) it forks a fresh process that
starts a session of its own, writes its pid to the status pipe and forks the loader. The
loader applies the limits, reads the artifact from its stdin (an inherited descriptor, so an
unprivileged user needs no access to the platform's files), prints one JSON object and
exits; its parent writes the loader's exit code to the status pipe. No artifact is ever
read by the fork server itself, and every loader is a new process: one artifact cannot
touch the next.

Standard library only until ``--fork-server`` preloads; ``ml_platform`` is never imported.
Output: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import resource
import signal
import socket
import sys
import traceback
from typing import IO, Any

SAFE_SKOPS_PREFIXES = ("sklearn.", "numpy.", "scipy.", "xgboost.", "builtins.", "collections.")


class NotAModel(Exception):
    pass


# what a loader usually needs, imported once by the fork server (absent ones are skipped)
PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PRELOAD = ("numpy", "scipy", "pandas", "joblib", "sklearn", "skops.io", "xgboost", "onnxruntime")


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    """``memory_mb`` more address space than the loader holds now (the preloaded libraries),
    ``cpu_seconds`` of CPU, no core file."""
    if memory_mb > 0:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * resource.getpagesize()
        limit = mapped + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _dtype_name(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "f")
    if kind == "b":
        return "bool"
    if kind in "iu":
        return "int64"
    if kind in "OUS":
        return "string"
    return "float64"


def _sklearn_like(model: Any) -> dict[str, Any]:
    cls = type(model)
    estimator = f"{cls.__module__}.{cls.__qualname__}"
    framework = "xgboost" if cls.__module__.startswith("xgboost") else "sklearn"
    names = getattr(model, "feature_names_in_", None)
    count = getattr(model, "n_features_in_", None)
    if names is None and count is None:
        if not hasattr(model, "predict"):
            raise NotAModel(
                f"the artifact holds a {estimator} object, not a scikit-learn or XGBoost model"
            )
        raise NotAModel(
            f"{estimator} has no n_features_in_ or feature_names_in_: is it fitted? "
            "Give the signature explicitly"
        )
    if names is not None:
        features = [{"name": str(n), "dtype": "float64"} for n in list(names)]
    else:
        features = [{"name": f"f{i}", "dtype": "float64"} for i in range(int(count or 0))]
    if framework == "xgboost":
        for feature in features:
            feature["dtype"] = "float32"
    classes = getattr(model, "classes_", None)
    labels = [str(c) for c in list(classes)] if classes is not None else []
    return {
        "framework": framework,
        "estimator": estimator,
        "input_features": features,
        "output_labels": labels,
    }


_XGB_TYPES = {"int": "int64", "i": "bool", "float": "float32", "q": "float32"}


def _booster(data: bytes) -> dict[str, Any]:
    import xgboost

    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgboost.core.XGBoostError as exc:
        raise NotAModel(f"not a valid XGBoost model: {str(exc).splitlines()[0]}") from exc
    names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
    types = booster.feature_types or ["float"] * len(names)
    features = [
        {"name": n, "dtype": _XGB_TYPES.get(t, "float32")}
        for n, t in zip(names, types, strict=False)
    ]
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    objective = str(learner.get("objective", {}).get("name", ""))
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    if objective.startswith("multi:"):
        labels = [str(i) for i in range(num_class)]
    elif objective.startswith("binary:"):
        labels = ["0", "1"]
    else:
        labels = []
    return {
        "framework": "xgboost",
        "estimator": f"xgboost.Booster({objective})",
        "input_features": features,
        "output_labels": labels,
    }


def _onnx(data: bytes) -> dict[str, Any]:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise NotAModel(f"not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from exc
    inputs = [
        {"name": i.name, "type": i.type, "shape": [str(d) for d in i.shape]}
        for i in session.get_inputs()
    ]
    return {"framework": "", "estimator": "onnx", "onnx_inputs": inputs}


def _skops(data: bytes) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:
        raise NotAModel(f"not a valid skops file: {exc}") from exc
    unsafe = [t for t in untrusted if not t.startswith(SAFE_SKOPS_PREFIXES)]
    if unsafe:
        raise NotAModel(
            "the skops file references types outside scikit-learn, NumPy, SciPy and XGBoost: "
            + ", ".join(sorted(unsafe)[:10])
        )
    return skops.io.loads(data, trusted=untrusted)


def inspect(data: bytes, fmt: str) -> dict[str, Any]:
    if fmt in ("joblib", "pickle"):
        import joblib

        try:
            model = joblib.load(io.BytesIO(data))
        except MemoryError:
            raise
        except Exception as exc:
            raise NotAModel(
                f"could not load the {fmt} artifact: {type(exc).__name__}: {exc}"
            ) from exc
        return _sklearn_like(model)
    if fmt == "skops":
        return _sklearn_like(_skops(data))
    if fmt in ("xgboost-json", "xgboost-ubj"):
        return _booster(data)
    if fmt == "onnx":
        return _onnx(data)
    raise NotAModel(f"unknown format {fmt!r}")


def load_and_report(fmt: str, memory_mb: int, cpu_seconds: int) -> None:
    """The loader: limits first, then the artifact on stdin, then one JSON object on stdout."""
    _limit(memory_mb, cpu_seconds)
    out: IO[str] = os.fdopen(1, "w", closefd=False)
    sys.stdout = sys.stderr  # whatever the model prints while loading must not corrupt our JSON
    try:
        with os.fdopen(0, "rb", closefd=False) as stdin:
            data = stdin.read()
        result: dict[str, Any] = {"ok": True, **inspect(data, fmt)}
    except NotAModel as exc:
        result = {"ok": False, "error": str(exc)}
    except MemoryError:
        result = {"ok": False, "error": "loading the artifact exceeded the memory limit"}
    out.write(json.dumps(result))
    out.flush()


def _loader(request: dict[str, Any], fds: list[int]) -> None:
    """In the process forked for one request: become a session of its own (the parent kills
    the whole group at its time limit), report the pid, fork the loader, report its exit
    code. Never returns."""
    artifact, stdout, stderr, status = fds
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server ignores it: wait for ours
        os.write(status, f"{os.getpid()}\n".encode())
        pid = os.fork()
        if pid == 0:
            for target, fd in ((0, artifact), (1, stdout), (2, stderr)):
                os.dup2(fd, target)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            try:
                load_and_report(request["format"], request["memory_mb"], request["cpu_seconds"])
                sys.stderr.flush()
                os._exit(0)
            except BaseException:  # its traceback is the parent's log line
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(1)
        for fd in (artifact, stdout, stderr):
            os.close(fd)
        _, wait_status = os.waitpid(pid, 0)
        os.write(status, f"{os.waitstatus_to_exitcode(wait_status)}\n".encode())
        code = 0
    finally:
        os._exit(code)


def _undumpable() -> None:
    """No process of this user may ptrace the fork server or what it forks, nor open their
    ``/proc`` files (inherited by every fork): a hostile loader can then neither tamper with
    the server, which would reach every later upload, nor with another loader."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def serve_forks(channel: socket.socket) -> None:
    """Preload, then fork a loader per request until the parent closes ``channel``."""
    _undumpable()
    for module in PRELOAD:
        # not installed here: a loader that needs it imports it (and fails) itself
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the request processes reap themselves
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, 4096, 4)
        except InterruptedError:
            continue
        if not message:
            return  # the parent is gone
        try:
            request = json.loads(message)
            if len(fds) != 4:
                raise ValueError(f"{len(fds)} descriptors, not 4")
        except ValueError:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            channel.close()
            _loader(request, fds)
        for fd in fds:
            os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fork-server", action="store_true", required=True)
    parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with socket.socket(fileno=os.dup(0)) as channel:
        serve_forks(channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
