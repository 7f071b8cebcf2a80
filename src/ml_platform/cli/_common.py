"""Options and helpers shared by every ``mlp`` subcommand."""

from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class Output(str, Enum):
    TEXT = "text"
    JSON = "json"


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default ./.mlp, or ML_PLATFORM_DATA_DIR)"),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (or ML_PLATFORM_DATABASE_URL)"),
]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


def load_settings(**overrides: Any) -> Any:
    from ml_platform.config import Settings

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        fail(f"invalid configuration: {exc}")


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def setup_logging(level: str) -> None:
    """Timestamped log lines at ``level``; an unknown level is a usage error, not a traceback."""
    if level.lower() not in LOG_LEVELS:
        fail(f"--log-level must be one of {', '.join(LOG_LEVELS)} (got {level!r})")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def open_platform(settings: Any) -> Any:
    """The platform's services on the configured store, migrated; a clear error otherwise."""
    from ml_platform.server.app import build_context

    context = build_context(settings)
    try:
        context.db.upgrade()
    except Exception as exc:  # a bad URL, an unreachable server, a failed migration
        fail(f"cannot open the store at {context.db.url.split('@')[-1]}: {exc}")
    return context


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
