"""ETags and conditional requests on jobs (v1 and v2) and deployments, over a real socket."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.api.job_specs import spec
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["code"] == code
    return body


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_job_get_has_an_etag_and_if_none_match_answers_304(
    client: httpx.Client, version: str
) -> None:
    created = client.post(f"/{version}/jobs/training", json=spec())
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    first = client.get(f"/{version}/jobs/training/{job_id}")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert created.headers["etag"] == etag  # nothing changed between create and get

    again = client.get(f"/{version}/jobs/training/{job_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    listed = client.get(
        f"/{version}/jobs/training/{job_id}", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert listed.status_code == 304

    stale = client.get(f"/{version}/jobs/training/{job_id}", headers={"If-None-Match": '"old"'})
    assert stale.status_code == 200 and stale.json()["id"] == job_id

    # cancelling changes the job, so the ETag moves and the old one no longer matches
    assert client.delete(f"/{version}/jobs/training/{job_id}").status_code == 204
    after = client.get(f"/{version}/jobs/training/{job_id}", headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.json()["status"] == "cancelled"
    assert after.headers["etag"] != etag


def test_v1_and_v2_etags_differ_as_their_representations_do(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs/training", json=spec()).json()["id"]
    v1 = client.get(f"/v1/jobs/training/{job_id}")
    v2 = client.get(f"/v2/jobs/training/{job_id}")
    assert v1.headers["etag"] != v2.headers["etag"]
    # a v1 tag does not validate the v2 representation
    cross = client.get(f"/v2/jobs/training/{job_id}", headers={"If-None-Match": v1.headers["etag"]})
    assert cross.status_code == 200


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_job_cancel_with_a_stale_if_match_is_412_and_changes_nothing(
    client: httpx.Client, version: str
) -> None:
    job_id = client.post(f"/{version}/jobs/training", json=spec()).json()["id"]
    current = client.get(f"/{version}/jobs/training/{job_id}").headers["etag"]

    stale = client.delete(f"/{version}/jobs/training/{job_id}", headers={"If-Match": '"stale"'})
    body = _problem(stale, 412, "PRECONDITION_FAILED")
    assert "If-Match" in str(body["detail"])
    assert client.get(f"/{version}/jobs/training/{job_id}").json()["status"] == "pending"

    ok = client.delete(f"/{version}/jobs/training/{job_id}", headers={"If-Match": current})
    assert ok.status_code == 204
    assert client.get(f"/{version}/jobs/training/{job_id}").json()["status"] == "cancelled"


def test_job_if_match_on_a_missing_job_is_404(client: httpx.Client) -> None:
    missing = client.delete("/v1/jobs/training/job_doesnotexist", headers={"If-Match": '"x"'})
    _problem(missing, 404, "NOT_FOUND")


def test_job_if_match_star_matches_any_current_job(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs/training", json=spec()).json()["id"]
    ok = client.delete(f"/v1/jobs/training/{job_id}", headers={"If-Match": "*"})
    assert ok.status_code == 204


@pytest.fixture
def deployment(platform: Platform, tenant: Tenant, client: httpx.Client) -> str:
    model = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
    add_version_row(platform, tenant, model)
    add_version_row(platform, tenant, model)
    created = client.post(
        "/v1/deployments", json={"name": f"d-{model}", "model": model, "version": 1}
    )
    assert created.status_code == 201, created.text
    assert created.headers["etag"].startswith('"')
    return str(created.json()["name"])


def test_deployment_get_has_an_etag_and_if_none_match_answers_304(
    client: httpx.Client, deployment: str
) -> None:
    first = client.get(f"/v1/deployments/{deployment}")
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    cached = client.get(f"/v1/deployments/{deployment}", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag
    other = client.get(f"/v1/deployments/{deployment}", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.json()["name"] == deployment


def test_deployment_patch_with_a_stale_if_match_is_412_then_the_current_one_rolls(
    client: httpx.Client, deployment: str
) -> None:
    etag = client.get(f"/v1/deployments/{deployment}").headers["etag"]
    # someone else changes it first: the ETag we hold goes stale
    moved = client.patch(f"/v1/deployments/{deployment}", json={"max_batch_size": 8})
    assert moved.status_code == 200, moved.text
    fresh = moved.headers["etag"]
    assert fresh != etag
    assert client.get(f"/v1/deployments/{deployment}").headers["etag"] == fresh

    stale = client.patch(
        f"/v1/deployments/{deployment}", json={"version": 2}, headers={"If-Match": etag}
    )
    _problem(stale, 412, "PRECONDITION_FAILED")
    assert client.get(f"/v1/deployments/{deployment}").json()["version"] == 1

    rolled = client.patch(
        f"/v1/deployments/{deployment}", json={"version": 2}, headers={"If-Match": fresh}
    )
    assert rolled.status_code == 200, rolled.text
    assert client.get(f"/v1/deployments/{deployment}").json()["version"] == 2


def test_deployment_delete_with_a_stale_if_match_is_412_and_keeps_it(
    client: httpx.Client, deployment: str
) -> None:
    etag = client.get(f"/v1/deployments/{deployment}").headers["etag"]
    assert client.patch(f"/v1/deployments/{deployment}", json={"max_batch_size": 4}).is_success
    stale = client.delete(f"/v1/deployments/{deployment}", headers={"If-Match": etag})
    _problem(stale, 412, "PRECONDITION_FAILED")
    assert client.get(f"/v1/deployments/{deployment}").status_code == 200

    current = client.get(f"/v1/deployments/{deployment}").headers["etag"]
    gone = client.delete(f"/v1/deployments/{deployment}", headers={"If-Match": current})
    assert gone.status_code == 204
    assert client.get(f"/v1/deployments/{deployment}").status_code == 404
