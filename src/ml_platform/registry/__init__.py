"""The model registry: models, versions, aliases and the artifact store."""
