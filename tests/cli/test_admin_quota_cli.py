"""``mlp admin create-api-key --admin`` and ``mlp admin quota ...``: real subprocesses."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_admin_cli import _json, env, run

__all__ = ["env"]  # the fixture, shared with test_admin_cli


def test_create_api_key_admin_flag(env: dict[str, str], tmp_path: Path) -> None:
    run("admin", "create-tenant", "ops", env=env)
    admin = _json(
        run("admin", "create-api-key", "--tenant", "ops", "--admin", "-o", "json", env=env)
    )
    user = _json(run("admin", "create-api-key", "--tenant", "ops", "-o", "json", env=env))
    assert admin["admin"] is True and user["admin"] is False
    text = run("admin", "create-api-key", "--tenant", "ops", "--admin", env=env).stdout
    assert "(administrator)" in text
