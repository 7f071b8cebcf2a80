"""The v2 representations: v1's resources plus ``links``, and cursor pages.

Every v2 resource is its v1 shape plus a read-only ``links`` object: the paths (v2 where the
related resource has a v2 route, v1 otherwise) of itself and of what it belongs to or holds.
Each ``of`` builds the v2 shape from the v1 object the domain service returned.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ml_platform.schemas.deployments import Deployment
from ml_platform.schemas.jobs import TrainingJob
from ml_platform.schemas.models import Model, ModelAlias, ModelVersion

_EXAMPLE_ID = "job_01jdx3m8c5r7v2k9w4q6y8z0ab"

NEXT_PAGE_HELP = "The next page's token; null on the last page"


def _example_of(model: type[BaseModel]) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    example = extra.get("example") if isinstance(extra, dict) else None
    return dict(example) if isinstance(example, dict) else {}


def _with_links(model: type[BaseModel], links: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"example": {**_example_of(model), "links": links}})


def job_path(job_id: str) -> str:
    return f"/v2/jobs/training/{job_id}"


def model_path(name: str) -> str:
    return f"/v2/models/{name}"


def version_path(name: str, version: int | str) -> str:
    return f"{model_path(name)}/versions/{version}"


def deployment_path(name: str) -> str:
    return f"/v2/deployments/{name}"


# -- training jobs ----------------------------------------------------------------------------

_LINKS = {
    "self": job_path(_EXAMPLE_ID),
    "logs": f"/v1/jobs/training/{_EXAMPLE_ID}/logs",
    "metrics": f"/v1/jobs/training/{_EXAMPLE_ID}/metrics",
    "metrics_history": f"/v1/jobs/training/{_EXAMPLE_ID}/metrics/history",
}


class TrainingJobLinks(BaseModel):
    """Where the job's related resources live."""

    self: str = Field(description="This job", examples=["/v2/jobs/training/job_abc"])
    logs: str = Field(description="Its logs (SSE with `follow=true`)")
    metrics: str = Field(description="Its latest metrics")
    metrics_history: str = Field(description="Every metric point it reported")


class TrainingJobV2(TrainingJob):
    """A training job as v2 returns it: v1's fields plus `links`. From API-Date 2026-12-01,
    list items omit `status_history` unless `?include=status_history`."""

    model_config = _with_links(TrainingJob, _LINKS)

    links: TrainingJobLinks = Field(json_schema_extra={"readOnly": True})

    @classmethod
    def of(cls, job: TrainingJob) -> TrainingJobV2:
        base = f"/v1/jobs/training/{job.id}"
        links = TrainingJobLinks(
            self=job_path(job.id),
            logs=f"{base}/logs",
            metrics=f"{base}/metrics",
            metrics_history=f"{base}/metrics/history",
        )
        return cls(**dict(job), links=links)


class TrainingJobPage(BaseModel):
    """One page of jobs, newest first; pass `next_page_token` back as `page_token`."""

    jobs: list[TrainingJobV2]
    next_page_token: str | None = Field(description=NEXT_PAGE_HELP)


# -- models -----------------------------------------------------------------------------------


class ModelLinks(BaseModel):
    """Where the model's related resources live."""

    self: str = Field(description="This model", examples=["/v2/models/churn"])
    versions: str = Field(description="Its versions, highest first")
    deployments: str = Field(description="The deployments serving it")


def _model_links(name: str) -> ModelLinks:
    return ModelLinks(
        self=model_path(name),
        versions=f"{model_path(name)}/versions",
        deployments=f"/v2/deployments?model={name}",
    )


class ModelV2(Model):
    """A model as v2 returns it: v1's fields plus `links`."""

    model_config = _with_links(Model, _model_links("churn").model_dump())

    links: ModelLinks = Field(json_schema_extra={"readOnly": True})

    @classmethod
    def of(cls, model: Model) -> ModelV2:
        return cls(**dict(model), links=_model_links(model.name))


