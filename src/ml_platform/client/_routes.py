"""The REST paths of the API version a client speaks (``api_version``, default v1).

Training jobs, models (versions, aliases, artifacts) and deployments have v2 routes, which
answer the same resources with ``links`` and page lists by cursor; a job's logs and metrics,
the data area, code packages and ``/me`` exist on v1 only and stay there.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Routes", "path_segment"]


def path_segment(value: str | int) -> str:
    """One URL path segment (ids and names are opaque: quote anything unusual)."""
    return quote(str(value), safe="")


@dataclass(frozen=True)
class Routes:
    api_version: str = "v1"

    @property
    def v2(self) -> bool:
        return self.api_version == "v2"

    @property
    def list_cursor(self) -> str:
        """How this version's lists page: ``page`` numbers (v1) or ``page_token`` (v2)."""
        return "page_token" if self.v2 else "page"

    @property
    def jobs(self) -> str:
        return f"/{self.api_version}/jobs/training"

    def job(self, job_id: str) -> str:
        return f"{self.jobs}/{path_segment(job_id)}"

    @property
    def models(self) -> str:
        return f"/{self.api_version}/models"

    def model(self, name: str) -> str:
        return f"{self.models}/{path_segment(name)}"

    def versions(self, name: str) -> str:
        return f"{self.model(name)}/versions"

    def model_version(self, name: str, version: int | str) -> str:
        return f"{self.versions(name)}/{path_segment(version)}"

    def alias(self, name: str, alias: str) -> str:
        return f"{self.model(name)}/aliases/{path_segment(alias)}"

    @property
    def deployments(self) -> str:
        return f"/{self.api_version}/deployments"

    def deployment(self, name: str) -> str:
        return f"{self.deployments}/{path_segment(name)}"
