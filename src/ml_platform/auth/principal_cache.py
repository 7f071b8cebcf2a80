"""A short-lived memory of credentials this process has already checked against the store.

Every authenticated request used to read the store (the API key's row, or a JWT's tenant)
on a worker thread; the read and the thread hop cost more than the rest of a small request's
authentication. A credential that passed is remembered for ``ttl_seconds``, keyed by a
SHA-256 digest (never the credential itself) and never past a JWT's own expiry, so a
repeated request is answered on the event loop with no read and no hop.

What the memory delays: a key revoked through this process (``AuthService.revoke_api_key``)
is forgotten at once; revoked elsewhere (another replica, ``mlp admin`` against the store
directly) it keeps working here for at most ``ttl_seconds``. ``ttl_seconds = 0`` turns the
memory off (every request reads the store, as the serving plane's cache does with 0).
Failures are never remembered: a wrong key always costs its read, so guessing gains nothing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

# the control plane's auth.Principal, or the serving plane's own (serving.models.Principal)
P = TypeVar("P")

MAX_ENTRIES = 10_000
"""Bound on remembered credentials; the memory is emptied when it is full (rare, cheap)."""


def credential_digest(kind: str, credential: str) -> str:
    """The memory's key for a credential: a digest, so no secret is held as a dict key."""
    return kind + ":" + hashlib.sha256(credential.encode("utf-8")).hexdigest()


class PrincipalCache(Generic[P]):
    """Thread-safe: authentication runs on the event loop (hits) and on worker threads (misses).
    The control plane's ``AuthService`` and each serving worker's ``AuthCache`` keep one."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.time) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, P]] = {}
        self._generation = 0  # bumped by clear(): a read that began before it is not kept

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def get(self, digest: str) -> P | None:
        """The remembered principal, or None when unknown or expired."""
        if not self.enabled:
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, principal = entry
        if expires <= self._clock():
            with self._lock:
                if self._entries.get(digest) is entry:
                    del self._entries[digest]
            return None
        return principal

    @property
    def generation(self) -> int:
        """Take it before reading the store; give it to ``put``."""
        return self._generation

    def put(
        self,
        digest: str,
        principal: P,
        *,
        generation: int,
        not_after: datetime | None = None,
    ) -> None:
        """Remember a checked credential for the TTL, and never past ``not_after``; not at all
        when ``clear`` ran since ``generation`` was taken (the read may predate a revocation)."""
        if not self.enabled:
            return
        expires = self._clock() + self.ttl_seconds
        if not_after is not None:
            expires = min(expires, not_after.timestamp())
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (expires, principal)

    def clear(self) -> None:
        """Forget everything (a key was revoked through this process)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
