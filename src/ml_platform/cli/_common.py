"""Options and helpers shared by every ``mlp`` subcommand."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

# Lines are never hard-wrapped (logs, ids and commands stay copyable) nor auto-highlighted.
console = Console(soft_wrap=True, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def new_app(**kwargs: Any) -> typer.Typer:
    """Every ``mlp`` (sub-)app: help texts are shown as written, never parsed as Rich markup
    (a regex like ``^[a-z0-9]*$`` or ``[k=v]`` would be eaten). The one place that decides."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(rich_markup_mode=None, **kwargs)


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
    from ml_platform.server.context import build_context

    context = build_context(settings)
    try:
        context.db.upgrade()
    except Exception as exc:  # a bad URL, an unreachable server, a failed migration
        fail(f"cannot open the store at {context.db.url.split('@')[-1]}: {exc}")
    return context


def fail(message: str, code: int = 1) -> NoReturn:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _json_default(value: Any) -> Any:
    """Datetimes as ISO 8601 (what the REST API writes); anything else by its string."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")


def parse_pairs(values: list[str] | None, option: str, *, commas: bool = False) -> dict[str, str]:
    """``["k=v", ...]`` -> dict (with ``commas``, an item may be ``k=v,k2=v2``; without, a
    value may contain commas); a bad item is a usage error."""
    pairs: dict[str, str] = {}
    for value in values or []:
        for item in value.split(",") if commas else [value]:
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
            pairs[key.strip()] = val if not commas else val.strip()
    return pairs


def show_table(
    title: str | None,
    columns: list[str],
    rows: list[list[Any]],
    keep: tuple[str, ...] = ("created", "updated", "timestamp"),
) -> None:
    """A table for people; ``None`` cells print as ``-``; cell text is never Rich markup.
    The first column (an id or name, what people copy) and ``keep`` columns never wrap."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        table.add_column(
            column,
            no_wrap=index == 0,
            overflow="fold",
            min_width=19 if column in keep else len(column),  # a whole timestamp
        )
    for row in rows:
        table.add_row(*(Text(cell_text(cell)) for cell in row))
    console.print(table)


def show_fields(fields: list[tuple[str, Any]]) -> None:
    """Name/value lines of one resource."""
    show_table(None, ["field", "value"], [[name, value] for name, value in fields])


def cell_text(value: Any) -> str:
    """How a value reads in a table: ``-`` for nothing, 6 significant digits, k=v lists."""
    from datetime import datetime

    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        shown = [f"{k}={cell_text(v)}" for k, v in value.items() if v is not None]
        return ", ".join(shown) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(cell_text(v) for v in value) or "-"
    return str(value)