class ModelPage(BaseModel):
    """One page of models, newest first; pass `next_page_token` back as `page_token`."""

    models: list[ModelV2]
    next_page_token: str | None = Field(description=NEXT_PAGE_HELP)


class ModelVersionLinks(BaseModel):
    """Where the version's related resources live."""

    self: str = Field(description="This version", examples=["/v2/models/churn/versions/3"])
    model: str = Field(description="The model it belongs to")
    artifact: str = Field(description="Its artifact's bytes")
    job: str | None = Field(
        description="The training job it was registered from; null for uploads and URIs"
    )


def _version_links(name: str, version: int, job_id: str | None) -> ModelVersionLinks:
    return ModelVersionLinks(
        self=version_path(name, version),
        model=model_path(name),
        artifact=f"{version_path(name, version)}/artifact",
        job=job_path(job_id) if job_id else None,
    )


class ModelVersionV2(ModelVersion):
    """A model version as v2 returns it: v1's fields plus `links` (its model, artifact and
    the job that trained it)."""

    model_config = _with_links(ModelVersion, _version_links("churn", 3, _EXAMPLE_ID).model_dump())

    links: ModelVersionLinks = Field(json_schema_extra={"readOnly": True})

    @classmethod
    def of(cls, version: ModelVersion) -> ModelVersionV2:
        links = _version_links(version.model, version.version, version.source.job_id)
        return cls(**dict(version), links=links)


class ModelVersionPage(BaseModel):
    """One page of a model's versions, highest first; pass `next_page_token` back as
    `page_token`."""

    versions: list[ModelVersionV2]
    next_page_token: str | None = Field(description=NEXT_PAGE_HELP)


class ModelAliasLinks(BaseModel):
    """Where the alias's related resources live."""

    self: str = Field(description="This alias", examples=["/v2/models/churn/aliases/production"])
    model: str = Field(description="The model it belongs to")
    version: str = Field(description="The version it points to")


def _alias_links(name: str, alias: str, version: int) -> ModelAliasLinks:
    return ModelAliasLinks(
        self=f"{model_path(name)}/aliases/{alias}",
        model=model_path(name),
        version=version_path(name, version),
    )


class ModelAliasV2(ModelAlias):
    """A model alias as v2 returns it: v1's fields plus `links`."""

    model_config = _with_links(ModelAlias, _alias_links("churn", "production", 3).model_dump())

    links: ModelAliasLinks = Field(json_schema_extra={"readOnly": True})

    @classmethod
    def of(cls, alias: ModelAlias) -> ModelAliasV2:
        return cls(**dict(alias), links=_alias_links(alias.model, alias.alias, alias.version))


# -- deployments ------------------------------------------------------------------------------


class DeploymentLinks(BaseModel):
    """Where the deployment's related resources live."""

    self: str = Field(description="This deployment", examples=["/v2/deployments/churn"])
    model: str = Field(description="The model it serves")
    model_version: str | None = Field(
        description="The version it serves or is rolling to (`target_version`); null while "
        "its reference names no version"
    )


def _deployment_links(name: str, model: str, target: int | None) -> DeploymentLinks:
    return DeploymentLinks(
        self=deployment_path(name),
        model=model_path(model),
        model_version=version_path(model, target) if target is not None else None,
    )


class DeploymentV2(Deployment):
    """A deployment as v2 returns it: v1's fields plus `links` (its model and version)."""

    model_config = _with_links(Deployment, _deployment_links("churn", "churn", 3).model_dump())

    links: DeploymentLinks = Field(json_schema_extra={"readOnly": True})

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentV2:
        links = _deployment_links(deployment.name, deployment.model, deployment.target_version)
        return cls(**dict(deployment), links=links)


class DeploymentPage(BaseModel):
    """One page of deployments, newest first; pass `next_page_token` back as `page_token`."""

    deployments: list[DeploymentV2]
    next_page_token: str | None = Field(description=NEXT_PAGE_HELP)
