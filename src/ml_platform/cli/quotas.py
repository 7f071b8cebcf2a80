"""``mlp quotas`` (a user's own tenant, through the SDK) and the table both quota commands print."""

from __future__ import annotations

from typing import Any

import typer

from ml_platform.cli._common import Output, OutputOption, emit_json, show_table
from ml_platform.cli._sdk import connect

COLUMNS = ["quota", "limit", "usage", "unit", "kind", "source"]


def _number(value: Any) -> str | None:
    if value is None:
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def show_quotas(document: dict[str, Any], output: Output) -> None:
    """A ``TenantQuotas`` document as JSON, or as a table (``-`` is "no limit")."""
    if output is Output.JSON:
        emit_json(document)
        return
    show_table(
        f"quotas of tenant {document.get('tenant_name', '')}",
        COLUMNS,
        [
            [
                q.get("name"),
                _number(q.get("limit")),
                _number(q.get("usage")),
                q.get("unit"),
                q.get("kind"),
                q.get("source"),
            ]
            for q in document.get("quotas", [])
        ],
    )


def quotas(ctx: typer.Context, output: OutputOption = Output.TEXT) -> None:
    """Your tenant's quotas, each limit beside the current usage (- is no limit).

    delay: jobs over it wait (pending); hard: creations over it are refused (429)."""
    with connect(ctx) as client:
        found = client.quotas()
    show_quotas(found.raw, output)
