"""Issue 9, Security 1: a tenant names only locations the administrator allowed for it.

The S3 confused deputy: with an ``s3://`` artifact root the platform holds credentials that
read far more than one tenant may. Before the location policy, tenant B registered
``s3://other-bucket/private/secret.joblib`` and downloaded it byte for byte. Now every URI a
tenant names (``artifact_uri``, ``data_path``, ``output_path``) is checked against its
allowed prefixes first, on every scheme fsspec knows; a refusal is 422 and nothing is read
(moto's request recording proves it).
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from urllib.parse import unquote

import fsspec  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.core.errors import InvalidArgument
from ml_platform.jobs.paths import PathPolicy
from tests.conftest import start_platform
from tests.s3_server import S3

ARTIFACTS = "mlp-artifacts"
SHARED = "team-bucket"
PRIVATE = "other-bucket"


def _new_model(client: object) -> str:
    import secrets

    name = f"m-{secrets.token_hex(4)}"
    response = client.post("/v1/models", json={"name": name, "framework": "sklearn"})  # type: ignore[attr-defined]
    assert response.status_code == 201, response.text
    return name


def test_s3_confused_deputy_is_refused_before_any_read(
    tmp_path: Path, database_url_factory: object, s3: S3, model_bytes: bytes
) -> None:
    for bucket in (ARTIFACTS, SHARED, PRIVATE):
        s3.bucket(bucket)
    s3.put(PRIVATE, "private/secret.joblib", model_bytes)
    s3.put(SHARED, "team-a/model.joblib", model_bytes)
    url = database_url_factory("sqlite")  # type: ignore[operator]
    platform, server = start_platform(
        "sqlite",
        tmp_path / "data",
        url,
        artifact_root=f"s3://{ARTIFACTS}/registry",
        artifact_storage_options=s3.options,
        allowed_uri_prefixes={"team-a": [f"s3://{SHARED}/team-a/"]},
    )
    try:
        auth = platform.context.auth
        auth.create_tenant("team-a")
        a_key = auth.create_api_key("team-a", "a-key").plaintext
        team_a = platform.client(None, **{"X-API-Key": a_key})
        team_b = platform.client(platform.new_tenant("b"))

        # the allowed prefix (keyed by tenant name) works, byte for byte
        mine = _new_model(team_a)
        allowed = team_a.post(
            f"/v1/models/{mine}/versions",
            json={"artifact_uri": f"s3://{SHARED}/team-a/model.joblib"},
        )
        assert allowed.status_code == 201, allowed.text

        theirs = _new_model(team_b)
        hostile = [
            f"s3://{PRIVATE}/private/secret.joblib",
            f"S3://{PRIVATE}/private/secret.joblib",
            f"s3a://{PRIVATE}/private/secret.joblib",
            f"simplecache::s3://{PRIVATE}/private/secret.joblib",
            f"s3://{SHARED}/team-a/model.joblib",  # team-a's prefix, not team-b's
            f"s3://{SHARED}/team-a/../team-a/model.joblib",
            f"s3://{SHARED}//team-a/model.joblib",
            f"s3://{SHARED}/team-a%2f..%2fx/model.joblib",
        ]
        s3.start_recording()
        for uri in hostile:
            response = team_b.post(f"/v1/models/{theirs}/versions", json={"artifact_uri": uri})
            assert response.status_code == 422, (uri, response.text)
            problem = response.json()
            assert [e["path"] for e in problem["errors"]][-1:] == ["artifact_uri"], problem
        for field in ("data_path", "output_path"):
            response = team_b.post(
                "/v1/jobs/training",
                json=_job_body(**{field: f"s3://{PRIVATE}/private/"}),
            )
            assert response.status_code == 422, response.text
            assert field in {e["path"] for e in response.json()["errors"]}
        recorded = s3.recorded()
        assert PRIVATE not in recorded and "team-a" not in recorded, recorded[:2000]
        assert team_b.get(f"/v1/models/{theirs}/versions/1").status_code == 404
    finally:
        platform.close()
        server.stop()
        platform.db.dispose()


def _job_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "j",
        "framework": "sklearn",
        "docker_image": "python:3.11",
        "entrypoint": "python train.py",
        "data_path": "data/train.csv",
        "output_path": "models/out",
        "compute": {"cpu_cores": 1, "memory_gb": 1},
    }
    body.update(changes)
    return body


def test_memory_and_file_schemes_at_the_route(platform: object, model_bytes: bytes) -> None:
    """In-process ``memory://`` (shared with the server thread) and ``file://`` outside the
    tenant's area are refused like any location the tenant was not given."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/private/secret.joblib", model_bytes)
    client = platform.client(platform.new_tenant())  # type: ignore[attr-defined]
    name = _new_model(client)
    db_file = Path(platform.settings.data_dir).resolve()  # type: ignore[attr-defined]
    for uri in (
        "memory://private/secret.joblib",
        "memory:///private/secret.joblib",
        "http://127.0.0.1:1/x.joblib",
        "gs://bucket/x.joblib",
        f"file://{db_file}/mlp.db",
        str(db_file / "mlp.db"),
        "file://otherhost/etc/passwd",
        "zip://model.joblib::memory://private/archive.zip",
    ):
        response = client.post(f"/v1/models/{name}/versions", json={"artifact_uri": uri})
        assert response.status_code == 422, (uri, response.text)


# -- the property: over every scheme fsspec knows, only allowed prefixes pass ----------------

ALLOWED = {"t1": ["s3://bucket/team-a/", "gs://gbucket/"]}
SCHEMES = sorted(fsspec.available_protocols())
segment = st.one_of(
    st.sampled_from(["team-a", "team-ab", "team", "x.joblib", "..", ".", "", "%2e%2e", "%2F"]),
    st.text(alphabet="abcAB.-_%2e/@?#:\\", min_size=0, max_size=6),
)


