"""Checks a deployment's ``feature_refs`` + ``entity_key`` when it is created: every view is
the tenant's, every feature is in its view, the entity key is the one join key of each view's
entity, and each feature names an input of the model version (when its signature is known)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.features.types import parse_refs
from ml_platform.store.features import EntityRecord, FeatureRepository

__all__ = ["check_deployment_features", "signature_inputs"]


def _refused(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {why}", [FieldViolation(field, why)])


def signature_inputs(signature: dict[str, Any] | None) -> list[str] | None:
    """The input names of a registered version's signature, or None when it has none."""
    features = (signature or {}).get("input_features") or []
    return [str(f["name"]) for f in features] or None


def check_deployment_features(
    session: Session,
    tenant_id: str,
    refs: Sequence[str],
    entity_key: str,
    model_inputs: Sequence[str] | None,
) -> None:
    """Raise ``InvalidArgument`` (422) naming ``body.feature_refs[i]`` / ``body.entity_key``."""
    field = "body.feature_refs"
    parsed = parse_refs(refs, field)
    repo = FeatureRepository(session, tenant_id)
    views = repo.get_views(ref.view for ref in parsed)
    entities: dict[str, EntityRecord | None] = {}
    seen: dict[str, int] = {}
    for i, ref in enumerate(parsed):
        view = views.get(ref.view)
        if view is None:
            raise _refused(f"{field}[{i}]", f"feature view {ref.view!r} not found")
        if ref.feature not in dict(view.features):
            known = ", ".join(name for name, _ in view.features[:20])
            raise _refused(
                f"{field}[{i}]",
                f"feature view {ref.view!r} has no feature {ref.feature!r} (it has: {known})",
            )
        if ref.feature in seen:
            raise _refused(
                f"{field}[{i}]",
                f"feature {ref.feature!r} is already given by "
                f"feature_refs[{seen[ref.feature]}]; each model input comes from one view",
            )
        seen[ref.feature] = i
        if view.entity not in entities:
            entities[view.entity] = repo.get_entity(view.entity)
        entity = entities[view.entity]
        keys = [name for name, _ in entity.join_keys] if entity else []
        if keys != [entity_key]:
            raise _refused(
                "body.entity_key",
                f"{entity_key!r} is not the join key of feature view "
                f"{ref.view!r} (its entity {view.entity!r} is keyed by {', '.join(keys) or '?'}); "
                "every view of a deployment must share one single-key entity",
            )
        if model_inputs is not None and ref.feature not in model_inputs:
            raise _refused(
                f"{field}[{i}]",
                f"the model has no input {ref.feature!r} (its inputs: "
                f"{', '.join(model_inputs[:20])}); features are matched to inputs by name",
            )
