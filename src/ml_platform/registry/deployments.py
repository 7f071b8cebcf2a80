"""The one thing the registry needs from deployments: "is this model (version) deployed?"

The deployments service implements ``DeploymentLookup`` and is handed to
``RegistryService`` by the composition root; until then nothing counts as deployed.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session


@runtime_checkable
class DeploymentLookup(Protocol):
    def live_deployments(
        self, session: Session, tenant_id: str, model: str, version: int | None
    ) -> list[str]:
        """Names of the tenant's live deployments serving ``model``.

        ``version=None`` asks about any version of the model; a deployment that follows an
        alias counts for the version the alias points to now. Called inside the registry's
        delete transaction (``session``), so a check and the delete see the same rows.
        """
        ...


class NoDeployments:
    """The stand-in until deployments exist: nothing is ever deployed."""

    def live_deployments(
        self, session: Session, tenant_id: str, model: str, version: int | None
    ) -> list[str]:
        return []
