"""ml-platform: train, register and serve models without learning Kubernetes."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
