"""The user-facing ``mlp`` (train, jobs, models, deploy, predict, login) as a user runs it:
real ``mlp`` subprocesses against a live platform on loopback."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from ml_platform.cli._sdk import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_CONNECTION,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
)
from ml_platform.cli.main import app
from tests.client._proxy import Fail, FailingProxy
from tests.conftest import Platform, Tenant, serving_plane, start_platform
from tests.jobs.conftest import EXAMPLES, JOB_SETTINGS, tenant_root
from tests.ports import free_port

sys.path.insert(0, str(EXAMPLES))
from make_dataset import make_dataset

pytestmark = pytest.mark.slow

_BIN = Path(sys.executable).with_name("mlp")
MLP = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "ml_platform.cli.main"]


class Mlp:
    """``mlp`` as a subprocess with a private config dir (never the user's credentials)."""

    def __init__(self, config_dir: Path, **env: str) -> None:
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ML_PLATFORM_URL", "ML_PLATFORM_API_KEY", "ML_PLATFORM_GRPC_TARGET")
        }
        self.env.update({"ML_PLATFORM_CONFIG_DIR": str(config_dir), "COLUMNS": "200", **env})

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MLP, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json").stdout)


def as_user(platform: Platform, tenant: Tenant, tmp_path: Path, **env: str) -> Mlp:
    return Mlp(
        tmp_path / "config",
        ML_PLATFORM_URL=platform.base_url,
        ML_PLATFORM_API_KEY=tenant.api_key,
        **env,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


SPEC_ARGS = (
    "--name", "cli-job", "--data", "data/train.csv", "--cpu", "1", "--memory", "1Gi",
)  # fmt: skip


# -- errors and exit codes -------------------------------------------------------------------


def test_json_output_and_the_exit_code_of_each_error(
    platform: Platform, tenant: Tenant, tmp_path: Path
) -> None:
    mlp = as_user(platform, tenant, tmp_path)
    submitted = mlp.json(
        "train", *SPEC_ARGS, "--param", "lr=0.1", "--param", "epochs=3", "--tag", "team=cli",
        "--param", "layers=[64, 32]", "--param", "optimizer=adam", "--tag", "owner=ann,tier=gold",
    )  # fmt: skip
    assert submitted["status"] == "pending" and submitted["id"].startswith("job_")
    assert submitted["spec"]["hyperparameters"] == {
        "lr": 0.1,
        "epochs": 3,
        "layers": [64, 32],
        "optimizer": "adam",
    }
    assert submitted["spec"]["tags"] == {"team": "cli", "owner": "ann", "tier": "gold"}
    assert submitted["spec"]["compute"]["cpu_cores"] == 1
    assert submitted["spec"]["compute"]["memory_gb"] == 1

    other = mlp.ok("train", *SPEC_ARGS, "--tag", "team=other").stdout.strip()  # text: the id
    assert other.startswith("job_") and other != submitted["id"]
    listed = mlp.json("jobs", "list", "--tag", "team=cli")
    assert [j["id"] for j in listed] == [submitted["id"]]
    assert {j["id"] for j in mlp.json("jobs", "list", "--status", "pending")} == {
        submitted["id"],
        other,
    }
    got = mlp.json("jobs", "get", submitted["id"])
    assert got["id"] == submitted["id"] and got["spec"]["name"] == "cli-job"
    table = mlp.ok("jobs", "list").stdout
    assert submitted["id"] in table and "cli-job" in table

    cancelled = mlp.json("jobs", "cancel", submitted["id"])
    assert cancelled["status"] == "cancelled"
    again = assert_one_error_line(mlp("jobs", "cancel", submitted["id"]), EXIT_CONFLICT)
    assert "409" in again

    missing = assert_one_error_line(mlp("jobs", "get", "job_does_not_exist"), EXIT_NOT_FOUND)
    assert "job_does_not_exist" in missing and re.search(r"\(404, request \S+\)", missing)

    invalid = assert_one_error_line(mlp("train", *SPEC_ARGS[2:], "--name", "Not Valid!"), 5)
    assert "name" in invalid and "422" in invalid

    bad_key = mlp("--api-key", "mlp_not_a_real_key", "jobs", "list")
    assert "401" in assert_one_error_line(bad_key, EXIT_AUTH)

    port = free_port()
    unreachable = mlp("--url", f"http://127.0.0.1:{port}", "jobs", "list")
    assert f"127.0.0.1:{port}" in assert_one_error_line(unreachable, EXIT_CONNECTION)

    with_trace = mlp("--debug", "jobs", "get", "job_does_not_exist")
    assert with_trace.returncode == EXIT_NOT_FOUND and "Traceback" in with_trace.stderr

    usage = mlp("train", "--param", "no-equals-sign")
    assert usage.returncode == 2 and "KEY=VALUE" in usage.stderr


def test_login_stores_the_credentials_the_sdk_reads_and_whoami_uses_them(
    platform: Platform, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlp = Mlp(tmp_path / "config")  # no URL or key in the environment
    assert_one_error_line(
        mlp("login", "--url", platform.base_url, "--api-key", "mlp_wrong"), EXIT_AUTH
    )
    assert not (tmp_path / "config" / "credentials.json").exists()

    mlp.ok("login", "--url", platform.base_url, "--api-key", tenant.api_key)
    stored = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    document = json.loads(stored.read_text())
    assert document["base_url"] == platform.base_url and document["api_key"] == tenant.api_key

    assert mlp.json("jobs", "list") == []  # the key now comes from the file
    who = mlp.json("whoami")
    assert who["base_url"] == platform.base_url
    if who.get("tenant_name") is not None:  # servers with GET /v1/me say who we are
        assert who["tenant_name"] == tenant.name and document["tenant"] == tenant.name

    from ml_platform import Client

    monkeypatch.setenv("ML_PLATFORM_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("ML_PLATFORM_URL", "ML_PLATFORM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with Client() as client:  # the SDK reads what `mlp login` wrote
        assert client.base_url == platform.base_url and client.api_key == tenant.api_key


def test_data_upload_list_delete(platform: Platform, tenant: Tenant, tmp_path: Path) -> None:
    mlp = as_user(platform, tenant, tmp_path)
    folder = tmp_path / "set"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "sub" / "b.csv").write_text("x\n2\n")
    assert mlp.ok("data", "upload", str(folder), "--to", "sets/one").stdout.strip() == (
        "data/sets/one"
    )
    single = mlp.json("data", "upload", str(folder / "a.csv"))
    assert single["path"] == "data/a.csv" and single["size_bytes"] == 4
    listed = [f["path"] for f in mlp.json("data", "list", "--prefix", "sets")]
    assert listed == ["data/sets/one/a.csv", "data/sets/one/sub/b.csv"]
    mlp.ok("data", "delete", "data/a.csv")
    assert "data/a.csv" not in [f["path"] for f in mlp.json("data", "list")]
    assert_one_error_line(mlp("data", "delete", "data/a.csv"), EXIT_NOT_FOUND)


def test_login_without_a_me_route_and_every_status_class_through_a_real_proxy(
    platform: Platform, tenant: Tenant, tmp_path: Path
) -> None:
    """A server without ``GET /v1/me`` (the proxy answers 404 for it): login proves the key
    with a one-item job list instead; 403, 5xx and 429 map to their exit codes."""
    config = tmp_path / "config"
    mlp = Mlp(config)
    with FailingProxy(platform.base_url) as proxy:
        proxy.fail(Fail(status=404))
        mlp.ok("login", "--url", proxy.base_url, "--api-key", tenant.api_key)
        assert [(a.method, a.path) for a in proxy.arrivals] == [
            ("GET", "/v1/me"),
            ("GET", "/v1/jobs/training"),
        ]
        stored = json.loads((config / "credentials.json").read_text())
        assert stored == {"base_url": proxy.base_url, "api_key": tenant.api_key}

        proxy.fail(Fail(status=403))
        assert "403" in assert_one_error_line(mlp("jobs", "list"), EXIT_AUTH)
        proxy.fail(*[Fail(status=500)] * 3)  # the first try and the SDK's two retries
        assert "500" in assert_one_error_line(mlp("jobs", "list"), EXIT_FAILED)
        proxy.fail(*[Fail(status=429, headers={"Retry-After": "0"})] * 3)
        assert "429" in assert_one_error_line(mlp("jobs", "list"), EXIT_FAILED)
        assert mlp.json("jobs", "list") == []  # and through the proxy, all is well again


# -- help texts ------------------------------------------------------------------------------


def test_create_tenant_help_shows_the_tenant_regex_exactly(tmp_path: Path) -> None:
    from ml_platform.auth.service import TENANT_NAME

    mlp = Mlp(tmp_path / "config", ML_PLATFORM_DATA_DIR=str(tmp_path / "data"))
    assert TENANT_NAME.pattern in mlp.ok("admin", "create-tenant", "--help").stdout
    refused = mlp("admin", "create-tenant", "Bad[x]")  # error lines are not markup either
    assert refused.returncode == 1
    assert "'Bad[x]'" in refused.stderr and TENANT_NAME.pattern in refused.stderr


def _commands(command: Any, ctx: Any) -> Iterator[tuple[list[str], Any]]:
    """Every command of the tree (typer's click objects, duck-typed: typer may vendor click)."""
    yield [], command
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            for path, found in _commands(sub, type(ctx)(sub, parent=ctx, info_name=name)):
                yield [name, *path], found


def test_every_help_text_is_shown_as_written() -> None:
    """No help string of any command loses characters to markup ([...], *, etc.)."""
    root = typer.main.get_command(app)
    runner = CliRunner()
    squash = re.compile(r"\s+")
    checked = 0
    context_class = getattr(root, "context_class", None) or click.Context
    for path, command in _commands(root, context_class(root, info_name="mlp")):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        shown = squash.sub("", result.output)
        texts = [command.help or ""] + [
            getattr(p, "help", None) or "" for p in command.params if p.name != "help"
        ]
        for text in texts:
            first = text.split("\n\n")[0] if text is command.help else text
            assert squash.sub("", first) in shown, (path, text)
            checked += 1
    assert checked > 50


# -- jobs that run, and a served model -------------------------------------------------------


@dataclass
class Stack:
    """A platform with the scheduler on (local executor) and a serving plane on its store."""

    platform: Platform
    grpc_target: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any) -> Iterator[Stack]:
    running, server = start_platform(
        "sqlite",
        tmp_path_factory.mktemp("cli-stack"),
        database_url_factory("sqlite"),
        **JOB_SETTINGS,
    )
    try:
        with serving_plane(running) as plane:
            yield Stack(running, plane.grpc_target)
    finally:
        running.close()
        server.stop()
        running.db.dispose()


def test_train_follow_streams_the_log_and_exits_non_zero_when_the_job_fails(
    stack: Stack, tmp_path: Path
) -> None:
    tenant = stack.platform.new_tenant()
    make_dataset(tenant_root(stack.platform, tenant) / "data" / "train.csv", rows=20)
    source = tmp_path / "failing"
    source.mkdir()
    (source / "train.py").write_text(
        "import os, sys\n"
        "print('greeting', os.environ['GREETING'], flush=True)\n"
        "for step in range(3):\n"
        "    print(f'step {step}', flush=True)\n"
        "print('about to fail', flush=True)\n"
        "sys.exit(3)\n"
    )
    with FailingProxy(stack.platform.base_url) as proxy:
        proxy.cut_streams(2, 2)  # the log stream drops twice: the CLI resumes, no line twice
        mlp = Mlp(tmp_path / "config", ML_PLATFORM_URL=proxy.base_url)
        mlp.env["ML_PLATFORM_API_KEY"] = tenant.api_key
        result = mlp(
            "train", "--source-dir", str(source), *SPEC_ARGS, "--env", "GREETING=hi,there", "-f"
        )
    assert result.returncode == EXIT_FAILED, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert len(lines) == len(set(lines)) and len(proxy.streams) >= 3, (lines, proxy.streams)
    mine = [line for line in lines if line.startswith(("greeting", "step", "about"))]
    assert mine == ["greeting hi,there", "step 0", "step 1", "step 2", "about to fail"]
    mlp = as_user(stack.platform, tenant, tmp_path)
    job_id = re.search(r"submitted job (job_\S+)", result.stderr)
    assert job_id is not None, result.stderr
    assert f"job {job_id.group(1)} failed" in result.stderr.splitlines()[-1]
    assert mlp.json("jobs", "get", job_id.group(1))["status"] == "failed"
    waited = assert_one_error_line(mlp("jobs", "wait", job_id.group(1)), EXIT_FAILED)
    assert "exited with code 3" in waited


def test_quickstart_train_register_deploy_predict(stack: Stack, tmp_path: Path) -> None:
    """The README's CLI path: train the example from its source dir on a local CSV (uploaded),
    follow it, register its output, deploy by alias, predict; predictions equal the model's."""
    import joblib
    import numpy as np

    tenant = stack.platform.new_tenant()
    mlp = as_user(stack.platform, tenant, tmp_path, ML_PLATFORM_GRPC_TARGET=stack.grpc_target)
    csv_path = make_dataset(tmp_path / "churn.csv", rows=200)

    result = mlp(
        "train", "--source-dir", str(EXAMPLES / "sklearn_classifier"), "--name", "churn",
        "--data", str(csv_path), "--param", "epochs=3", "--cpu", "1", "--memory", "1",
        "--follow", "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    job = json.loads(result.stdout)  # -o json: the job document on stdout, logs on stderr
    assert job["status"] == "succeeded" and "epoch 3:" in result.stderr
    assert mlp.json("jobs", "wait", job["id"])["status"] == "succeeded"
    assert set(mlp.json("jobs", "metrics", job["id"])) >= {"loss", "accuracy"}
    assert [
        p["step"] for p in mlp.json("jobs", "metrics", job["id"], "--history", "--name", "loss")
    ] == [1, 2, 3]
    followed = mlp.ok("jobs", "logs", job["id"], "--follow").stdout.splitlines()
    assert sum("epoch" in line for line in followed) == 3  # a finished job: every line, then end
    tail = mlp.ok("jobs", "logs", job["id"], "--tail", "3").stdout.splitlines()
    assert len(tail) == 3 and any("wrote" in line for line in tail), tail

    version = mlp.json("models", "register", "churn", "--job", job["id"])
    assert version["version"] == 1
    mlp.ok("models", "alias", "churn", "production", "1")
    assert mlp.json("models", "get", "churn")["aliases"]["production"] == 1
    assert [v["version"] for v in mlp.json("models", "versions", "churn")] == [1]
    deployed = mlp.json(
        "deploy", "churn-live", "--model", "churn", "--alias", "production", "--wait"
    )
    assert deployed["status"] == "ready" and deployed["serving_version"] == 1

    artifact = Path(mlp.json("models", "download", "churn", "1", "--dest", str(tmp_path))["path"])
    model = joblib.load(artifact)
    rows = np.random.default_rng(3).normal(size=(5, 4))
    expected = model.predict(rows)

    features = ",".join(f"f{i}={float(v)!r}" for i, v in enumerate(rows[0]))
    one = mlp.json("predict", "churn-live", "--features", features)
    assert one["predictions"] == [float(expected[0])] and one["model_version_used"] == "1"
    text = mlp.ok("predict", "churn-live", "--features", features)
    assert text.stdout.split()[0] == f"{float(expected[0]):g}"

    batch_file = tmp_path / "rows.csv"
    batch_file.write_text(
        "f0,f1,f2,f3\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows)
    )
    batch = mlp.json("predict", "churn-live", "--file", str(batch_file))
    assert [p["predictions"] for p in batch] == [[float(e)] for e in expected]

    uploaded = mlp.json("models", "upload", "churn", str(artifact), "--framework", "sklearn")
    assert uploaded["version"] == 2
    rolled = mlp.json("deployments", "rollout", "churn-live", "--version", "2", "--wait")
    assert rolled["serving_version"] == 2 and rolled["status"] == "ready"
    again = mlp.json("predict", "churn-live", "--features", features)
    assert again["model_version_used"] == "2" and again["predictions"] == one["predictions"]

    assert [d["name"] for d in mlp.json("deployments", "list")] == ["churn-live"]
    missing = assert_one_error_line(mlp("predict", "nope", "--features", "f0=1"), EXIT_NOT_FOUND)
    assert "nope" in missing
    mlp.ok("deployments", "delete", "churn-live")
    assert_one_error_line(mlp("deployments", "get", "churn-live"), EXIT_NOT_FOUND)
