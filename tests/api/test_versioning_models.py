"""/v2 models, versions and aliases: the same resources as v1 in their v2 shapes (links),
cursor pages (every model once while others are created; tokens tied to their query), links
that resolve, API-Date; over a real socket, both stores."""

from __future__ import annotations

import io
import secrets
from typing import Any

import httpx
import joblib
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ml_platform.api.versioning import DEFAULT_API_DATE
from ml_platform.schemas.models import Model, ModelVersion
from tests.api.cursor_pages import Inserter, page_all
from tests.api.job_specs import spec
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant
from tests.registry.conftest import succeeded_job


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def _model(client: httpx.Client, prefix: str = "m", **fields: Any) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    body = {"name": name, "framework": "sklearn", **fields}
    response = client.post("/v2/models", json=body)
    assert response.status_code == 201, response.text
    return name


def _without_links(v2: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in v2.items() if k != "links"}


# -- one resource, two shapes -----------------------------------------------------------------


def test_v1_and_v2_return_the_same_model_version_and_alias_in_their_own_shapes(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    created = client.post("/v2/models", json={"name": "churn", "framework": "sklearn"})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v2/models/churn"
    assert created.headers["api-date"] == DEFAULT_API_DATE
    assert "deprecation" not in created.headers
    job_id = client.post("/v1/jobs/training", json=spec()).json()["id"]
    add_version_row(platform, tenant, "churn", job_id=job_id)
    alias = client.put("/v2/models/churn/aliases/production", json={"version": 1})
    assert alias.status_code == 201, alias.text

    v1 = client.get("/v1/models/churn").json()
    v2 = client.get("/v2/models/churn").json()
    assert set(v1) == set(Model.model_fields) and "links" not in v1
    assert _without_links(v2) == v1
    assert v2["links"] == {
        "self": "/v2/models/churn",
        "versions": "/v2/models/churn/versions",
        "deployments": "/v2/deployments?model=churn",
    }
    assert v1["aliases"] == {"production": 1, "latest": 1}

    v1_version = client.get("/v1/models/churn/versions/1").json()
    v2_version = client.get("/v2/models/churn/versions/1").json()
    assert set(v1_version) == set(ModelVersion.model_fields)
    assert _without_links(v2_version) == v1_version
    assert v2_version["links"] == {
        "self": "/v2/models/churn/versions/1",
        "model": "/v2/models/churn",
        "artifact": "/v2/models/churn/versions/1/artifact",
        "job": f"/v2/jobs/training/{job_id}",
    }
    # by alias: the same version, its self link by number
    assert client.get("/v2/models/churn/versions/production").json() == v2_version

    v1_alias = client.get("/v1/models/churn/aliases/production").json()
    v2_alias = client.get("/v2/models/churn/aliases/production").json()
    assert _without_links(v2_alias) == v1_alias == _without_links(alias.json())
    assert v2_alias["links"] == {
        "self": "/v2/models/churn/aliases/production",
        "model": "/v2/models/churn",
        "version": "/v2/models/churn/versions/1",
    }

    v1_list = client.get("/v1/models").json()
    v2_list = client.get("/v2/models").json()
    assert set(v1_list) == {"models", "total", "page", "page_size", "has_more"}
    assert v2_list == {"models": [v2], "next_page_token": None}
    assert v1_list["models"] == [v1]
    v1_versions = client.get("/v1/models/churn/versions").json()
    v2_versions = client.get("/v2/models/churn/versions").json()
    assert v2_versions == {"versions": [v2_version], "next_page_token": None}
    assert v1_versions["versions"] == [v1_version]

    # v2 writes answer v2 shapes; v1 sees the change in its own
    patched = client.patch("/v2/models/churn", json={"description": "from v2"})
    assert patched.status_code == 200 and patched.json()["links"] == v2["links"]
    assert client.get("/v1/models/churn").json()["description"] == "from v2"
    assert client.delete("/v2/models/churn/aliases/production").status_code == 204
    assert client.get("/v1/models/churn/aliases/production").status_code == 404
    assert client.delete("/v2/models/churn").status_code == 204
    _problem(client.get("/v1/models/churn"), 404)


def test_a_version_uploaded_or_from_a_uri_links_no_job(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    name = _model(client)
    add_version_row(platform, tenant, name)  # source kind "uri"
    links = client.get(f"/v2/models/{name}/versions/1").json()["links"]
    assert links["job"] is None


def test_every_link_resolves(platform: Platform, tenant: Tenant, client: httpx.Client) -> None:
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(frame, [0, 1, 0, 1]), buffer)
    job_id = succeeded_job(platform, tenant, {"model.joblib": buffer.getvalue()})
    name = _model(client)
    signature = {"input_features": [{"name": "a", "dtype": "float64"}]}  # given: not inferred
    created = client.post(
        f"/v2/models/{name}/versions", json={"job_id": job_id, "signature": signature}
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v2/models/{name}/versions/1"
    assert client.put(f"/v2/models/{name}/aliases/staging", json={"version": 1}).is_success
    version = client.get(f"/v2/models/{name}/versions/1").json()
    assert _without_links(created.json()) == _without_links(version) | {"aliases": ["latest"]}

    documents = [
        client.get(f"/v2/models/{name}").json(),
        version,
        client.get(f"/v2/models/{name}/aliases/staging").json(),
    ]
    followed = 0
    for document in documents:
        for rel, link in document["links"].items():
            assert link is not None, rel
            response = client.get(link)
            assert response.status_code == 200, (rel, link, response.text)
            followed += 1
            if rel == "self":
                assert response.json() == document
    assert followed == 10
    assert client.get(version["links"]["artifact"]).content == buffer.getvalue()
    job = client.get(version["links"]["job"]).json()
    assert job["id"] == job_id and job["links"]["self"] == version["links"]["job"]
    listed = client.get(documents[0]["links"]["versions"]).json()["versions"]
    assert listed == [version]


# -- cursor pages -----------------------------------------------------------------------------


def test_cursor_paging_visits_every_model_exactly_once_while_another_thread_inserts(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    existing = [_model(client, "old") for _ in range(24)]
    writer = platform.client(tenant)

    def create() -> str:
        response = writer.post(
            "/v2/models", json={"name": f"new-{secrets.token_hex(4)}", "framework": "sklearn"}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["name"])

    with Inserter(create) as inserter:
        inserter.turn_page()  # a model newer than the first page exists before it is read
        items, pages = page_all(
            client, "/v2/models", "models", {"page_size": 3}, inserter.turn_page
        )
    assert not inserter.failures, inserter.failures
    seen = [item["name"] for item in items]
    assert len(seen) == len(set(seen)), "a model was returned twice"
    assert pages >= 9 and len(inserter.inserted) >= pages  # 24 + those made before page 1
    assert sorted(n for n in seen if n.startswith("old-")) == sorted(existing)
    assert set(seen) - set(existing) <= set(inserter.inserted)
    keys = [(item["created_at"], item["id"]) for item in items]
    assert keys == sorted(keys, reverse=True)


def test_model_pages_follow_the_filters(client: httpx.Client) -> None:
    wanted = [_model(client, tags={"team": "x"}) for _ in range(5)]
    _model(client, tags={"team": "y"})
    _model(client, framework="pytorch", tags={"team": "x"})
    items, pages = page_all(
        client, "/v2/models", "models", {"page_size": 2, "framework": "sklearn", "tags": "team=x"}
    )
    assert [item["name"] for item in items] == list(reversed(wanted))
    assert pages == 3


def test_version_pages_are_highest_first_and_skip_nothing_while_versions_are_added(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    name = _model(client)
    for _ in range(10):
        add_version_row(platform, tenant, name)
    with Inserter(lambda: str(add_version_row(platform, tenant, name))) as inserter:
        path = f"/v2/models/{name}/versions"
        items, pages = page_all(client, path, "versions", {"page_size": 3}, inserter.turn_page)
    numbers = [item["version"] for item in items]
    # what existed when the first page was read (10, plus any the inserter made before it),
    # each once, highest first; versions added while paging are above every cursor
    assert numbers[0] >= 10 and numbers == list(range(numbers[0], 0, -1))
    assert pages == -(-numbers[0] // 3) and len(inserter.inserted) >= pages - 1
    assert all(item["links"]["model"] == f"/v2/models/{name}" for item in items)


def test_a_token_reused_with_other_filters_or_on_another_list_is_400(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    names = [_model(client, tags={"team": "x"}) for _ in range(3)]
    for _ in range(3):
        add_version_row(platform, tenant, names[0])
    first = client.get("/v2/models", params={"page_size": 1, "tags": "team=x"})
    token = first.json()["next_page_token"]
    assert token and first.headers["link"].endswith('rel="next"')
    version_token = client.get(f"/v2/models/{names[0]}/versions", params={"page_size": 1}).json()[
        "next_page_token"
    ]
    assert version_token
    for path, params in (
        ("/v2/models", {"page_token": token}),
        ("/v2/models", {"page_token": token, "tags": "team=y"}),
        ("/v2/models", {"page_token": token, "tags": "team=x", "framework": "sklearn"}),
        ("/v2/jobs/training", {"page_token": token, "tags": "team=x"}),
        ("/v2/deployments", {"page_token": token}),
        (f"/v2/models/{names[1]}/versions", {"page_token": version_token}),
    ):
        body = _problem(client.get(path, params=params), 400)
        assert body["code"] == "INVALID_ARGUMENT", (path, body)
        assert "other filters" in body["detail"] or "not a token" in body["detail"], body
        assert body["errors"][0]["path"] == "query.page_token"
    # a models token on a versions list (and back) is not a token of that list
    _problem(client.get(f"/v2/models/{names[0]}/versions", params={"page_token": token}), 400)
    _problem(client.get("/v2/models", params={"page_token": version_token}), 400)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    body = _problem(
        client.get("/v2/models", params={"page_token": tampered, "tags": "team=x"}), 400
    )
    assert "not a token" in body["detail"]
    # the same filters (page_size may change) keep working
    rest = client.get("/v2/models", params={"page_token": token, "tags": "team=x", "page_size": 9})
    assert [m["name"] for m in rest.json()["models"]] == list(reversed(names))[1:]
    rest_versions = client.get(
        f"/v2/models/{names[0]}/versions", params={"page_token": version_token}
    )
    assert [v["version"] for v in rest_versions.json()["versions"]] == [2, 1]
    # another tenant's token is tied to that tenant's query
    other = platform.client(platform.new_tenant("foreign"))
    _problem(other.get("/v2/models", params={"page_token": token, "tags": "team=x"}), 400)


# -- API-Date ---------------------------------------------------------------------------------


def test_an_unknown_api_date_is_400_on_every_v2_model_route(client: httpx.Client) -> None:
    name = _model(client)
    bad = {"API-Date": "2020-01-01"}
    for method, path, body in (
        ("GET", "/v2/models", None),
        ("GET", f"/v2/models/{name}", None),
        ("GET", f"/v2/models/{name}/versions", None),
        ("GET", f"/v2/models/{name}/aliases/production", None),
        ("PATCH", f"/v2/models/{name}", {"description": "x"}),
        ("POST", "/v2/models", {"name": f"{name}-2", "framework": "sklearn"}),
        ("DELETE", f"/v2/models/{name}", None),
    ):
        response = client.request(method, path, json=body, headers=bad)
        problem = _problem(response, 400)
        assert problem["errors"][0]["path"] == "header.API-Date", (method, path)
    assert client.get(f"/v1/models/{name}").json()["description"] == ""  # nothing changed
    assert client.get(f"/v2/models/{name}-2").status_code == 404
    assert client.get("/v2/models", headers={"API-Date": "2026-12-01"}).headers["api-date"] == (
        "2026-12-01"
    )
    assert "api-date" not in client.get("/v1/models").headers


def test_the_migration_page_names_the_v2_models_and_deployments(platform: Platform) -> None:
    page = platform.client().get("/docs/migrating-to-v2")
    assert page.status_code == 200
    for path in ("/v2/models", "/v2/deployments", 'api_version="v2"'):
        assert path in page.text
