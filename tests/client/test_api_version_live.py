"""The SDK's API version setting: ``Client(api_version="v2")`` (or ``ML_PLATFORM_API_VERSION``)
sends jobs, models and deployments to /v2 and pages v2 lists by cursor behind the same
iterators; on v1 and on v2 it lists and gets the same objects. Both clients, live platform."""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform import AsyncClient, Client
from tests.api.version_rows import add_version_row
from tests.client._proxy import FailingProxy
from tests.client.conftest import collect, done, make_client
from tests.conftest import Platform, Tenant

SPEC = {
    "framework": "sklearn",
    "docker_image": "python:3.11",
    "data_path": "data/train.csv",
    "output_path": "models/versioned",
}


def _plain(raw: dict[str, Any]) -> dict[str, Any]:
    """A document without v2's ``links``: what v1 answers for the same object."""
    return {k: v for k, v in raw.items() if k != "links"}


async def _tour(client: Client | AsyncClient, model: str) -> dict[str, Any]:
    """What the SDK lists and gets of jobs, models, versions, aliases and deployments."""
    jobs = await collect(client.jobs.list(page_size=2))
    first = await done(client.jobs.get(jobs[-1].id))
    models = await collect(client.models.list())
    return {
        "jobs": [j.data.raw for j in jobs],
        "job": first.data.raw,
        "newest": [j.id for j in await done(client.list_jobs(limit=3))],
        "models": [m.raw for m in models],
        "model": (await done(client.models.get(model))).raw,
        "versions": [v.raw for v in await collect(client.models.versions(model))],
        "latest": (await done(client.models.get_version(model, "latest"))).raw,
        "deployments": [d.data.raw for d in await collect(client.deployments.list())],
        "deployment": (await done(client.deployments.get(f"{model}-live"))).data.raw,
    }


async def test_the_sdk_on_v1_and_on_v2_lists_and_gets_the_same_objects(
    platform: Platform, tenant: Tenant, kind: str
) -> None:
    with FailingProxy(platform.base_url) as v1_proxy, FailingProxy(platform.base_url) as v2_proxy:
        v1 = make_client(kind, v1_proxy.base_url, tenant.api_key)
        v2 = make_client(kind, v2_proxy.base_url, tenant.api_key, api_version="v2")
        try:
            assert (v1.api_version, v2.api_version) == ("v1", "v2")
            created = [await done(v2.train(name=f"ver-{i}", **SPEC)) for i in range(5)]
            model = f"churn-{kind}"
            await done(v2.models.create(model))
            for _ in range(2):
                add_version_row(platform, tenant, model)
            alias = await done(v2.models.set_alias(model, "production", 1))
            deployment = await done(v2.deploy(f"{model}-live", model=model, version=1))
            seen_v1 = await _tour(v1, model)
            seen_v2 = await _tour(v2, model)
            await done(v2.jobs.cancel(created[0].id))
            cancelled = await done(v1.jobs.get(created[0].id))
        finally:
            await done(v1.close())
            await done(v2.close())
        v1_paths = {a.path for a in v1_proxy.arrivals}
        v2_paths = {a.path for a in v2_proxy.arrivals}
        v2_list_pages = [
            a for a in v2_proxy.to("GET", "/v2/jobs/training") if a.path.count("/") == 3
        ]
        v1_list_pages = [
            a for a in v1_proxy.to("GET", "/v1/jobs/training") if a.path.count("/") == 3
        ]

    assert alias.version == 1 and alias.raw["links"]["version"] == f"/v2/models/{model}/versions/1"
    assert deployment.data.raw["links"]["model_version"] == f"/v2/models/{model}/versions/1"
    assert cancelled.status == "cancelled"
    # the same objects, each in its version's shape
    assert [j["id"] for j in seen_v1["jobs"]] == [j.id for j in reversed(created)]
    for key, value in seen_v1.items():
        if key == "newest":
            assert seen_v2[key] == value == [j.id for j in reversed(created)][:3]
            continue
        if isinstance(value, list):
            assert [_plain(item) for item in seen_v2[key]] == value, key
            assert all("links" in item for item in seen_v2[key]) and value, key
            assert not any("links" in item for item in value), key
        else:
            assert _plain(seen_v2[key]) == value, key
            assert "links" in seen_v2[key] and "links" not in value, key
    assert seen_v2["versions"][0]["links"]["model"] == f"/v2/models/{model}"
    # each client spoke only its version to the resources v2 has; v2 paged jobs by cursor
    assert not any(p.startswith("/v2/") for p in v1_paths)
    for prefix in ("/v1/jobs/training", "/v1/models", "/v1/deployments"):
        assert not any(p.startswith(prefix) for p in v2_paths), (prefix, sorted(v2_paths))
    # list(page_size=2) over 5 jobs: 3 pages; list_jobs(limit=3): a 3-item page; both clients
    assert len(v2_list_pages) == len(v1_list_pages) == 4


def test_the_api_version_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    def version(**options: Any) -> str:
        client = make_client(kind, "http://127.0.0.1:9", "k", **options)
        value: str = client.api_version
        return value

    monkeypatch.delenv("ML_PLATFORM_API_VERSION", raising=False)
    assert version() == "v1"
    monkeypatch.setenv("ML_PLATFORM_API_VERSION", "V2")
    assert version() == "v2"
    assert version(api_version="v1") == "v1"  # the argument wins
    with pytest.raises(ValueError, match=r"api_version must be one of v1, v2 .*'v3'"):
        version(api_version="v3")
    monkeypatch.setenv("ML_PLATFORM_API_VERSION", "2")
    with pytest.raises(ValueError, match="ML_PLATFORM_API_VERSION must be one of v1, v2"):
        version()
