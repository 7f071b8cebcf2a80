"""Generate the committed API clients from ``openapi.json`` with OpenAPI Generator.

Usage: ``python scripts/gen_clients.py`` (write ``clients/``, what ``make clients`` runs) or
``python scripts/gen_clients.py --check`` (regenerate into a temporary directory and fail
when the committed trees differ).

- ``clients/python/``: ``-g python``, ``packageName=ml_platform_client``, the seed's route.
- ``clients/typescript/``: ``-g typescript-axios`` with ``package.json`` (``npmName``); its
  ``package-lock.json`` is ours (``make node`` runs ``npm ci`` there), not generated.

The generator is the PyPI ``openapi-generator-cli`` (a dev dependency; it bundles the jar and
needs Java 17). Output is deterministic: no timestamps, and files we do not want are listed in
each tree's committed ``.openapi-generator-ignore``. Every generated file is removed before a
run, so a schema that disappears from the spec takes its model with it.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.json"
CLIENTS = ROOT / "clients"
IGNORE_FILE = ".openapi-generator-ignore"
FILES_LIST = Path(".openapi-generator") / "FILES"
# ours, not the generator's: kept when a tree is regenerated, not compared by --check
NOT_GENERATED = frozenset({IGNORE_FILE, "package-lock.json", "node_modules", "dist"})


@dataclass(frozen=True)
class Target:
    directory: str
    generator: str
    properties: str


TARGETS = (
    Target(
        "python",
        "python",
        "packageName=ml_platform_client,projectName=ml-platform-client,packageVersion=0.1.0",
    ),
    Target(
        "typescript",
        "typescript-axios",
        "npmName=ml-platform-client,npmVersion=0.1.0,supportsES6=true",
    ),
)

# Characters a JSON Schema ``pattern`` may name that the python generator would paste raw into
# a regex literal of the generated source (a NUL there makes the module fail to import). The
# spec is rewritten to name them as regex escapes, which match exactly the same characters.
_RAW_IN_PATTERN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape_pattern(pattern: str) -> str:
    return _RAW_IN_PATTERN.sub(lambda found: f"\\u{ord(found.group()):04x}", pattern)


def _escape_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _escape_pattern(value)
            if key == "pattern" and isinstance(value, str)
            else _escape_patterns(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_escape_patterns(item) for item in node]
    return node


def generator_input(spec: Path, into: Path) -> Path:
    """The spec as the generator reads it (patterns with escapes instead of raw controls)."""
    document = _escape_patterns(json.loads(spec.read_text()))
    path = into / "openapi.generator-input.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def _clear_generated(tree: Path) -> None:
    if not tree.is_dir():
        return
    for child in tree.iterdir():
        if child.name in NOT_GENERATED:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _generator() -> str:
    found = shutil.which("openapi-generator-cli", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("openapi-generator-cli is not installed: run `make install`")
    return found


def generate(out_root: Path, spec: Path = SPEC) -> None:
    """Write every client tree under ``out_root`` (``out_root/python``, ...) from ``spec``."""
    cli = _generator()
    with tempfile.TemporaryDirectory() as tmp:
        source = generator_input(spec, Path(tmp))
        running: list[tuple[Target, subprocess.Popen[str]]] = []
        for target in TARGETS:
            tree = out_root / target.directory
            _clear_generated(tree)
            tree.mkdir(parents=True, exist_ok=True)
            committed_ignore = CLIENTS / target.directory / IGNORE_FILE
            if tree != CLIENTS / target.directory and committed_ignore.exists():
                shutil.copyfile(committed_ignore, tree / IGNORE_FILE)
            command = [
                cli,
                "generate",
                "--input-spec",
                str(source),
                "--generator-name",
                target.generator,
                "--output",
                str(tree),
                "--additional-properties",
                target.properties,
                "--global-property",
                "apiTests=false,modelTests=false",
            ]
            running.append(
                (
                    target,
                    subprocess.Popen(
                        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                    ),
                )
            )
        for target, process in running:
            output, _ = process.communicate()
            if process.returncode != 0:
                raise SystemExit(
                    f"openapi-generator ({target.generator}) failed:\n{output[-4000:]}"
                )


def _generated_files(tree: Path) -> list[Path]:
    listed = (tree / FILES_LIST).read_text().split()
    return sorted({Path(name) for name in listed} | {FILES_LIST})


def stale_files(generated_root: Path, committed_root: Path = CLIENTS) -> list[str]:
    """Files of ``generated_root`` missing from, or different in, ``committed_root``, and
    committed generated files the fresh run no longer writes."""
    stale: list[str] = []
    for target in TARGETS:
        fresh = generated_root / target.directory
        committed = committed_root / target.directory
        for rel in _generated_files(fresh):
            if not (committed / rel).is_file() or not filecmp.cmp(
                fresh / rel, committed / rel, shallow=False
            ):
                stale.append(f"{target.directory}/{rel}")
        if (committed / FILES_LIST).is_file():
            extra = set(_generated_files(committed)) - set(_generated_files(fresh))
            stale += sorted(f"{target.directory}/{rel} (no longer generated)" for rel in extra)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when clients/ is stale")
    args = parser.parse_args()
    if not args.check:
        generate(CLIENTS)
        sys.stdout.write("wrote clients/python and clients/typescript from openapi.json\n")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = stale_files(Path(tmp))
    if stale:
        sys.stderr.write("clients/ is stale, run `make clients`:\n  " + "\n  ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
