"""``deploy/compose.yaml``: ``docker compose config`` where Compose is installed; everywhere, a
lint that needs no engine: the topology's services are there, every ``depends_on`` names one,
every ``ML_PLATFORM_*`` variable is a ``Settings`` field and each platform service's
environment (variables substituted as Compose would) builds a valid ``Settings``, and every
``mlp`` command line uses options the CLI has."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from ml_platform.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
PLATFORM_SERVICES = {"api-1", "api-2", "scheduler", "serving"}
BACKING_SERVICES = {"postgres", "redis", "minio", "ray-head"}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
REQUIRED_VALUES = {"MLP_JWT_SECRET": "j" * 40, "MLP_SECRETS_KEY": Fernet.generate_key().decode()}


def _substitute(value: str) -> str:
    """Compose's interpolation: ``${X:-default}``, ``${X:?error}`` (given here), ``$$``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if name in REQUIRED_VALUES:
            return REQUIRED_VALUES[name]
        assert op in (":-", "-"), f"${{{name}}} has no default and is not a documented secret"
        return str(arg)

    return _VARIABLE.sub(one, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_docker_compose_config_accepts_the_file_where_compose_exists() -> None:
    docker = shutil.which("docker")
    has_compose = docker is not None and (
        subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    )
    if not has_compose:
        pytest.skip("no docker compose here: the lint tests below check the file")
    assert docker is not None
    env = {"PATH": "/usr/bin:/bin", **REQUIRED_VALUES}
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_topology_has_every_process_and_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= PLATFORM_SERVICES | BACKING_SERVICES
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    scheduling = {
        name: services[name]["environment"]["ML_PLATFORM_SCHEDULER_ENABLED"]
        for name in ("api-1", "api-2", "scheduler")
    }
    assert scheduling == {"api-1": "false", "api-2": "false", "scheduler": "true"}
    assert services["serving"]["command"][0] == "serve"


@pytest.mark.parametrize("service", sorted(PLATFORM_SERVICES))
def test_every_platform_setting_exists_and_validates(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = {
        k: _substitute(str(v)) for k, v in compose["services"][service]["environment"].items()
    }
    fields = {f"ML_PLATFORM_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(set(environment) - fields)
    assert not unknown, f"{service}: not settings: {unknown}"
    for name in list(os.environ):
        if name.startswith("ML_PLATFORM_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.storage_uri == "s3://ml-platform/prod"
    assert settings.storage_options["client_kwargs"]["endpoint_url"] == "http://minio:9000"
    assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.redis_url and settings.secrets_keys


@pytest.mark.parametrize("service", sorted(PLATFORM_SERVICES))
def test_every_command_line_uses_real_cli_options(compose: dict[str, Any], service: str) -> None:
    command = compose["services"][service]["command"]
    result = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli.main", command[0], "--help"],
        capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for option in (part.split("=")[0] for part in command[1:] if part.startswith("--")):
        assert option in result.stdout, f"{service}: mlp {command[0]} has no {option}"


def test_the_ray_nodes_have_the_object_store_credentials_the_jobs_do_not_get(
    compose: dict[str, Any],
) -> None:
    """A Ray job's runtime_env carries no storage secret: the Ray head (whose workers inherit
    its environment) holds the same key as the platform's storage options."""
    environment = compose["services"]["ray-head"]["environment"]
    ray = {k: _substitute(str(v)) for k, v in environment.items()}
    options = json.loads(_substitute(compose["x-platform-env"]["ML_PLATFORM_STORAGE_OPTIONS"]))
    assert ray["AWS_ACCESS_KEY_ID"] == options["key"]
    assert ray["AWS_SECRET_ACCESS_KEY"] == options["secret"]
    assert ray["AWS_DEFAULT_REGION"] == options["client_kwargs"]["region_name"]