@st.composite
def uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from([*SCHEMES, "S3", "Gs", "unknownfs"]))
    bucket = draw(st.sampled_from(["bucket", "gbucket", "Bucket", "bucket-x", "x@bucket", ""]))
    parts = draw(st.lists(segment, max_size=4))
    chain = draw(st.sampled_from(["", "simplecache::", "blockcache::"]))
    sep = draw(st.sampled_from(["://", ":///", ":/"]))
    return f"{chain}{scheme}{sep}{bucket}/" + "/".join(parts)


def _canonical_under_allowed(value: str) -> bool:
    """An independent oracle: the URI, taken literally, is already normal (decoding changes
    no segment boundary, normpath changes nothing) and lies under an allowed prefix."""
    if "::" in value or "://" not in value:
        return False
    scheme, rest = value.split("://", 1)
    body = rest[:-1] if rest.endswith("/") else rest
    decoded = unquote(body)
    if any(c in rest for c in "?#\\@") or not decoded or decoded.startswith("/"):
        return False
    if posixpath.normpath(decoded) != decoded or len(decoded.split("/")) != len(body.split("/")):
        return False
    for prefix in ALLOWED["t1"]:
        p_scheme, p_rest = prefix.split("://", 1)
        p_rest = p_rest.rstrip("/")
        if scheme.lower() == p_scheme and (body == p_rest or body.startswith(p_rest + "/")):
            return True
    return False


@settings(max_examples=600, deadline=None)
@given(value=uris())
def test_generated_uris_pass_only_under_allowed_prefixes(value: str) -> None:
    policy = PathPolicy(Path("/nonexistent-data-dir"), allowed_uri_prefixes=ALLOWED)
    for check in (policy.check_data_path, policy.check_output_path, policy.check_artifact_uri):
        try:
            resolved = check("t1", value)
        except InvalidArgument as exc:
            assert exc.violations and exc.violations[0].field in (
                "data_path",
                "output_path",
                "artifact_uri",
            )
            assert not _canonical_under_allowed(value), value
            continue
        if resolved.local is not None:
            # no remote scheme: a local path, and it must stay in the tenant's area
            assert resolved.local.is_relative_to(policy.tenant_root("t1")), value
            continue
        assert _canonical_under_allowed(value), value
        assert any(
            resolved.uri == p.rstrip("/") or resolved.uri.startswith(p.rstrip("/") + "/")
            for p in ALLOWED["t1"]
        ), (value, resolved.uri)


@pytest.mark.parametrize(
    "value",
    [
        "s3://bucket/team-a",
        "s3://bucket/team-a/",
        "S3://bucket/team-a/x.joblib",
        "gs://gbucket/a/b",
    ],
)
def test_allowed_prefixes_pass(value: str) -> None:
    policy = PathPolicy(Path("/nonexistent-data-dir"), allowed_uri_prefixes=ALLOWED)
    resolved = policy.check_data_path("t1", value)
    assert resolved.local is None
    assert resolved.uri == value.rstrip("/").replace("S3://", "s3://")
    with pytest.raises(InvalidArgument):
        policy.check_data_path("t2", value)  # another tenant was given nothing


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "file"])
def test_every_fsspec_scheme_is_refused_without_a_prefix(scheme: str) -> None:
    """Every protocol fsspec knows (``local://`` included; ``file://`` is a local path and
    follows the tenant-area rules) is refused unless a prefix allows it."""
    policy = PathPolicy(Path("/nonexistent-data-dir"), allowed_uri_prefixes=ALLOWED)
    for value in (f"{scheme}://some-bucket/key", f"simplecache::{scheme}://bucket/team-a/x"):
        with pytest.raises(InvalidArgument):
            policy.check_data_path("t1", value)


def test_artifact_root_tenant_subtree_is_allowed_but_models_are_read_only() -> None:
    policy = PathPolicy(Path("/nonexistent-data-dir"), artifact_root="s3://art/registry")
    assert policy.check_data_path("t1", "s3://art/registry/tenants/t1/data/x.csv").uri == (
        "s3://art/registry/tenants/t1/data/x.csv"
    )
    assert (
        policy.check_output_path("t1", "s3://art/registry/tenants/t1/outputs/run-1").local is None
    )
    for value in ("s3://art/registry/tenants/t2/data/x.csv", "s3://art/registry/tenants/t1x/y"):
        with pytest.raises(InvalidArgument):
            policy.check_data_path("t1", value)
    with pytest.raises(InvalidArgument):
        policy.check_output_path("t1", "s3://art/registry/tenants/t1/models/m/a/model.joblib")


def test_bad_administrator_prefix_refuses_to_start(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from ml_platform.config import Settings

    for bad in ("/local/path", "s3://bucket/../x", "simplecache::s3://b/", "s3://"):
        with pytest.raises(ValueError, match="allowed URI prefix"):
            PathPolicy(Path("/d"), allowed_uri_prefixes={"t": [bad]})
        with pytest.raises(ValidationError, match="allowed URI prefix"):
            Settings(data_dir=tmp_path, allowed_uri_prefixes={"t": [bad]})


def test_recorded_requests_are_json_lines(s3: S3) -> None:
    """The recording the confused-deputy test relies on does capture reads (so its
    "nothing read" assertion can fail)."""
    s3.bucket("probe-bucket")
    s3.put("probe-bucket", "k", b"x")
    s3.start_recording()
    fs = fsspec.filesystem("s3", **s3.options)
    assert fs.cat("probe-bucket/k") == b"x"
    lines = [json.loads(line) for line in s3.recorded().splitlines() if line.strip()]
    assert any("probe-bucket" in json.dumps(line) for line in lines)
