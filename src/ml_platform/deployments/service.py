"""The deployments service: CRUD for the REST API and the desired set for the serving plane."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ml_platform.auth.principal import Principal
from ml_platform.core.errors import FieldViolation, InvalidArgument, NotFound
from ml_platform.features.deployment_inputs import check_deployment_features, signature_inputs
from ml_platform.governance.quotas import Limit, QuotaService
from ml_platform.schemas.deployments import (
    Deployment,
    DeploymentCreate,
    DeploymentListResponse,
    DeploymentState,
    DeploymentUpdate,
)
from ml_platform.store.db import Database
from ml_platform.store.deployments import (
    DeploymentRecord,
    DeploymentRepository,
    ServingDeploymentQueries,
)
from ml_platform.store.models import ModelRepository, ModelVersionRecord

logger = logging.getLogger(__name__)

LATEST = "latest"


def deployment_not_found(name: str) -> NotFound:
    return NotFound(f"deployment {name!r} not found")


def resolve_version(repo: ModelRepository, model: str, reference: str) -> ModelVersionRecord | None:
    """The version a reference (number, alias or ``latest``) names right now, if any."""
    record = repo.get(model)
    if record is None:
        return None
    if reference.isdigit():
        number: int | None = int(reference)
    elif reference == LATEST:
        number = repo.latest_version(record.id)
    else:
        alias = repo.get_alias(record.id, reference)
        number = alias.version if alias else None
    return repo.get_version(record.id, number) if number is not None else None


def _aliases_naming(repo: ModelRepository, version: ModelVersionRecord) -> tuple[str, ...]:
    """The aliases (already ordered by name) that point at ``version`` now."""
    return tuple(a.name for a in repo.aliases([version.model_id]) if a.version == version.version)


@dataclass(frozen=True)
class DesiredDeployment:
    """One deployment resolved to the artifact it should serve now."""

    tenant_id: str
    name: str
    model: str
    version: int
    framework: str
    format: str
    artifact_key: str
    sha256: str
    signature: dict[str, Any] | None
    max_batch_size: int
    max_batch_delay_ms: float
    generation: int
    aliases: tuple[str, ...] = ()
    """The model's aliases naming ``version`` now, so the data plane accepts them as versions."""
    feature_refs: tuple[str, ...] = ()
    """Inputs the data plane looks up online (``view:feature``) for a request carrying
    ``entity_key``; empty for a deployment without features."""
    entity_key: str = ""


def _wire(record: DeploymentRecord, target: int | None) -> Deployment:
    return Deployment(
        id=record.id,
        name=record.name,
        model=record.model,
        version=record.version,
        alias=record.alias,
        target_version=target,
        serving_version=record.serving_version,
        status=DeploymentState(record.status),
        status_message=record.status_message,
        max_batch_size=record.max_batch_size,
        max_batch_delay_ms=record.max_batch_delay_ms,
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
        feature_refs=list(record.feature_refs),
        entity_key=record.entity_key,
    )


