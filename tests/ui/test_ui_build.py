"""The committed dashboard build (src/ml_platform/ui/static) is what web/ builds today.

The build is deterministic (fixed file names, no hashes or timestamps), so a fresh build into
a temporary directory must equal the committed files byte for byte. After changing web/src:
`cd web && npm run build`, and commit src/ml_platform/ui/static with the sources.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ml_platform.ui import STATIC_DIR
from tests.ui.web import WEB, require_web_modules


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_committed_build_matches_the_sources(tmp_path: Path) -> None:
    require_web_modules()
    npx = shutil.which("npx")
    assert npx is not None, "npx is not installed (Node 20+ and npm are needed for web/)"
    out = tmp_path / "static"
    result = subprocess.run(
        [
            npx,
            "--no-install",
            "vite",
            "build",
            "--outDir",
            str(out),
            "--emptyOutDir",
            "--logLevel",
            "error",
        ],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fresh, committed = _files(out), _files(STATIC_DIR)
    assert sorted(fresh) == sorted(committed), "run `cd web && npm run build` and commit"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"stale build files {stale}: run `cd web && npm run build` and commit"
    assert "index.html" in fresh and "assets/app.js" in fresh
