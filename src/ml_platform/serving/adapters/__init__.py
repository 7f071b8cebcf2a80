"""Transport adapters over the data plane: gRPC (seed ``ModelServing`` and KServe V2, the
error decorator, the server builder, the seed batch wire format) and V2 REST (ASGI).

They only convert between the wire and ``ml_platform.serving.plane``; the plane never
imports them.
"""
