"""The ``mlp`` command."""

from __future__ import annotations

from ml_platform.cli.main import app, main

__all__ = ["app", "main"]
