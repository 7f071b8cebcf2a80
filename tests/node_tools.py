"""Run Node scripts (Playwright against Debian's chromium, the OpenAPI linter) from tests.

`make test` installs both first (`make node browser`); a test that needs them fails with the
command to run when they are missing, rather than skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE_TOOLS = REPO / "tools" / "node"
NODE_MODULES = NODE_TOOLS / "node_modules"

# Chromium flags for this closed network: without the background-networking ones it dials
# Google's hosts at every start (and the test's "nothing leaves 127.0.0.1" check would see it).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise AssertionError("chromium is not installed: run `make browser`")
    return path


def require_node_tools() -> None:
    if not (NODE_MODULES / "playwright-core").is_dir():
        raise AssertionError("tools/node is not installed: run `make node`")


def run_node(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``node script args...`` with tools/node's packages resolvable and the chromium path and
    flags in ``CHROMIUM`` / ``CHROMIUM_ARGS``; the caller asserts on the result."""
    require_node_tools()
    full_env = {
        **os.environ,
        "NODE_PATH": str(NODE_MODULES),
        "CHROMIUM": chromium(),
        "CHROMIUM_ARGS": " ".join(CHROMIUM_ARGS),
        **(env or {}),
    }
    return subprocess.run(
        ["node", str(script), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
