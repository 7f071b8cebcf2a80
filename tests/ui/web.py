"""Where the dashboard's sources and their installed packages live (see web/package.json)."""

from __future__ import annotations

from tests.node_tools import REPO

WEB = REPO / "web"


def require_web_modules() -> None:
    if not (WEB / "node_modules" / "vite").is_dir():
        raise AssertionError("web/ is not installed: run `make node` (npm ci in web/)")
