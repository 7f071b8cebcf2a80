"""Property test: random bodies and query strings never produce a 5xx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.job_specs import spec

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

FIELDS = [
    "name",
    "framework",
    "docker_image",
    "entrypoint",
    "data_path",
    "output_path",
    "compute",
    "hyperparameters",
    "env_vars",
    "tags",
    "tenant_id",
]

mutated_specs = st.builds(
    lambda field, value, nested: {
        **spec(),
        field: value,
        "compute": nested if field == "compute" else spec().get("compute", {}),
    },
    st.sampled_from(FIELDS),
    json_values,
    st.dictionaries(
        st.sampled_from(["compute_type", "cpu_cores", "memory_gb", "gpu_count", "gpu_type", "x"]),
        json_values,
        max_size=5,
    ),
)

PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _no_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == response.status_code


@PROPERTY_SETTINGS
@given(body=json_values | mutated_specs)
def test_random_bodies_never_5xx(client: httpx.Client, body: Any) -> None:
    _no_5xx(client.post("/v1/jobs/training", json=body))


@PROPERTY_SETTINGS
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_5xx(client: httpx.Client, raw: bytes) -> None:
    _no_5xx(
        client.post("/v1/jobs/training", content=raw, headers={"content-type": "application/json"})
    )


@PROPERTY_SETTINGS
@given(
    params=st.dictionaries(
        st.sampled_from(["status", "framework", "tags", "page", "page_size", "other"]),
        st.text(max_size=30),
        max_size=5,
    ),
    job_id=st.text(max_size=40),
)
def test_random_queries_and_ids_never_5xx(
    client: httpx.Client, params: dict[str, str], job_id: str
) -> None:
    _no_5xx(client.get("/v1/jobs/training", params=params))
    safe_id = quote(job_id, safe="") or "x"
    _no_5xx(client.get(f"/v1/jobs/training/{safe_id}"))
    _no_5xx(client.delete(f"/v1/jobs/training/{safe_id}"))