class DeploymentService:
    def __init__(self, db: Database, quotas: QuotaService | None = None) -> None:
        self._db = db
        self._quotas = quotas  # max_deployments, checked in the creating transaction

    # -- REST ---------------------------------------------------------------------------------
    def create(self, principal: Principal, body: DeploymentCreate) -> Deployment:
        reference = str(body.version) if body.version is not None else (body.alias or LATEST)
        with self._db.transaction() as session:
            if self._quotas is not None:
                self._quotas.admit(session, principal.tenant_id, Limit.DEPLOYMENTS)
            target = self._require_target(session, principal.tenant_id, body.model, reference)
            if body.feature_refs is not None and body.entity_key is not None:
                check_deployment_features(
                    session,
                    principal.tenant_id,
                    body.feature_refs,
                    body.entity_key,
                    signature_inputs(target.signature),
                )
            record = DeploymentRepository(session, principal.tenant_id).add(
                name=body.name,
                model=body.model,
                version=body.version,
                alias=body.alias,
                max_batch_size=body.max_batch_size,
                max_batch_delay_ms=body.max_batch_delay_ms,
                created_by=principal.name,
                feature_refs=body.feature_refs,
                entity_key=body.entity_key,
            )
        return _wire(record, target.version)

    def get(self, principal: Principal, name: str) -> Deployment:
        with self._db.read() as session:
            record = DeploymentRepository(session, principal.tenant_id).get(name)
            if record is None:
                raise deployment_not_found(name)
            return _wire(record, self._target(session, record))

    def search(
        self, principal: Principal, *, model: str | None, page: int, page_size: int
    ) -> DeploymentListResponse:
        with self._db.read() as session:
            result = DeploymentRepository(session, principal.tenant_id).search(
                model=model, offset=(page - 1) * page_size, limit=page_size
            )
            items = [_wire(r, self._target(session, r)) for r in result.items]
        return DeploymentListResponse(
            deployments=items,
            total=result.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < result.total,
        )

    def search_after(
        self,
        principal: Principal,
        *,
        model: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Deployment]:
        """Keyset paging (v2 cursors): up to ``limit`` deployments after ``after`` =
        (created_at, id), newest first."""
        with self._db.read() as session:
            records = DeploymentRepository(session, principal.tenant_id).search_after(
                model=model, after=after, limit=limit
            )
            return [_wire(r, self._target(session, r)) for r in records]

    def update(self, principal: Principal, name: str, body: DeploymentUpdate) -> Deployment:
        changes: dict[str, Any] = {}
        if body.version is not None:
            changes.update(version=body.version, alias=None)
        elif body.alias is not None:
            changes.update(version=None, alias=body.alias)
        if body.max_batch_size is not None:
            changes["max_batch_size"] = body.max_batch_size
        if body.max_batch_delay_ms is not None:
            changes["max_batch_delay_ms"] = body.max_batch_delay_ms
        with self._db.transaction() as session:
            repo = DeploymentRepository(session, principal.tenant_id)
            current = repo.get(name)
            if current is None:
                raise deployment_not_found(name)
            if not changes:
                return _wire(current, self._target(session, current))
            version = changes.get("version", current.version)
            alias = changes.get("alias", current.alias)
            reference = str(version) if version is not None else (alias or LATEST)
            target = self._require_target(session, principal.tenant_id, current.model, reference)
            record = repo.change(name, **changes)
            assert record is not None
        return _wire(record, target.version)

    def delete(self, principal: Principal, name: str) -> None:
        with self._db.transaction() as session:
            if not DeploymentRepository(session, principal.tenant_id).delete(name):
                raise deployment_not_found(name)

    # -- the registry's DeploymentLookup ------------------------------------------------------
    def live_deployments(
        self, session: Session, tenant_id: str, model: str, version: int | None
    ) -> list[str]:
        deployments = DeploymentRepository(session, tenant_id).for_model(model)
        if version is None:
            return sorted(d.name for d in deployments)
        repo = ModelRepository(session, tenant_id)
        names = []
        for deployment in deployments:
            target = resolve_version(repo, model, deployment.reference)
            if deployment.serving_version == version or (target and target.version == version):
                names.append(deployment.name)
        return sorted(names)

    # -- the serving plane --------------------------------------------------------------------
    def desired(self) -> list[DesiredDeployment]:
        """Every deployment resolved to its artifact; unresolvable ones are marked failed."""
        out: list[DesiredDeployment] = []
        with self._db.transaction() as session:
            queries = ServingDeploymentQueries(session)
            for record in queries.all():
                repo = ModelRepository(session, record.tenant_id)
                target = resolve_version(repo, record.model, record.reference)
                if target is None:
                    message = f"model {record.model!r} has no version {record.reference!r} any more"
                    if record.status != "failed" or record.status_message != message:
                        queries.record_status(
                            record.tenant_id,
                            record.name,
                            status="failed",
                            message=message,
                            serving_version=None,
                        )
                    continue
                out.append(
                    DesiredDeployment(
                        tenant_id=record.tenant_id,
                        name=record.name,
                        model=record.model,
                        version=target.version,
                        framework=target.framework,
                        format=target.format,
                        artifact_key=target.artifact_key,
                        sha256=target.sha256,
                        signature=target.signature,
                        max_batch_size=record.max_batch_size,
                        max_batch_delay_ms=record.max_batch_delay_ms,
                        generation=record.generation,
                        aliases=_aliases_naming(repo, target),
                        feature_refs=record.feature_refs,
                        entity_key=record.entity_key or "",
                    )
                )
        return out

    def record_status(
        self, tenant_id: str, name: str, state: DeploymentState, message: str, version: int
    ) -> None:
        with self._db.transaction() as session:
            ServingDeploymentQueries(session).record_status(
                tenant_id,
                name,
                status=state.value,
                message=message,
                serving_version=version if state is DeploymentState.READY else None,
            )

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _target(session: Session, record: DeploymentRecord) -> int | None:
        target = resolve_version(
            ModelRepository(session, record.tenant_id), record.model, record.reference
        )
        return target.version if target else None

    @staticmethod
    def _require_target(
        session: Session, tenant_id: str, model: str, reference: str
    ) -> ModelVersionRecord:
        repo = ModelRepository(session, tenant_id)
        if repo.get(model) is None:
            raise InvalidArgument(
                f"model {model!r} not found in your registry",
                [FieldViolation("body.model", "no such model")],
            )
        target = resolve_version(repo, model, reference)
        if target is None:
            field = "body.version" if reference.isdigit() else "body.alias"
            raise InvalidArgument(
                f"model {model!r} has no version {reference!r}",
                [FieldViolation(field, f"{reference!r} names no version of {model!r}")],
            )
        return target
