"""RS256 tokens verified with keys fetched from a JWKS URL (corporate SSO), served locally."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ml_platform.auth.tokens import TokenCodec
from ml_platform.core.errors import Unauthenticated

KID = "sso-key-1"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    trusted = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return trusted, stranger


@pytest.fixture(scope="module")
def jwks_url(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> Iterator[str]:
    public = json.loads(RSAAlgorithm.to_jwk(keys[0].public_key()))
    document = json.dumps({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


def _claims(**changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "carol@corp.example",
        "tenant_id": "ten_sso",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "aud": "ml-platform",
    }
    claims.update(changes)
    return claims


def test_rs256_token_from_the_jwks_is_accepted(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], jwks_url: str
) -> None:
    codec = TokenCodec("hs-secret-" + "q" * 30, jwks_url=jwks_url, audience="ml-platform")
    token = jwt.encode(_claims(), keys[0], algorithm="RS256", headers={"kid": KID})
    claims = codec.verify(token)
    assert (claims.subject, claims.tenant_id) == ("carol@corp.example", "ten_sso")


def test_rs256_token_signed_by_another_key_or_audience_is_rejected(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], jwks_url: str
) -> None:
    codec = TokenCodec("hs-secret-" + "q" * 30, jwks_url=jwks_url, audience="ml-platform")
    forged = jwt.encode(_claims(), keys[1], algorithm="RS256", headers={"kid": KID})
    with pytest.raises(Unauthenticated, match="invalid token"):
        codec.verify(forged)
    wrong_audience = jwt.encode(
        _claims(aud="other"), keys[0], algorithm="RS256", headers={"kid": KID}
    )
    with pytest.raises(Unauthenticated, match="invalid token"):
        codec.verify(wrong_audience)
    expired = jwt.encode(
        _claims(exp=datetime.now(UTC) - timedelta(seconds=1)),
        keys[0],
        algorithm="RS256",
        headers={"kid": KID},
    )
    with pytest.raises(Unauthenticated, match="expired"):
        codec.verify(expired)


def test_without_jwks_an_rs256_token_is_rejected(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    codec = TokenCodec("hs-secret-" + "q" * 30)
    token = jwt.encode(_claims(), keys[0], algorithm="RS256", headers={"kid": KID})
    with pytest.raises(Unauthenticated, match="invalid token"):
        codec.verify(token)
