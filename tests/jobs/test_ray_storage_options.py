"""No storage credential ever reaches a Ray job's runtime_env (Ray shows it on its dashboard).

Generated fsspec option dicts (credentials under every spelling, at any depth, beside options a
worker needs) go through the Ray executor's own ``_runtime_env``; the serialized runtime_env
must contain no secret value while the non-secret options arrive unchanged. The opt-in setting
brings the old behaviour back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.config import Settings
from ml_platform.jobs.executors.base import JobLaunch
from ml_platform.jobs.executors.storage_options import (
    is_credential_name,
    public_storage_options,
)
from ml_platform.jobs.logs import LogStore
from ml_platform.storage import Storage

ray_executor = pytest.importorskip("ml_platform.jobs.executors.ray")

SECRET_MARK = "S3CR3T"
ROOT = "s3://bucket/prefix"

CREDENTIAL_NAMES = [
    "key", "secret", "token", "password", "passwd",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "session_token",
    "security_token", "access_key", "secret_key", "AccessKeyId", "SecretAccessKey",
    "SessionToken", "client_secret", "sas_token", "account_key", "credentials", "api_key",
    "Authorization", "SSECustomerKey", "connection_string", "private_key", "refresh_token",
    "oauth2_token",
]  # fmt: skip
NESTING = ["client_kwargs", "config_kwargs", "s3_additional_kwargs", "headers", "config"]
PUBLIC = {
    "endpoint_url": "http://127.0.0.1:9000",
    "region_name": "eu-west-1",
    "anon": False,
    "use_ssl": True,
    "requester_pays": False,
    "SSEKMSKeyId": "alias/platform",
    "version_aware": True,
    "retries": 5,
}


def _spelling(name: str, variant: int) -> str:
    """The same option name as a caller may spell it."""
    if variant == 1:
        return name.upper()
    if variant == 2:
        return name.replace("_", "-")
    if variant == 3:
        return "".join(part.title() for part in name.split("_"))
    return name


credential_names = st.builds(_spelling, st.sampled_from(CREDENTIAL_NAMES), st.integers(0, 3))
secret_values = st.builds(lambda n: f"{SECRET_MARK}{n:012x}", st.integers(0, 2**48))
benign_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12
).filter(lambda s: SECRET_MARK not in s and "@" not in s)
benign_names = st.sampled_from([*PUBLIC, "max_concurrency", "cache_regions", "acl"])
benign_values = st.one_of(st.booleans(), st.integers(), benign_text)


def _secret_value(value: str) -> st.SearchStrategy[Any]:
    # a secret may be a string, or any structure below a credential name
    return st.sampled_from([value, {"nested": value}, [value], {"AccessKeyId": value}])


@st.composite
def option_dicts(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in draw(st.lists(credential_names, max_size=5)):
        options[name] = draw(secret_values.flatmap(_secret_value))
    for name in draw(st.lists(benign_names, max_size=4)):
        options.setdefault(name, draw(benign_values))
    if depth < 2:
        for name in draw(st.lists(st.sampled_from(NESTING), max_size=2, unique=True)):
            options[name] = draw(option_dicts(depth + 1))
    if draw(st.booleans()):  # a password inside a URL
        options["proxy"] = f"http://user:{draw(secret_values)}@proxy:3128"
    return options


class _Storage:
    """What the executor reads of a ``Storage``: its options and which URIs are in it."""

    is_local = False

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def key_for_uri(self, uri: str) -> str | None:
        return uri[len(ROOT) + 1 :] if uri.startswith(ROOT + "/") else None


def _runtime_env(tmp_path: Path, storage: Any, **executor: Any) -> str:
    ray = ray_executor.RayExecutor(
        address="http://127.0.0.1:1",
        jobs_dir=tmp_path / "jobs",
        logs=LogStore(tmp_path / "jobs"),
        on_metrics=lambda *_: None,
        storage=storage,
        **executor,
    )
    launch = JobLaunch(
        job_id="job_secrets",
        tenant_id="t1",
        entrypoint="python train.py",
        data_path=f"{ROOT}/tenants/t1/data/train.csv",
        output_path=f"{ROOT}/tenants/t1/models/v1",
        env_vars={"USER_VAR": "visible"},
    )
    run = ray_executor._RayRun(
        job_id=launch.job_id,
        submission_id=launch.job_id,
        output_dir=tmp_path / "out",
        output_path=launch.output_path,
        tag="mlp-metric-tag",
        max_runtime_seconds=None,
    )
    return json.dumps(ray._runtime_env(launch, run))


def _secrets_in(value: Any) -> list[str]:
    text = json.dumps(value)
    found = []
    start = 0
    while (at := text.find(SECRET_MARK, start)) >= 0:
        found.append(text[at : at + len(SECRET_MARK) + 12])
        start = at + 1
    return found


@settings(max_examples=300, deadline=None)
@given(options=option_dicts())
def test_no_generated_secret_reaches_the_runtime_env(
    options: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_path = tmp_path_factory.mktemp("env")
    serialized = _runtime_env(tmp_path, _Storage(options))
    assert SECRET_MARK not in serialized
    env_vars = json.loads(serialized)["env_vars"]
    assert env_vars["ML_PLATFORM_OUTPUT_URI"] == f"{ROOT}/tenants/t1/models/v1"
    assert env_vars["USER_VAR"] == "visible"
    public = public_storage_options(options)
    assert not _secrets_in(public)
    # what is not a credential arrives as it was (top level and nested)
    sent = json.loads(env_vars.get("ML_PLATFORM_STORAGE_OPTIONS", "{}"))
    assert sent == public
    for name, value in options.items():
        if name in PUBLIC and not _secrets_in(value):
            assert sent[name] == value
    for name in NESTING:
        if isinstance(options.get(name), dict):
            inner = {k: v for k, v in options[name].items() if k in PUBLIC}
            assert inner.items() <= sent[name].items()


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
@pytest.mark.parametrize("variant", range(4))
def test_every_spelling_of_a_credential_name_is_one(name: str, variant: int) -> None:
    assert is_credential_name(_spelling(name, variant))


@pytest.mark.parametrize("name", [*PUBLIC, *NESTING, "anon", "default_block_size", "acl"])
def test_options_a_worker_needs_are_not_credentials(name: str) -> None:
    assert not is_credential_name(name)


def test_a_real_s3_storage_sends_endpoint_and_region_only(tmp_path: Path) -> None:
    options = {
        "key": "AKIAEXAMPLEKEY",
        "secret": "wJalrXUtnFEMI/K7MDENG",
        "token": "FwoGZXIvYXdzEJr",
        "client_kwargs": {
            "endpoint_url": "http://127.0.0.1:9000",
            "region_name": "us-east-1",
            "aws_secret_access_key": "inner-secret-value",
        },
        "config_kwargs": {"retries": {"max_attempts": 3}},
    }
    serialized = _runtime_env(tmp_path, Storage(ROOT, options))
    for secret in ("AKIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG", "FwoGZXIvYXdzEJr", "inner-secret"):
        assert secret not in serialized
    sent = json.loads(json.loads(serialized)["env_vars"]["ML_PLATFORM_STORAGE_OPTIONS"])
    assert sent == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
    }


def test_the_explicit_opt_in_passes_the_secrets(tmp_path: Path) -> None:
    options = {"key": "AKIAEXAMPLEKEY", "secret": "the-secret"}
    serialized = _runtime_env(tmp_path, _Storage(options), pass_storage_secrets=True)
    sent = json.loads(json.loads(serialized)["env_vars"]["ML_PLATFORM_STORAGE_OPTIONS"])
    assert sent == options
    assert Settings.model_fields["ray_pass_storage_secrets"].default is False
