"""Who is calling: the tenant and the principal name recorded as ``created_by``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CredentialKind(str, Enum):
    API_KEY = "api_key"
    JWT = "jwt"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    name: str
    kind: CredentialKind
