"""The serving snapshot's revision covers a deployment's whole desired state: the supervisor
pushes a snapshot to its workers only when the revision changes, so a field it did not cover
(aliases, batching) used to change in the store and never reach a worker."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ml_platform.server.serving_bridge import _identity
from ml_platform.serving.models import ArtifactFormat, FeatureSpec, ModelSignature, ServedModel

BASE = ServedModel(
    tenant_id="ten_a",
    deployment="churn",
    model="churn",
    version=3,
    artifact_format=ArtifactFormat.SKOPS,
    artifact_path="/cache/a.skops",
    signature=ModelSignature((FeatureSpec("x"), FeatureSpec("y")), ("0", "1")),
    framework="sklearn",
    aliases=("staging",),
    max_batch_size=32,
    max_batch_delay_ms=2.0,
    revision="1-abc",
    feature_refs=("stats:x",),
    entity_key="customer_id",
)


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, ArtifactFormat):  # a str enum: before str
        return next(f for f in ArtifactFormat if f is not value)
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, tuple):
        return (*value, "more")
    if isinstance(value, ModelSignature):
        return dataclasses.replace(value, allow_nan=not value.allow_nan)
    raise AssertionError(f"no variation for {value!r}")


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ServedModel)])
def test_a_change_to_any_field_changes_the_revision(field: str) -> None:
    changed = dataclasses.replace(BASE, **{field: _changed(getattr(BASE, field))})
    assert changed != BASE
    assert _identity(changed) != _identity(BASE)


def test_the_same_desired_state_keeps_its_revision() -> None:
    assert _identity(dataclasses.replace(BASE)) == _identity(BASE)
