"""Features at prediction time: a deployment served with ``feature_refs`` and an
``entity_key`` (they travel with its desired state, ``ServedModel``) takes its model's inputs
from the online store when a request carries the entity key.

Transport-neutral: adapters hand over the resolved model and the entity key value and get back
the values named by model input, with the ref and event time each came from (responses report
them, for skew debugging). One batched online lookup per request (``lookup_async``: on the
event loop with the Redis store and cached definitions, else from a thread). A value that is
missing or past its view's TTL is refused with FAILED_PRECONDITION naming the key and the
feature: the model never sees a made-up value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ml_platform.core.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PlatformError,
    PreconditionFailed,
    Unavailable,
)
from ml_platform.features.lookup import OnlineFeatures
from ml_platform.features.types import ValueStatus
from ml_platform.serving.models import ServedModel

__all__ = ["UsedFeature", "look_up_inputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UsedFeature:
    """One looked-up input: the model input ``name`` (the ref's feature), its ``ref``
    (``view:feature``), the value and the event time it was written with."""

    name: str
    ref: str
    value: Any
    event_ts: datetime | None


def _no_feature_store(served: ServedModel) -> PreconditionFailed:
    return PreconditionFailed(
        f"deployment {served.deployment!r} looks its inputs up in feature views "
        f"({', '.join(served.feature_refs)}) but this serving plane runs without a feature "
        "store; send the model's inputs explicitly, or serve it from a serving plane started "
        "with the platform's store (mlp server)"
    )


def _refused(served: ServedModel, key_value: Any, ref: str, status: ValueStatus) -> Exception:
    why = (
        "is past its view's TTL"
        if status is ValueStatus.OUTSIDE_TTL
        else "has no value in the online store"
    )
    return PreconditionFailed(
        f"feature {ref} for {served.entity_key}={key_value!r} {why}; "
        "materialize or push it, or send the model's inputs explicitly"
    )


async def look_up_inputs(
    online: OnlineFeatures | None, tenant_id: str, served: ServedModel, key_value: Any
) -> list[UsedFeature]:
    """The deployment's inputs for one entity key, in ``served.feature_refs`` order, read as
    ``tenant_id`` (the caller's tenant, never the deployment's name alone)."""
    if online is None:
        raise _no_feature_store(served)
    try:
        rows = await online.lookup_async(
            tenant_id, served.feature_refs, [{served.entity_key: key_value}]
        )
    except NotFound as exc:  # a view deleted after the deployment was created
        raise PreconditionFailed(
            f"deployment {served.deployment!r} cannot look up its inputs: {exc.message}"
        ) from exc
    except InvalidArgument as exc:  # the key's value does not fit the entity's join key type
        field = f"features.{served.entity_key}"
        raise InvalidArgument(
            f"{field}: {exc.message}", [FieldViolation(field, exc.message)]
        ) from exc
    except PlatformError:
        raise
    except Exception as exc:  # the store cannot be read (Redis down, no feature tables)
        logger.warning(
            "feature lookup of %s/%s failed", tenant_id, served.deployment, exc_info=True
        )
        raise Unavailable(
            f"deployment {served.deployment!r} cannot look up its inputs: the feature store "
            f"could not be read ({type(exc).__name__}); retry, or send the model's inputs "
            "explicitly"
        ) from exc
    used: list[UsedFeature] = []
    for found in rows[0]:
        if found.status is not ValueStatus.PRESENT:
            raise _refused(served, key_value, found.ref, found.status)
        used.append(
            UsedFeature(found.ref.partition(":")[2], found.ref, found.value, found.event_ts)
        )
    return used
