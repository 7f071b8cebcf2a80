"""Authentication and the admin operations on tenants and keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from ml_platform.auth.keys import (
    KEY_PREFIX,
    digests_match,
    generate_key,
    hash_key,
    looks_like_key,
    public_prefix,
)
from ml_platform.auth.principal import CredentialKind, Principal, Role
from ml_platform.auth.principal_cache import PrincipalCache, credential_digest
from ml_platform.auth.tokens import TokenCodec
from ml_platform.core.errors import InvalidArgument, NotFound, Unauthenticated
from ml_platform.store.db import Database
from ml_platform.store.records import ApiKeyRecord, TenantRecord
from ml_platform.store.tenants import (
    ApiKeyRepository,
    TenantRepository,
    key_candidates,
    tenant_exists,
)

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class CreatedKey:
    """A new key: the plaintext exists only in this object, shown once."""

    record: ApiKeyRecord
    plaintext: str


def _credential(api_key: str | None, bearer: str | None) -> tuple[CredentialKind, str] | None:
    """Which credential a request presents: ``X-API-Key`` first, then the bearer token."""
    if api_key:
        return CredentialKind.API_KEY, api_key
    if bearer:
        # `Authorization: Bearer mlp_...` is an API key (JWTs never start with `mlp_`)
        kind = CredentialKind.API_KEY if bearer.startswith(KEY_PREFIX) else CredentialKind.JWT
        return kind, bearer
    return None


class AuthService:
    def __init__(self, db: Database, tokens: TokenCodec, *, cache_seconds: float = 0.0) -> None:
        """``cache_seconds``: how long a checked credential is trusted without reading the
        store again (``auth.principal_cache``; 0 reads it on every call)."""
        self._db = db
        self._tokens = tokens
        self._cache: PrincipalCache[Principal] = PrincipalCache(cache_seconds)

    # -- authentication -------------------------------------------------------------------
    def authenticate(self, *, api_key: str | None, bearer: str | None) -> Principal:
        """The caller, checked against the store (remembered for the cache's TTL); blocking."""
        presented = _credential(api_key, bearer)
        if presented is None:
            raise Unauthenticated("missing credentials: send X-API-Key or Authorization: Bearer")
        kind, value = presented
        if kind is CredentialKind.API_KEY:
            return self._authenticate_key(value)
        return self._authenticate_token(value)

    def remembered(self, *, api_key: str | None, bearer: str | None) -> Principal | None:
        """The caller if this credential passed ``authenticate`` within the cache's TTL, else
        None (then call ``authenticate``). Never blocks: safe on an event loop."""
        if not self._cache.enabled:
            return None
        presented = _credential(api_key, bearer)
        if presented is None:
            return None
        kind, value = presented
        return self._cache.get(credential_digest(kind.value, value))

    def _authenticate_key(self, api_key: str) -> Principal:
        if not looks_like_key(api_key):
            raise Unauthenticated("invalid API key")
        digest = hash_key(api_key)
        generation = self._cache.generation
        with self._db.engine.connect() as connection:
            candidates = key_candidates(connection, public_prefix(api_key))
        record = next((r for r, stored in candidates if digests_match(stored, digest)), None)
        if record is None:
            raise Unauthenticated("invalid API key")
        if not record.active:
            raise Unauthenticated("API key revoked")
        principal = Principal(
            tenant_id=record.tenant_id,
            name=record.name,
            kind=CredentialKind.API_KEY,
            role=Role.ADMIN if record.is_admin else Role.USER,
        )
        self._cache.put(
            credential_digest(CredentialKind.API_KEY.value, api_key),
            principal,
            generation=generation,
        )
        return principal

    def _authenticate_token(self, token: str) -> Principal:
        claims = self._tokens.verify(token)
        generation = self._cache.generation
        with self._db.engine.connect() as connection:
            if not tenant_exists(connection, claims.tenant_id):
                raise Unauthenticated("token names an unknown tenant")
        principal = Principal(
            tenant_id=claims.tenant_id,
            name=claims.subject,
            kind=CredentialKind.JWT,
            role=claims.role,
        )
        # never trusted past its own expiry: a remembered token expires when the token does
        self._cache.put(
            credential_digest(CredentialKind.JWT.value, token),
            principal,
            generation=generation,
            not_after=claims.expires_at,
        )
        return principal

    # -- administration -------------------------------------------------------------------
    def create_tenant(self, name: str) -> TenantRecord:
        if not TENANT_NAME.match(name):
            raise InvalidArgument(f"tenant name {name!r} must match ^[a-z0-9][a-z0-9-]{{0,62}}$")
        with self._db.transaction() as session:
            return TenantRepository(session).create(name)

    def tenant(self, name: str) -> TenantRecord:
        with self._db.read() as session:
            return TenantRepository(session).require_by_name(name)

    def tenant_by_id(self, tenant_id: str) -> TenantRecord:
        with self._db.read() as session:
            tenant = TenantRepository(session).get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return tenant

    def tenants(self) -> list[TenantRecord]:
        with self._db.read() as session:
            return TenantRepository(session).all()

    def create_api_key(self, tenant_name: str, key_name: str, *, admin: bool = False) -> CreatedKey:
        """A new key of ``tenant_name``; ``admin=True`` also opens the ``/v1/admin`` routes."""
        if not key_name or len(key_name) > 100:
            raise InvalidArgument("API key name must be 1..100 characters")
        new = generate_key()
        with self._db.transaction() as session:
            tenant = TenantRepository(session).require_by_name(tenant_name)
            record = ApiKeyRepository(session).create(
                tenant.id, key_name, new.prefix, new.digest, is_admin=admin
            )
        return CreatedKey(record=record, plaintext=new.plaintext)

    def revoke_api_key(self, key: str) -> ApiKeyRecord:
        """Revoke by key id (``key_...``) or by the plaintext key itself; effective at once in
        this process (other processes stop trusting it within their cache's TTL)."""
        with self._db.transaction() as session:
            repo = ApiKeyRepository(session)
            if looks_like_key(key):
                record = repo.by_hash(hash_key(key))
                if record is None:
                    raise NotFound("no such API key")
                key = record.id
            revoked = repo.revoke(key)
        self._cache.clear()
        return revoked

    def api_keys(self, tenant_name: str) -> list[ApiKeyRecord]:
        with self._db.read() as session:
            tenant = TenantRepository(session).require_by_name(tenant_name)
            return ApiKeyRepository(session).for_tenant(tenant.id)

    def issue_token(
        self, tenant_name: str, subject: str, ttl: timedelta, *, admin: bool = False
    ) -> str:
        if ttl <= timedelta(0):
            raise InvalidArgument("token lifetime must be positive")
        tenant = self.tenant(tenant_name)
        return self._tokens.issue(subject, tenant.id, ttl, role=Role.ADMIN if admin else Role.USER)

    def resolve_tenant(self, ref: str) -> TenantRecord:
        """A tenant named by its id (``ten_...``) or its name, as admin routes take it."""
        with self._db.read() as session:
            repo = TenantRepository(session)
            tenant = repo.get(ref) or repo.by_name(ref)
        if tenant is None:
            raise NotFound(f"tenant {ref!r} not found (give its name or its id)")
        return tenant
