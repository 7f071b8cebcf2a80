"""/v2 deployments: the same deployment as v1 in its v2 shape (links to its model and model
version, which resolve), cursor pages (every deployment once while others are created; tokens
tied to their filter), conditional writes and API-Date; over a real socket, both stores."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from ml_platform.api.versioning import DEFAULT_API_DATE
from ml_platform.schemas.deployments import Deployment
from tests.api.cursor_pages import Inserter, page_all
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _model_with_versions(
    platform: Platform, tenant: Tenant, client: httpx.Client, versions: int = 1
) -> str:
    name = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": name, "framework": "sklearn"}).is_success
    for _ in range(versions):
        add_version_row(platform, tenant, name)
    return name


def _deploy(client: httpx.Client, model: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"d-{secrets.token_hex(4)}", "model": model, **fields}
    response = client.post("/v2/deployments", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_v1_and_v2_return_the_same_deployment_in_their_own_shapes_and_links_resolve(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    model = _model_with_versions(platform, tenant, client, versions=2)
    created = client.post(
        "/v2/deployments", json={"name": "churn-live", "model": model, "version": 1}
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v2/deployments/churn-live"
    assert created.headers["api-date"] == DEFAULT_API_DATE
    assert "deprecation" not in created.headers

    v1 = client.get("/v1/deployments/churn-live").json()
    v2 = client.get("/v2/deployments/churn-live").json()
    assert set(v1) == set(Deployment.model_fields) and "links" not in v1
    assert {k: v for k, v in v2.items() if k != "links"} == v1
    assert v2["links"] == {
        "self": "/v2/deployments/churn-live",
        "model": f"/v2/models/{model}",
        "model_version": f"/v2/models/{model}/versions/1",
    }
    assert created.json() == v2
    for rel, link in v2["links"].items():
        response = client.get(link)
        assert response.status_code == 200, (rel, link, response.text)
    assert client.get(v2["links"]["model_version"]).json()["version"] == 1
    assert client.get(v2["links"]["self"]).json() == v2
    deployments_of_model = client.get(
        client.get(v2["links"]["model"]).json()["links"]["deployments"]
    )
    assert deployments_of_model.json()["deployments"] == [v2]

    v1_list = client.get("/v1/deployments").json()
    assert set(v1_list) == {"deployments", "total", "page", "page_size", "has_more"}
    assert v1_list["deployments"] == [v1]
    assert client.get("/v2/deployments").json() == {"deployments": [v2], "next_page_token": None}

    # a v2 rollout answers the v2 shape; its version link follows the target
    etag = client.get("/v2/deployments/churn-live").headers["etag"]
    assert etag != client.get("/v1/deployments/churn-live").headers["etag"]  # other bytes
    rolled = client.patch(
        "/v2/deployments/churn-live", json={"version": 2}, headers={"If-Match": etag}
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["links"]["model_version"] == f"/v2/models/{model}/versions/2"
    assert client.get("/v1/deployments/churn-live").json()["version"] == 2
    stale = client.delete("/v2/deployments/churn-live", headers={"If-Match": etag})
    _problem(stale, 412)
    assert client.delete(v2["links"]["self"]).status_code == 204
    _problem(client.get("/v1/deployments/churn-live"), 404)


def test_an_alias_following_deployment_links_the_version_it_targets(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    model = _model_with_versions(platform, tenant, client, versions=3)
    assert client.put(f"/v1/models/{model}/aliases/production", json={"version": 2}).is_success
    deployment = _deploy(client, model, alias="production")
    assert deployment["target_version"] == 2
    assert deployment["links"]["model_version"] == f"/v2/models/{model}/versions/2"
    latest = _deploy(client, model)  # follows `latest`
    assert latest["links"]["model_version"] == f"/v2/models/{model}/versions/3"


def test_cursor_paging_visits_every_deployment_exactly_once_while_another_thread_inserts(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    model = _model_with_versions(platform, tenant, client)
    existing = [_deploy(client, model)["name"] for _ in range(15)]
    writer = platform.client(tenant)

    def create() -> str:
        body = {"name": f"n-{secrets.token_hex(4)}", "model": model}
        response = writer.post("/v1/deployments", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["name"])

    with Inserter(create) as inserter:
        inserter.turn_page()  # one newer than the first page exists before it is read
        items, pages = page_all(
            client, "/v2/deployments", "deployments", {"page_size": 2}, inserter.turn_page
        )
    assert not inserter.failures, inserter.failures
    seen = [item["name"] for item in items]
    assert len(seen) == len(set(seen)), "a deployment was returned twice"
    assert pages >= 8 and len(inserter.inserted) >= pages
    assert sorted(n for n in seen if n in existing) == sorted(existing)
    assert set(seen) - set(existing) <= set(inserter.inserted)
    keys = [(item["created_at"], item["id"]) for item in items]
    assert keys == sorted(keys, reverse=True)


def test_a_token_reused_with_another_model_filter_is_400(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    first_model = _model_with_versions(platform, tenant, client)
    other_model = _model_with_versions(platform, tenant, client)
    mine = [_deploy(client, first_model)["name"] for _ in range(3)]
    _deploy(client, other_model)
    page = client.get("/v2/deployments", params={"model": first_model, "page_size": 2})
    token = page.json()["next_page_token"]
    assert token
    for params in ({}, {"model": other_model}):
        body = _problem(client.get("/v2/deployments", params={**params, "page_token": token}), 400)
        assert body["code"] == "INVALID_ARGUMENT"
        assert "other filters" in body["detail"]
        assert body["errors"] == [
            {"path": "query.page_token", "message": "issued for a different query"}
        ]
    for bad in ("not-a-token", token[:-3] + "xyz"):
        body = _problem(client.get("/v2/deployments", params={"page_token": bad}), 400)
        assert body["errors"][0]["path"] == "query.page_token"
    rest = client.get("/v2/deployments", params={"model": first_model, "page_token": token})
    names = [d["name"] for d in page.json()["deployments"] + rest.json()["deployments"]]
    assert names == list(reversed(mine))


def test_an_unknown_api_date_is_400_and_changes_nothing(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    model = _model_with_versions(platform, tenant, client)
    bad = {"API-Date": "2026-13-01"}
    post = client.post("/v2/deployments", json={"name": "dated", "model": model}, headers=bad)
    assert _problem(post, 400)["errors"][0]["path"] == "header.API-Date"
    _problem(client.get("/v2/deployments", headers=bad), 400)
    assert client.get("/v1/deployments").json()["total"] == 0
