"""``mlp db``: schema migrations."""

from __future__ import annotations

from ml_platform.cli._common import (
    DatabaseUrlOption,
    DataDirOption,
    console,
    fail,
    load_settings,
    new_app,
)

app = new_app(help="Database schema.")


@app.command("upgrade")
def upgrade(data_dir: DataDirOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Apply every pending migration."""
    from ml_platform.store.db import Database

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db = Database(settings.resolved_database_url)
    try:
        db.upgrade()
    except Exception as exc:
        fail(f"migration failed: {exc}")
    console.print("database is up to date")
