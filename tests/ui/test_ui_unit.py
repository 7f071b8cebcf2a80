"""The dashboard's own checks, run by `make test`: strict TypeScript and the Vitest unit tests."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.ui.web import WEB, require_web_modules


@pytest.mark.parametrize("script", ["typecheck", "test"])
def test_the_dashboard_sources_pass(script: str) -> None:
    require_web_modules()
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed (Node 20+ and npm are needed for web/)"
    result = subprocess.run(
        [npm, "run", "--silent", script],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "CI": "true", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, f"npm run {script} failed:\n{result.stdout}\n{result.stderr}"
