"""Run a job's entrypoint where the platform's disk is out of reach (a Ray worker), then
publish its outputs to the object store itself.

    python -m ml_platform.runtime._publish <entrypoint ...>

The executor sets ``ML_PLATFORM_OUTPUT_URI`` (the job's ``output_path`` in the platform's
storage) and, when the storage needs them, ``ML_PLATFORM_STORAGE_OPTIONS`` (JSON fsspec
options). The entrypoint runs with ``ML_PLATFORM_OUTPUT_DIR`` set to a fresh local directory;
when it exits 0, every regular file written there is put under the URI (symlinks, devices and
FIFOs are skipped), each object published whole by the store. The entrypoint's exit code is
this process's. Pure standard library plus ``fsspec`` (the ``s3`` extra) when publishing.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ml_platform.runtime._context import ENV_OUTPUT_DIR, storage_options

ENV_OUTPUT_URI = "ML_PLATFORM_OUTPUT_URI"


def _argv(args: list[str]) -> list[str]:
    if len(args) == 1:
        args = shlex.split(args[0])
    if args and args[0] in ("python", "python3"):
        return [sys.executable, *args[1:]]
    if args and args[0].endswith(".py"):
        return [sys.executable, *args]
    return args


def publish(source: Path, uri: str, options: dict[str, Any]) -> int:
    import fsspec  # type: ignore[import-untyped,unused-ignore]

    fs, root = fsspec.core.url_to_fs(uri, **options)
    count = 0
    for dirpath, _dirnames, filenames in os.walk(source, followlinks=False):
        relative = Path(dirpath).relative_to(source)
        for name in filenames:
            path = Path(dirpath) / name
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            fs.put_file(str(path), "/".join((str(root).rstrip("/"), *relative.parts, name)))
            count += 1
    return count


def main(args: list[str]) -> int:
    if not args:
        print("usage: python -m ml_platform.runtime._publish <entrypoint ...>", file=sys.stderr)
        return 2
    uri = os.environ.get(ENV_OUTPUT_URI)
    with tempfile.TemporaryDirectory(prefix="mlp-output-") as output:
        env = dict(os.environ)
        if uri:
            env[ENV_OUTPUT_DIR] = output
        code = subprocess.call(_argv(args), env=env)
        if code != 0 or not uri:
            return code
        try:
            count = publish(Path(output), uri, storage_options())
        except Exception as exc:  # the platform shows this line and the exit code
            print(f"publishing the outputs to {uri} failed: {exc}", file=sys.stderr, flush=True)
            return 70
        print(f"published {count} output file(s) to {uri}", flush=True)
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
