"""Adapters between the store-backed deployments service and the serving plane's seams.

The serving supervisor polls ``StoreDeploymentSource.snapshot()``; each deployment is
resolved to a local artifact file (remote artifacts are copied once into a content-addressed
cache) and handed over as a ``ServedModel``. Load outcomes come back through
``StoreStatusSink`` and land on the deployment row, which the REST API shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from ml_platform.api.context import ApiContext
from ml_platform.auth.service import AuthService
from ml_platform.config import Settings
from ml_platform.deployments.service import DeploymentService, DesiredDeployment
from ml_platform.registry.artifacts import ArtifactStore
from ml_platform.schemas.deployments import DeploymentState
from ml_platform.serving import ServingServer
from ml_platform.serving.models import (
    ArtifactFormat,
    DeploymentSnapshot,
    DeploymentStatus,
    FeatureSpec,
    LoadState,
    ModelSignature,
    Principal,
    ServedModel,
)

logger = logging.getLogger(__name__)

_STATES = {
    LoadState.LOADING: DeploymentState.LOADING,
    LoadState.READY: DeploymentState.READY,
    LoadState.FAILED: DeploymentState.FAILED,
}


def _signature(raw: dict[str, object] | None) -> ModelSignature | None:
    if not raw:
        return None
    features = raw.get("input_features") or []
    labels = raw.get("output_labels") or []
    assert isinstance(features, list) and isinstance(labels, list)
    inputs = tuple(
        FeatureSpec(name=str(f["name"]), dtype=str(f.get("dtype", "float64"))) for f in features
    )
    return (
        ModelSignature(inputs=inputs, outputs=tuple(str(label) for label in labels))
        if inputs
        else None
    )


def _identity(m: ServedModel) -> str:
    """What a snapshot's revision covers for one model: all of its desired state (what workers
    are sent), so a change to any field, aliases and batching included, reaches them."""
    return json.dumps(m.to_dict(), sort_keys=True)


class StoreDeploymentSource:
    def __init__(self, service: DeploymentService, store: ArtifactStore, cache_dir: Path) -> None:
        self._service = service
        self._store = store
        self._cache_dir = cache_dir
        self._lock = threading.Lock()

    def snapshot(self) -> DeploymentSnapshot:
        with self._lock:
            models: list[ServedModel] = []
            for desired in self._service.desired():
                served = self._served(desired)
                if served is not None:
                    models.append(served)
            lines = sorted(map(_identity, models))
            digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
            return DeploymentSnapshot(revision=digest, models=tuple(models))

    def _served(self, desired: DesiredDeployment) -> ServedModel | None:
        signature = _signature(desired.signature)
        problem = None
        if signature is None:
            problem = (
                f"model {desired.model!r} version {desired.version} has no input signature; "
                "register the version with a signature so requests can be checked"
            )
        try:
            artifact_format = ArtifactFormat(desired.format)
        except ValueError:
            problem = f"artifact format {desired.format!r} cannot be served"
        path = None if problem else self._local_artifact(desired)
        if path is None and problem is None:
            problem = "the model artifact could not be fetched from the artifact store"
        if problem is not None or signature is None or path is None:
            self._service.record_status(
                desired.tenant_id,
                desired.name,
                DeploymentState.FAILED,
                problem or "",
                desired.version,
            )
            return None
        return ServedModel(
            tenant_id=desired.tenant_id,
            deployment=desired.name,
            model=desired.model,
            version=desired.version,
            artifact_format=artifact_format,
            artifact_path=str(path),
            signature=signature,
            framework=desired.framework,
            max_batch_size=desired.max_batch_size,
            max_batch_delay_ms=desired.max_batch_delay_ms,
            revision=f"{desired.generation}-{desired.sha256[:12]}",
            aliases=desired.aliases,
            feature_refs=desired.feature_refs,
            entity_key=desired.entity_key,
        )

    def _local_artifact(self, desired: DesiredDeployment) -> Path | None:
        local = self._store.local_path(desired.artifact_key)
        if local is not None:
            return local
        try:  # verified against the recorded SHA-256, written atomically, re-fetched if corrupt
            return self._store.cached_copy(desired.artifact_key, self._cache_dir, desired.sha256)
        except OSError:
            logger.exception("cannot fetch artifact for %s/%s", desired.tenant_id, desired.name)
            return None


class StoreStatusSink:
    def __init__(self, service: DeploymentService) -> None:
        self._service = service

    def report(self, status: DeploymentStatus) -> None:
        state = _STATES.get(status.state)
        if state is None:  # an unloaded old version: the deployment row is about the new one
            return
        message = status.reason if state is DeploymentState.FAILED else ""
        if state is DeploymentState.LOADING:
            message = f"loading version {status.version}"
        try:
            self._service.record_status(
                status.tenant_id, status.deployment, state, message, status.version
            )
        except Exception:
            logger.exception(
                "cannot record the status of %s/%s", status.tenant_id, status.deployment
            )


class ServingAuthenticator:
    """The platform's API keys and JWTs, for gRPC metadata and V2 REST headers."""

    def __init__(self, auth: AuthService) -> None:
        self._auth = auth

    def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        principal = self._auth.authenticate(api_key=api_key, bearer=bearer)
        return Principal(tenant_id=principal.tenant_id, name=principal.name)


def bridge_seams(
    context: ApiContext,
) -> tuple[StoreDeploymentSource, StoreStatusSink, ServingAuthenticator]:
    """The serving plane's three seams, backed by this platform's store and credentials."""
    if context.deployments is None or context.registry is None:
        raise RuntimeError("the serving plane needs the deployments service and the registry")
    source = StoreDeploymentSource(
        context.deployments,
        context.registry.store,
        (context.settings.data_dir / "serving-cache").resolve(),
    )
    return source, StoreStatusSink(context.deployments), ServingAuthenticator(context.auth)


def build_serving(context: ApiContext, settings: Settings | None = None) -> ServingServer:
    """The serving plane wired to this platform, on a background thread (``mlp server``);
    ``settings`` overrides the platform's own (other ports, workers, poll interval)."""
    return ServingServer(settings or context.settings, *bridge_seams(context))
