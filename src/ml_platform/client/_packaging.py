"""Pack a source directory into a deterministic zip: same files, same bytes, same sha256.

Entries are sorted, carry a fixed timestamp (1980-01-01) and fixed permissions (0644, or 0755
when executable), so packing twice gives the same archive and the SDK can ask the server
whether it already holds it before uploading. Skipped: ``.git``, ``__pycache__``, ``.venv``
(and other virtualenv / tool caches named below), compiled ``*.pyc``, symlinks, and paths the
directory's ``.gitignore`` files exclude (simple patterns, matched with ``fnmatch``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ALWAYS_SKIPPED_DIRS = frozenset(
    {".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
ALWAYS_SKIPPED_SUFFIXES = (".pyc", ".pyo")
FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Package:
    data: bytes
    sha256: str
    file_count: int

    @property
    def id(self) -> str:
        return f"sha256:{self.sha256}"


@dataclass(frozen=True)
class _Rule:
    base: str  # directory (relative, posix, "" for root) of the .gitignore
    pattern: str
    anchored: bool
    dir_only: bool
    negated: bool


def _read_rules(directory: Path, base: str) -> list[_Rule]:
    path = directory / ".gitignore"
    if not path.is_file():
        return []
    rules: list[_Rule] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if line.startswith("**/"):
            line, anchored = line[3:], False
        else:
            anchored = "/" in line
        line = line.lstrip("/")
        if line:
            rules.append(_Rule(base, line, anchored, dir_only, negated))
    return rules


def _ignored(rel: str, is_dir: bool, rules: list[_Rule]) -> bool:
    verdict = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.base:
            if not rel.startswith(rule.base + "/"):
                continue
            local = rel[len(rule.base) + 1 :]
        else:
            local = rel
        subject = local if rule.anchored else local.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(subject, rule.pattern):
            verdict = not rule.negated
    return verdict


def iter_package_files(root: Path) -> list[tuple[str, Path]]:
    """(archive name, path) of every file packed from ``root``, sorted by name."""
    root = root.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"source_dir {str(root)!r} is not a directory")
    found: list[tuple[str, Path]] = []
    rules_by_dir: dict[str, list[_Rule]] = {}
    for current, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(current)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        parent_rules = rules_by_dir.get(rel_dir.rsplit("/", 1)[0] if "/" in rel_dir else "", [])
        rules = [*(parent_rules if rel_dir else []), *_read_rules(here, rel_dir)]
        rules_by_dir[rel_dir] = rules
        kept: list[str] = []
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name in ALWAYS_SKIPPED_DIRS or (here / name).is_symlink():
                continue
            if not _ignored(rel, True, rules):
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = here / name
            if name.endswith(ALWAYS_SKIPPED_SUFFIXES) or _ignored(rel, False, rules):
                continue
            if path.is_symlink():
                logger.warning("not packing symlink %s", rel)
                continue
            if path.is_file():
                found.append((rel, path))
    found.sort(key=lambda item: item[0])
    return found


def pack_directory(root: Path) -> Package:
    """The deterministic zip of ``root``."""
    buffer = io.BytesIO()
    files = iter_package_files(Path(root))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIMESTAMP)
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the host
            archive.writestr(info, path.read_bytes(), compresslevel=6)
    data = buffer.getvalue()
    return Package(data=data, sha256=hashlib.sha256(data).hexdigest(), file_count=len(files))
