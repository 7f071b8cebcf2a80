"""Assemble a grpc.aio server: ModelServing, V2, health checking and reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ml_platform.serving.adapters.batch_wire import parse_batch_request, serialize_batch_response
from ml_platform.serving.adapters.grpc_serving import ModelServingService
from ml_platform.serving.adapters.grpc_v2 import generic_handler, unary
from ml_platform.serving.plane.dataplane import DataPlane
from ml_platform.serving.proto import serving_pb2

MODEL_SERVING = serving_pb2.DESCRIPTOR.services_by_name["ModelServing"].full_name


def add_model_serving(service: ModelServingService, server: grpc.aio.Server) -> None:
    """Register ModelServing as the generated code does, but PredictBatch keeps the request's
    bytes and may answer pre-encoded bytes (see ``batch_wire``)."""
    pb = serving_pb2
    handlers = {
        "GetModel": unary(service.GetModel, pb.GetModelRequest, pb.ModelInfo),
        "Predict": unary(service.Predict, pb.PredictRequest, pb.PredictResponse),
        "PredictBatch": grpc.unary_unary_rpc_method_handler(
            service.PredictBatch,
            request_deserializer=parse_batch_request,
            response_serializer=serialize_batch_response,
        ),
        "PredictStream": grpc.stream_stream_rpc_method_handler(
            service.PredictStream,
            request_deserializer=pb.PredictRequest.FromString,
            response_serializer=pb.PredictResponse.SerializeToString,
        ),
        "HealthCheck": unary(service.HealthCheck, pb.HealthCheckRequest, pb.HealthCheckResponse),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(MODEL_SERVING, handlers),)
    )
    server.add_registered_method_handlers(MODEL_SERVING, handlers)


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
    add_model_serving(ModelServingService(plane), server)
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
