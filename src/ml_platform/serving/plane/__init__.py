"""The transport-neutral data plane of one serving worker.

``DataPlane.infer`` owns resolve -> decode -> check -> predict -> encode; the model repository
loads and swaps models, the batcher coalesces rows, ``v2`` holds the Open Inference Protocol
semantics without a wire format. Nothing here imports grpc, protobuf, FastAPI or Starlette,
nor the adapters or the worker processes (an import-linter contract in pyproject.toml).
"""
