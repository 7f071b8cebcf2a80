"""The registry service: models, versions and aliases. Owns transactions, returns wire models."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ml_platform.auth.principal import CredentialKind, Principal
from ml_platform.core.errors import (
    Conflict,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from ml_platform.core.ids import new_id
from ml_platform.governance.quotas import Limit, QuotaService
from ml_platform.registry.artifacts import ArtifactStore, StagedFile
from ml_platform.registry.deployments import DeploymentLookup, NoDeployments
from ml_platform.registry.formats import detect_format
from ml_platform.registry.signature import Inspection, SignatureInspector
from ml_platform.registry.sources import Sources
from ml_platform.registry.staging import StagingArea
from ml_platform.schemas.jobs import FrameworkType
from ml_platform.schemas.models import (
    ARTIFACT_FORMATS,
    RESERVED_ALIASES,
    Lineage,
    Model,
    ModelAlias,
    ModelCreate,
    ModelFormat,
    ModelListResponse,
    ModelSignature,
    ModelUpdate,
    ModelVersion,
    ModelVersionCreate,
    ModelVersionListResponse,
    SignatureSource,
    VersionSource,
    VersionSourceKind,
    is_valid_alias,
)
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRepository
from ml_platform.store.models import (
    AliasRecord,
    ModelRecord,
    ModelRepository,
    ModelVersionRecord,
    NewVersion,
)

logger = logging.getLogger(__name__)

LATEST = "latest"


def model_not_found(name: str) -> NotFound:
    return NotFound(f"model {name!r} not found")


def version_not_found(name: str, ref: str | int) -> NotFound:
    return NotFound(f"model {name!r} has no version {str(ref)!r}")


@dataclass(frozen=True)
class VersionDraft:
    """What the caller said about a new version besides its bytes."""

    format: ModelFormat | None = None
    signature: ModelSignature | None = None
    metadata: Mapping[str, Any] | None = None
    description: str = ""
    artifact_path: str | None = None
    """For an uploaded archive: which file inside it is the model."""


@dataclass(frozen=True)
class AliasResult:
    alias: ModelAlias
    etag: str
    created: bool = False


def _model_wire(record: ModelRecord, latest: int | None, aliases: list[AliasRecord]) -> Model:
    mapping = {a.name: a.version for a in aliases}
    if latest is not None:
        mapping[LATEST] = latest
    return Model(
        id=record.id,
        name=record.name,
        framework=FrameworkType(record.framework),
        description=record.description,
        tags=record.tags,
        tenant_id=record.tenant_id,
        latest_version=latest,
        aliases=mapping,
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _version_wire(
    model: ModelRecord, record: ModelVersionRecord, aliases: list[str]
) -> ModelVersion:
    return ModelVersion(
        id=record.id,
        model=model.name,
        version=record.version,
        artifact_uri=record.artifact_uri,
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        framework=FrameworkType(record.framework),
        format=ModelFormat(record.format),
        signature=ModelSignature.model_validate(record.signature) if record.signature else None,
        signature_source=SignatureSource(record.signature_source),
        metadata=record.metadata,
        description=record.description,
        source=VersionSource(
            kind=VersionSourceKind(record.source_kind),
            job_id=record.job_id,
            uri=record.source_uri if record.source_kind == VersionSourceKind.URI.value else None,
            filename=record.filename,
        ),
        lineage=Lineage.model_validate(record.lineage) if record.lineage else None,
        aliases=aliases,
        created_by=record.created_by,
        created_at=record.created_at,
    )


class RegistryService:
    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        staging: StagingArea,
        sources: Sources,
        inspector: SignatureInspector,
        *,
        max_upload_bytes: int,
        deployments: DeploymentLookup | None = None,
        quotas: QuotaService | None = None,
    ) -> None:
        self._db = db
        self._quotas = quotas  # max_storage_bytes, checked in the registering transaction
        self.store = store
        self.staging = staging
        self._sources = sources
        self._inspector = inspector
        self.max_upload_bytes = max_upload_bytes
        self.deployments: DeploymentLookup = deployments or NoDeployments()

    # -- models ------------------------------------------------------------------------------

    def create_model(self, principal: Principal, body: ModelCreate) -> Model:
        with self._db.transaction() as session:
            record = ModelRepository(session, principal.tenant_id).add(
                model_id=new_id("mdl"),
                name=body.name,
                framework=body.framework.value,
                description=body.description,
                tags=body.tags,
                created_by=principal.name,
            )
        return _model_wire(record, None, [])

    def get_model(self, principal: Principal, name: str) -> Model:
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            record = self._require_model(repo, name)
            return _model_wire(record, repo.latest_version(record.id), repo.aliases([record.id]))

    def search_models(
        self,
        principal: Principal,
        *,
        framework: str | None,
        tags: Mapping[str, str],
        page: int,
        page_size: int,
    ) -> ModelListResponse:
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            result = repo.search(
                framework=framework, tags=tags, offset=(page - 1) * page_size, limit=page_size
            )
            models = self._models_wire(repo, result.items)
        return ModelListResponse(
            models=models,
            total=result.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < result.total,
        )

    def search_models_after(
        self,
        principal: Principal,
        *,
        framework: str | None,
        tags: Mapping[str, str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Model]:
        """Keyset paging (v2 cursors): up to ``limit`` models after ``after`` = (created_at,
        id), newest first."""
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            records = repo.search_after(framework=framework, tags=tags, after=after, limit=limit)
            return self._models_wire(repo, records)

    @staticmethod
    def _models_wire(repo: ModelRepository, records: list[ModelRecord]) -> list[Model]:
        ids = [m.id for m in records]
        latest = repo.latest_versions(ids)
        aliases = repo.aliases(ids)
        return [
            _model_wire(m, latest.get(m.id), [a for a in aliases if a.model_id == m.id])
            for m in records
        ]

    def update_model(self, principal: Principal, name: str, body: ModelUpdate) -> Model:
        with self._db.transaction() as session:
            repo = ModelRepository(session, principal.tenant_id)
            record = self._require_model(repo, name)
            updated = repo.update(
                record.id,
                framework=body.framework.value if body.framework else None,
                description=body.description,
                tags=body.tags,
            )
            if updated is None:
                raise model_not_found(name)
            return _model_wire(updated, repo.latest_version(record.id), repo.aliases([record.id]))

    def delete_model(self, principal: Principal, name: str) -> None:
        with self._db.transaction() as session:
            repo = ModelRepository(session, principal.tenant_id)
            record = self._require_model(repo, name)
            live = self.deployments.live_deployments(session, principal.tenant_id, name, None)
            if live:
                raise Conflict(
                    f"model {name!r} is deployed ({_names(live)}); delete those deployments first"
                )
            keys = repo.delete(record.id)
        for key in keys:
            self._delete_artifact(key)

    # -- versions ----------------------------------------------------------------------------

    def create_version(
        self, principal: Principal, name: str, body: ModelVersionCreate
    ) -> ModelVersion:
        """A version from a succeeded job of this tenant, or from an artifact URI."""
        model = self._model(principal, name)
        draft = VersionDraft(body.format, body.signature, body.metadata, body.description)
        if body.job_id is not None:
            with self._db.read() as session:
                job = JobRepository(session, principal.tenant_id).succeeded(
                    body.job_id, to_become="only a succeeded job can become a model version"
                )
            staged = self._sources.stage_job_output(
                principal.tenant_id,
                job.id,
                str(job.spec.get("output_path", "")),
                body.artifact_path,
            )
            lineage = Lineage(
                job_id=job.id,
                job_name=job.name,
                hyperparameters=dict(job.spec.get("hyperparameters") or {}),
                metrics=dict(job.metrics),
                data_path=job.spec.get("data_path"),
            )
            with self.staging.cleanup(staged):
                return self._register(
                    principal,
                    model,
                    staged,
                    draft,
                    source_kind=VersionSourceKind.JOB,
                    job_id=job.id,
                    lineage=lineage.model_dump(mode="json"),
                )
        assert body.artifact_uri is not None
        staged = self._sources.stage_uri(principal.tenant_id, body.artifact_uri)
        with self.staging.cleanup(staged):
            return self._register(
                principal,
                model,
                staged,
                draft,
                source_kind=VersionSourceKind.URI,
                source_uri=body.artifact_uri,
            )

    def create_version_from_upload(
        self, principal: Principal, name: str, staged: StagedFile, draft: VersionDraft
    ) -> ModelVersion:
        """A version from an upload already staged (and size-checked) by the caller.

        An archive (zip or tar, by content) is unpacked safely and its one model file (or
        ``draft.artifact_path``) becomes the artifact; the other files are dropped.
        """
        with self.staging.cleanup(staged):
            model = self._model(principal, name)
            if not self._sources.is_archive(staged):
                if draft.artifact_path is not None:
                    message = (
                        "artifact_path names a file inside an uploaded archive "
                        "(.zip, .tar.gz); this upload is a single file"
                    )
                    raise InvalidArgument(message, [FieldViolation("artifact_path", message)])
                return self._register(
                    principal, model, staged, draft, source_kind=VersionSourceKind.UPLOAD
                )
            member, member_path = self._sources.stage_archive_member(staged, draft.artifact_path)
        with self.staging.cleanup(member):
            metadata = {**(draft.metadata or {})}
            metadata.setdefault("archive_member", member_path)
            return self._register(
                principal,
                model,
                member,
                replace(draft, metadata=metadata),
                source_kind=VersionSourceKind.UPLOAD,
            )

    def require_model(self, principal: Principal, name: str) -> None:
        """404 before an upload starts when the model does not exist."""
        self._model(principal, name)

    def _register(
        self,
        principal: Principal,
        model: ModelRecord,
        staged: StagedFile,
        draft: VersionDraft,
        *,
        source_kind: VersionSourceKind,
        source_uri: str | None = None,
        job_id: str | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> ModelVersion:
        if self._quotas is not None:  # before inspecting and copying; admit() below decides
            self._quotas.precheck(principal.tenant_id, Limit.STORAGE_BYTES, staged.size_bytes)
        fmt = draft.format or detect_format(staged.path, staged.filename)
        if fmt is None:
            message = (
                f"{staged.filename!r} is not a model artifact this registry recognizes "
                f"(formats: {', '.join(ARTIFACT_FORMATS)}); if it is one, give its format"
            )
            raise InvalidArgument(message, [FieldViolation("artifact", message)])
        inspection: Inspection | None = None
        if self._inspector.can_load(fmt):
            try:
                inspection = self._inspector.inspect(staged.path, fmt)
            except Unavailable:
                if draft.signature is None:
                    raise
                logger.warning("registering %s unchecked: inference unavailable", staged.filename)
        elif draft.signature is None:
            logger.info("pickle loading is disabled: %s registered without a signature", fmt.value)
        if draft.signature is not None:
            signature, source = draft.signature.model_dump(mode="json"), SignatureSource.GIVEN
        elif inspection is not None and inspection.has_signature:
            signature = ModelSignature.model_validate(
                {
                    "input_features": inspection.input_features,
                    "output_labels": inspection.output_labels,
                }
            ).model_dump(mode="json")
            source = SignatureSource.INFERRED
        else:
            signature, source = None, SignatureSource.NONE
        framework = model.framework
        if inspection is not None and inspection.framework in ("sklearn", "xgboost"):
            framework = inspection.framework
        metadata = dict(draft.metadata or {})
        if inspection is not None and inspection.estimator:
            metadata.setdefault("estimator", inspection.estimator)
        artifact_id = new_id("art")
        key = self.store.new_key(principal.tenant_id, model.id, artifact_id, staged.filename)
        uri = self.store.put(staged, key)
        new = NewVersion(
            id=new_id("mver"),
            artifact_uri=uri,
            artifact_key=key,
            filename=staged.filename,
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            framework=framework,
            format=fmt.value,
            signature=signature,
            signature_source=source.value,
            source_kind=source_kind.value,
            created_by=principal.name,
            metadata=metadata,
            description=draft.description,
            source_uri=source_uri,
            job_id=job_id,
            lineage=lineage,
        )
        try:
            with self._db.transaction() as session:
                if self._quotas is not None:
                    self._quotas.admit(
                        session, principal.tenant_id, Limit.STORAGE_BYTES, staged.size_bytes
                    )
                repo = ModelRepository(session, principal.tenant_id)
                number = repo.allocate_version(model.id)
                if number is None:
                    raise model_not_found(model.name)
                record = repo.add_version(model.id, number, new)
                # The same representation as GET (``latest`` included), so one ETag.
                aliases = self._aliases_of(repo, model, number)
        except BaseException:
            self._delete_artifact(key)
            raise
        logger.info(
            "registered %s v%d for tenant %s (%s, %d bytes)",
            model.name,
            number,
            principal.tenant_id,
            fmt.value,
            staged.size_bytes,
        )
        return _version_wire(model, record, aliases)

    def get_version(self, principal: Principal, name: str, ref: str) -> ModelVersion:
        """A version by number, alias, or ``latest``."""
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            record = self._resolve(repo, model, ref)
            return _version_wire(model, record, self._aliases_of(repo, model, record.version))

    def resolve(self, tenant_id: str, name: str, ref: str) -> ModelVersion:
        """For deployments and serving: the version ``ref`` (number, alias, latest) names now."""
        return self.get_version(Principal(tenant_id, "system", CredentialKind.API_KEY), name, ref)

    def list_versions(
        self, principal: Principal, name: str, *, page: int, page_size: int
    ) -> ModelVersionListResponse:
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            result = repo.list_versions(model.id, offset=(page - 1) * page_size, limit=page_size)
            versions = self._versions_wire(repo, model, result.items)
        return ModelVersionListResponse(
            versions=versions,
            total=result.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < result.total,
        )

    def list_versions_below(
        self, principal: Principal, name: str, *, below: int | None, limit: int
    ) -> list[ModelVersion]:
        """Keyset paging (v2 cursors): up to ``limit`` versions numbered below ``below``,
        highest first."""
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            records = repo.list_versions_below(model.id, below=below, limit=limit)
            return self._versions_wire(repo, model, records)

    @staticmethod
    def _versions_wire(
        repo: ModelRepository, model: ModelRecord, records: list[ModelVersionRecord]
    ) -> list[ModelVersion]:
        aliases = repo.aliases([model.id])
        latest = repo.latest_version(model.id)
        versions = []
        for record in records:
            names = [a.name for a in aliases if a.version == record.version]
            if record.version == latest:
                names.append(LATEST)
            versions.append(_version_wire(model, record, names))
        return versions

    def open_artifact(
        self, principal: Principal, name: str, ref: str
    ) -> tuple[ModelVersion, Iterator[bytes]]:
        version = self.get_version(principal, name, ref)
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            record = repo.get_version(model.id, version.version)
        if record is None:
            raise version_not_found(name, ref)
        if not self.store.exists(record.artifact_key):
            raise NotFound(f"the artifact of {name!r} version {record.version} is missing")
        return version, self.store.iter_bytes(record.artifact_key)

    def delete_version(self, principal: Principal, name: str, ref: str) -> None:
        number = _version_number(ref)
        if number is None:
            raise InvalidArgument(
                f"delete a version by its number, not {ref!r}",
                [FieldViolation("path.version", "must be a version number")],
            )
        with self._db.transaction() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            record = repo.get_version(model.id, number)
            if record is None:
                raise version_not_found(name, number)
            live = self.deployments.live_deployments(session, principal.tenant_id, name, number)
            if live:
                raise Conflict(
                    f"version {number} of {name!r} is deployed ({_names(live)}); "
                    "move or delete those deployments first"
                )
            pinned = [a.name for a in repo.aliases([model.id]) if a.version == number]
            if pinned:
                raise Conflict(
                    f"version {number} of {name!r} is the target of alias "
                    f"{_names(pinned)}; move or delete the alias first"
                )
            repo.delete_version(model.id, number)
            shared = repo.artifact_in_use(record.artifact_key)
        if not shared:
            self._delete_artifact(record.artifact_key)

    # -- aliases -----------------------------------------------------------------------------

    def get_alias(self, principal: Principal, name: str, alias: str) -> AliasResult:
        with self._db.read() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            if alias == LATEST:
                latest = repo.latest_version(model.id)
                if latest is None:
                    raise NotFound(f"model {name!r} has no versions, so no {LATEST!r}")
                return AliasResult(
                    ModelAlias(model=name, alias=LATEST, version=latest), f"latest-{latest}"
                )
            record = repo.get_alias(model.id, alias)
        if record is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        return AliasResult(_alias_wire(name, record), record.etag)

    def set_alias(
        self, principal: Principal, name: str, alias: str, version: int, *, if_match: str | None
    ) -> AliasResult:
        """Create or move an alias. Moving one needs ``if_match`` (its current ETag)."""
        _check_alias_name(alias)
        with self._db.transaction() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            if repo.get_version(model.id, version) is None:
                raise InvalidArgument(
                    f"model {name!r} has no version {version}",
                    [FieldViolation("body.version", f"no version {version}")],
                )
            current = repo.get_alias(model.id, alias)
            if current is None:
                if if_match is not None and if_match != "*":
                    raise PreconditionFailed(
                        f"alias {alias!r} does not exist (it was deleted?); If-Match is stale"
                    )
                if if_match == "*":
                    raise PreconditionFailed(f"alias {alias!r} does not exist (If-Match: *)")
                created = repo.create_alias(model.id, alias, version, principal.name)
                if created is None:
                    raise PreconditionFailed(
                        f"alias {alias!r} was just created by someone else; "
                        "GET it and retry with If-Match"
                    )
                return AliasResult(_alias_wire(name, created), created.etag, created=True)
            if if_match is None:
                if current.version == version:
                    return AliasResult(_alias_wire(name, current), current.etag)
                raise PreconditionFailed(
                    f"alias {alias!r} exists (-> version {current.version}); moving it needs "
                    "If-Match with its current ETag (GET the alias first)"
                )
            expected = current.etag if if_match == "*" else if_match
            moved = repo.move_alias(
                model.id, alias, version, principal.name, expected_etag=expected
            )
            if moved is None:
                raise PreconditionFailed(
                    f"alias {alias!r} changed since you read it (now -> version "
                    f"{current.version}); GET it again and retry with the new ETag"
                )
            return AliasResult(_alias_wire(name, moved), moved.etag)

    def delete_alias(
        self, principal: Principal, name: str, alias: str, *, if_match: str | None
    ) -> None:
        if alias == LATEST:
            raise InvalidArgument(f"{LATEST!r} is implicit and cannot be deleted")
        with self._db.transaction() as session:
            repo = ModelRepository(session, principal.tenant_id)
            model = self._require_model(repo, name)
            if repo.get_alias(model.id, alias) is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            expected = None if if_match in (None, "*") else if_match
            if not repo.delete_alias(model.id, alias, expected_etag=expected):
                raise PreconditionFailed(f"alias {alias!r} changed since you read it")

    # -- helpers -----------------------------------------------------------------------------

    def _model(self, principal: Principal, name: str) -> ModelRecord:
        with self._db.read() as session:
            return self._require_model(ModelRepository(session, principal.tenant_id), name)

    @staticmethod
    def _require_model(repo: ModelRepository, name: str) -> ModelRecord:
        record = repo.get(name)
        if record is None:
            raise model_not_found(name)
        return record

    @staticmethod
    def _resolve(repo: ModelRepository, model: ModelRecord, ref: str) -> ModelVersionRecord:
        number = _version_number(ref)
        if number is None:
            if ref == LATEST:
                number = repo.latest_version(model.id)
            else:
                alias = repo.get_alias(model.id, ref)
                number = alias.version if alias else None
        record = repo.get_version(model.id, number) if number is not None else None
        if record is None:
            raise version_not_found(model.name, ref)
        return record

    @staticmethod
    def _aliases_of(repo: ModelRepository, model: ModelRecord, version: int) -> list[str]:
        names = [a.name for a in repo.aliases([model.id]) if a.version == version]
        if repo.latest_version(model.id) == version:
            names.append(LATEST)
        return names

    def _delete_artifact(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception:
            logger.exception("could not delete artifact %s", key)


def _alias_wire(name: str, record: AliasRecord) -> ModelAlias:
    return ModelAlias(
        model=name,
        alias=record.name,
        version=record.version,
        updated_by=record.updated_by,
        updated_at=record.updated_at,
    )


def _check_alias_name(alias: str) -> None:
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(
            f"{alias!r} is implicit (always the highest version) and cannot be set",
            [FieldViolation("path.alias", "reserved alias")],
        )
    if not is_valid_alias(alias):
        raise InvalidArgument(
            f"invalid alias {alias!r}: lower-case letters, digits and '-', starting with a letter",
            [FieldViolation("path.alias", "must match ^[a-z][a-z0-9-]*$ (max 63)")],
        )


def _version_number(ref: str) -> int | None:
    if ref.isdigit() and len(ref) <= 9:
        value = int(ref)
        return value if value >= 1 else None
    return None


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
