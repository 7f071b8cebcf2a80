"""Assemble a grpc.aio server: ModelServing, V2, health checking and reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ml_platform.serving.dataplane import DataPlane
from ml_platform.serving.grpc_serving import ModelServingService
from ml_platform.serving.grpc_v2 import generic_handler
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc

MODEL_SERVING = serving_pb2.DESCRIPTOR.services_by_name["ModelServing"].full_name


def build_grpc_server(
    plane: DataPlane, *, max_message_bytes: int, reuse_port: bool
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    server = grpc.aio.server(options=options)
    serving_pb2_grpc.add_ModelServingServicer_to_server(ModelServingService(plane), server)
    server.add_generic_rpc_handlers((generic_handler(plane),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (MODEL_SERVING, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server, health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", MODEL_SERVING, "inference.GRPCInferenceService"):
        await health_servicer.set(name, status)
