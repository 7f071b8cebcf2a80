"""One problem renderer: every domain error through REST keeps status == code's table entry."""

from __future__ import annotations

import httpx
import pytest

from ml_platform.core import errors
from ml_platform.core.errors import ErrorCode, PlatformError
from ml_platform.core.problems import HTTP_STATUS, http_status, problem_from_error

DOMAIN_ERRORS: list[tuple[PlatformError, int]] = [
    (errors.InvalidArgument("bad", [errors.FieldViolation("body.x", "bad")]), 422),
    (errors.Unauthenticated(), 401),
    (errors.PermissionDenied("no"), 403),
    (errors.NotFound("none"), 404),
    (errors.AlreadyExists("dup"), 409),
    (errors.Conflict("state"), 409),
    (errors.PreconditionFailed("stale"), 412),
    (errors.PayloadTooLarge("big"), 413),
    (errors.UnsupportedMediaType("xml"), 415),
    (errors.QuotaExceeded("quota"), 429),
    (errors.ResourceExhausted("busy"), 429),
    (errors.Unavailable("down"), 503),
    (errors.DeadlineExceeded("late"), 504),
    (errors.InternalError(), 500),
]


def test_every_error_code_has_a_status_and_an_rpc_code() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert set(errors.RPC_CODE) == set(ErrorCode)
    assert {type(e).__name__ for e, _ in DOMAIN_ERRORS} >= {
        c.__name__
        for c in PlatformError.__subclasses__()
        # the domain's error vocabulary; other packages' private subclasses map through it
        if c.__module__ == errors.__name__
    }


@pytest.mark.parametrize(("error", "status"), DOMAIN_ERRORS, ids=lambda v: type(v).__name__)
def test_problem_from_error(error: PlatformError, status: int) -> None:
    got, doc = problem_from_error(error, instance="/x", request_id="req_1")
    assert got == status == doc["status"] == http_status(error.code)
    assert doc["code"] == error.code.value
    assert doc["request_id"] == "req_1"
    assert doc["detail"] == error.message
    assert doc["errors"] == [{"path": v.field, "message": v.message} for v in error.violations]


def test_v2_status_for_invalid_argument() -> None:
    assert http_status(ErrorCode.INVALID_ARGUMENT, invalid_argument_status=400) == 400


def test_415_is_a_problem_document(client: httpx.Client) -> None:
    response = client.post("/v1/models", content=b"<x/>", headers={"content-type": "text/xml"})
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 415
    assert body["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert body["request_id"] == response.headers["x-request-id"]
