"""Valid job bodies for tests."""

from __future__ import annotations

import copy
from typing import Any

BASE_SPEC: dict[str, Any] = {
    "name": "churn-model-v1",
    "framework": "sklearn",
    "docker_image": "company/ml-train:sklearn-1.5",
    "data_path": "data/train.csv",
    "output_path": "models/churn/",
}


def spec(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE_SPEC)
    body.update(changes)
    return body
