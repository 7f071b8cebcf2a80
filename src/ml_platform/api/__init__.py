"""REST adapters: routers per version, auth dependencies, problem details, streams."""
