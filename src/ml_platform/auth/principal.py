"""Who is calling: the tenant, the principal name recorded as ``created_by``, and its role.

An administrator still belongs to a tenant (its own resources live there); what the role adds
is the ``/v1/admin/...`` routes, which name the tenant they act on in the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ml_platform.core.errors import ErrorCode, PermissionDenied


class CredentialKind(str, Enum):
    API_KEY = "api_key"
    JWT = "jwt"


class Role(str, Enum):
    """What a credential may do: ``user`` acts on its own tenant, ``admin`` on any tenant."""

    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    name: str
    kind: CredentialKind
    role: Role = Role.USER

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class AdminRequired(PermissionDenied):
    """A user's credential on an administrator's route (403, code ``ADMIN_REQUIRED``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode.ADMIN_REQUIRED


def ensure_admin(principal: Principal) -> Principal:
    """``principal`` if it holds the admin role, else :class:`AdminRequired`."""
    if not principal.is_admin:
        raise AdminRequired(
            f"this route is for administrators; the {principal.kind.value} "
            f"{principal.name!r} has the role {principal.role.value!r}. Use an admin key "
            "(mlp admin create-api-key --admin) or a token with the claim role=admin"
        )
    return principal
