"""JWT bearer tokens: HS256 with the configured secret, or RS256 keys from a JWKS URL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ml_platform.auth.principal import Role
from ml_platform.core.errors import Unauthenticated

REQUIRED_CLAIMS = ("sub", "tenant_id", "exp", "iat")
ROLE_CLAIM = "role"  # optional: "admin" or "user" (absent: user)


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    tenant_id: str
    expires_at: datetime
    role: Role = Role.USER


class TokenCodec:
    """Issues and verifies tokens; one instance per process (it caches JWKS keys)."""

    def __init__(
        self,
        secret: str,
        *,
        algorithm: str = "HS256",
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: int = 0,
    ) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None

    def issue(self, subject: str, tenant_id: str, ttl: timedelta, *, role: Role = Role.USER) -> str:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": subject,
            "tenant_id": tenant_id,
            "iat": now,
            "exp": now + ttl,
        }
        if role is not Role.USER:
            claims[ROLE_CLAIM] = role.value
        if self._audience:
            claims["aud"] = self._audience
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
            if self._jwks is not None and header.get("alg", "").startswith(("RS", "ES")):
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = [str(header["alg"])]
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token is missing the {exc.claim!r} claim") from exc
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise Unauthenticated("invalid token") from exc
        subject, tenant_id = claims.get("sub"), claims.get("tenant_id")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("token 'sub' claim must be a non-empty string")
        if not isinstance(tenant_id, str) or not tenant_id:
            raise Unauthenticated("token 'tenant_id' claim must be a non-empty string")
        role = claims.get(ROLE_CLAIM, Role.USER.value)
        if not isinstance(role, str) or role not in {r.value for r in Role}:
            allowed = ", ".join(repr(r.value) for r in Role)
            raise Unauthenticated(f"token {ROLE_CLAIM!r} claim must be one of {allowed}")
        return TokenClaims(
            subject=subject,
            tenant_id=tenant_id,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            role=Role(role),
        )
