"""Write the app's OpenAPI document to ``openapi.json`` (a test fails when it drifts)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ml_platform.config import Settings
from ml_platform.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "openapi.json"


def render() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/spec.db")
        spec = create_app(settings).openapi()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def main() -> int:
    TARGET.write_text(render())
    sys.stdout.write(f"wrote {TARGET.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
