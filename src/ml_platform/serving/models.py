"""The serving plane's vocabulary: what to serve, who asks, and how loading went.

Plain frozen dataclasses with no I/O, so they cross process boundaries as JSON
(``to_dict`` / ``from_dict``) and never as pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ml_platform.schemas.models import ModelFormat

# One vocabulary of artifact formats: the registry's (the serving plane keeps its own name).
ArtifactFormat = ModelFormat


NUMERIC_DTYPES = ("float32", "float64", "int32", "int64", "bool")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One model input column."""

    name: str
    dtype: str = "float64"


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """Inputs (ordered as the model expects them) and output labels (class names)."""

    inputs: tuple[FeatureSpec, ...]
    outputs: tuple[str, ...] = ()
    allow_nan: bool = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.inputs)

    def describe(self) -> str:
        """Human-readable signature, used in INVALID_ARGUMENT messages."""
        cols = ", ".join(f"{f.name}: {f.dtype}" for f in self.inputs)
        return f"({cols})"


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One deployment's desired state: which model version serves under which name."""

    tenant_id: str
    deployment: str
    model: str
    version: int
    artifact_format: ArtifactFormat
    artifact_path: str
    signature: ModelSignature
    framework: str = ""
    aliases: tuple[str, ...] = ()
    max_batch_size: int = 32
    max_batch_delay_ms: float = 0.0
    revision: str = ""
    feature_refs: tuple[str, ...] = ()
    """Inputs looked up online (``view:feature``) when a request carries ``entity_key``."""
    entity_key: str = ""

    @property
    def key(self) -> str:
        """Identity of one loaded artifact: tenant, deployment, version and revision."""
        return f"{self.tenant_id}/{self.deployment}/{self.version}/{self.revision}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "deployment": self.deployment,
            "model": self.model,
            "version": self.version,
            "artifact_format": self.artifact_format.value,
            "artifact_path": self.artifact_path,
            "signature": {
                "inputs": [[f.name, f.dtype] for f in self.signature.inputs],
                "outputs": list(self.signature.outputs),
                "allow_nan": self.signature.allow_nan,
            },
            "framework": self.framework,
            "aliases": list(self.aliases),
            "max_batch_size": self.max_batch_size,
            "max_batch_delay_ms": self.max_batch_delay_ms,
            "revision": self.revision,
            "feature_refs": list(self.feature_refs),
            "entity_key": self.entity_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServedModel:
        sig = data["signature"]
        return cls(
            tenant_id=str(data["tenant_id"]),
            deployment=str(data["deployment"]),
            model=str(data["model"]),
            version=int(data["version"]),
            artifact_format=ArtifactFormat(data["artifact_format"]),
            artifact_path=str(data["artifact_path"]),
            signature=ModelSignature(
                inputs=tuple(FeatureSpec(str(n), str(t)) for n, t in sig["inputs"]),
                outputs=tuple(str(o) for o in sig.get("outputs", ())),
                allow_nan=bool(sig.get("allow_nan", False)),
            ),
            framework=str(data.get("framework", "")),
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            max_batch_size=int(data.get("max_batch_size", 32)),
            max_batch_delay_ms=float(data.get("max_batch_delay_ms", 0.0)),
            revision=str(data.get("revision", "")),
            feature_refs=tuple(str(r) for r in data.get("feature_refs", ())),
            entity_key=str(data.get("entity_key", "")),
        )


@dataclass(frozen=True, slots=True)
class DeploymentSnapshot:
    """The desired set of served models; ``revision`` changes whenever anything changes."""

    revision: str
    models: tuple[ServedModel, ...] = ()


class LoadState(str, Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """What the serving plane observed for one deployment version."""

    tenant_id: str
    deployment: str
    version: int
    state: LoadState
    reason: str = ""
    pids: tuple[int, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    tenant_id: str
    name: str
