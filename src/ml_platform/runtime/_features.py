"""Point-in-time training data from inside a job (see ``get_historical_features``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.client import Client


def get_historical_features(
    entity_df: pd.DataFrame | Sequence[Mapping[str, Any]],
    features: Sequence[str],
    timestamp_field: str = "event_timestamp",
    full_feature_names: bool = False,
    client: Client | None = None,
) -> pd.DataFrame:
    """Each row of ``entity_df`` joined with ``features`` (``"<view>:<feature>"``) as of the
    row's ``timestamp_field``: the same join the platform serves, so training sees the values
    serving would have seen. The platform is reached through the SDK's ``Client`` (its URL and
    key from ``ML_PLATFORM_URL`` / ``ML_PLATFORM_API_KEY``, e.g. the job's ``env_vars``)
    unless ``client`` is given. Needs pandas in the job's interpreter."""
    from ml_platform.client import Client

    own = client is None
    active = client if client is not None else Client()
    try:
        return active.features.get_historical_features(
            entity_df,
            features,
            timestamp_field=timestamp_field,
            full_feature_names=full_feature_names,
        )
    finally:
        if own:
            active.close()
