"""The ``mlp`` entry point: one Typer app, one module per noun."""

from __future__ import annotations

import typer

from ml_platform.cli import admin, db
from ml_platform.cli.serve import serve
from ml_platform.cli.server import server

app = typer.Typer(
    name="mlp",
    help="ml-platform: train, register and serve models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.app, name="admin")
app.add_typer(db.app, name="db")
app.command("server")(server)
app.command("serve")(serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
