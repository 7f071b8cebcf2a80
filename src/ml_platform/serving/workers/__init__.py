"""The serving processes: the supervisor (reconciles deployments, starts workers and
sandboxes), the worker process and the node it runs (data plane + adapters on shared
ports), and the entry points ``ServingServer`` / ``run_serving`` / ``serve_until``.
"""
