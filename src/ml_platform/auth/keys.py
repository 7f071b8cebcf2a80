"""API keys: ``mlp_<prefix>_<secret>``; only a SHA-256 digest is ever stored.

The keys carry 256 bits of entropy, so a fast digest is safe (no password stretching needed),
and the visible ``mlp_`` prefix makes leaked keys greppable by secret scanners.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "mlp_"


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str
    digest: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate_key() -> NewKey:
    public = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    plaintext = f"{KEY_PREFIX}{public}_{secret}"
    return NewKey(plaintext=plaintext, prefix=f"{KEY_PREFIX}{public}", digest=hash_key(plaintext))


def public_prefix(plaintext: str) -> str:
    """The non-secret part of a key (``mlp_1a2b3c4d``) used to find its row."""
    return plaintext.rsplit("_", 1)[0] if plaintext.count("_") >= 2 else plaintext[:12]


def looks_like_key(candidate: str) -> bool:
    return candidate.startswith(KEY_PREFIX) and 20 <= len(candidate) <= 200


def digests_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
