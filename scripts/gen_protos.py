"""Generate the committed protobuf modules from ``protos/``; ``--check`` fails on drift.

Usage: ``python scripts/gen_protos.py`` (write) or ``python scripts/gen_protos.py --check``.
Outputs ``*_pb2.py`` + ``.pyi`` (mypy-protobuf) for every proto, and ``*_pb2_grpc.py`` + ``.pyi``
for ``serving.proto`` and ``features.proto``: the V2 service is registered by hand under its
canonical name ``inference.GRPCInferenceService`` (see ``protos/.../inference.proto`` for why).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "src"
PROTO_DIR = Path("ml_platform/serving/proto")
PROTOS_WITH_SERVICES = ("serving.proto", "features.proto")


def _generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency, imported lazily

    bin_dir = Path(sys.executable).parent
    include = Path(protoc.__file__).parent / "_proto"
    base = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
    ]
    outputs: list[Path] = []
    for proto in sorted((PROTO_ROOT / PROTO_DIR).glob("*.proto")):
        rel = str(proto.relative_to(PROTO_ROOT))
        args = [*base, f"--python_out={out_root}", f"--mypy_out={out_root}"]
        if proto.name in PROTOS_WITH_SERVICES:
            args += [f"--grpc_python_out={out_root}", f"--mypy_grpc_out={out_root}"]
        if protoc.main([*args, rel]) != 0:
            raise SystemExit(f"protoc failed for {rel}")
    for path in sorted((out_root / PROTO_DIR).iterdir()):
        if path.suffix in {".py", ".pyi"} and path.name != "__init__.py":
            outputs.append(path.relative_to(out_root))
    return outputs


def check() -> list[str]:
    """Return the generated files that differ from the committed ones (empty when fresh)."""
    with tempfile.TemporaryDirectory() as tmp:
        generated = _generate(Path(tmp))
        stale = [
            str(rel)
            for rel in generated
            if not (OUT_ROOT / rel).exists()
            or not filecmp.cmp(Path(tmp) / rel, OUT_ROOT / rel, shallow=False)
        ]
    return stale


def write() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for rel in _generate(Path(tmp)):
            target = OUT_ROOT / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / rel, target)
    init = OUT_ROOT / PROTO_DIR / "__init__.py"
    if not init.exists():
        init.write_text(
            '"""Generated protobuf modules (do not edit; run scripts/gen_protos.py)."""\n'
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    if args.check:
        stale = check()
        if stale:
            sys.stderr.write("stale generated protobuf modules: " + ", ".join(stale) + "\n")
            return 1
        return 0
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
