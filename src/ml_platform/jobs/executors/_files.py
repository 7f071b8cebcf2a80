"""File helpers shared by executors: safe output copies and job directory layout."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

logger = logging.getLogger(__name__)


def copy_outputs(source: Path, destination: str) -> int:
    """Copy the regular files and directories under ``source`` to ``destination``.

    Symlinks, devices and FIFOs the job left behind are skipped (a symlink would let job code
    point the platform at files it must not copy). Local destinations are plain paths;
    ``s3://`` destinations go through fsspec. Returns the number of files copied.
    """
    if "://" in destination and not destination.startswith("file://"):
        return _copy_remote(source, destination)
    target = Path(destination.removeprefix("file://"))
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        rel = Path(dirpath).relative_to(source)
        for name in list(dirnames):
            st = os.lstat(Path(dirpath) / name)
            if not stat.S_ISDIR(st.st_mode):
                dirnames.remove(name)
                continue
            (target / rel / name).mkdir(exist_ok=True)
        for name in filenames:
            src = Path(dirpath) / name
            try:
                fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                logger.warning("skipping output %s: not a regular file", src)
                continue
            with os.fdopen(fd, "rb") as reader:
                if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                    continue
                dest = target / rel / name
                if dest.is_symlink():
                    dest.unlink()
                with open(dest, "wb") as writer:
                    shutil.copyfileobj(reader, writer, 1024 * 1024)
            copied += 1
    return copied


def _copy_remote(source: Path, destination: str) -> int:
    try:
        import fsspec  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - fsspec is a server dependency
        raise RuntimeError("copying outputs to a remote URI needs fsspec") from exc
    fs, root = fsspec.core.url_to_fs(destination)
    copied = 0
    for dirpath, _dirnames, filenames in os.walk(source, followlinks=False):
        rel = Path(dirpath).relative_to(source)
        for name in filenames:
            src = Path(dirpath) / name
            if not stat.S_ISREG(os.lstat(src).st_mode):
                continue
            remote = "/".join(p for p in (root.rstrip("/"), *rel.parts, name) if p)
            fs.put_file(str(src), remote)
            copied += 1
    return copied


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """``chown -R`` without following symlinks."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in [*dirnames, *filenames]:
            os.chown(Path(dirpath) / name, uid, gid, follow_symlinks=False)
