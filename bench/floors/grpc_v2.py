"""Bare grpc.aio server: V2 ModelInfer parsed into numpy, answered with a constant per row count."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np


def constant_response(rows: int, n_classes: int = 2) -> bytes:
    """A serialized ModelInferResponse shaped like ours: FP64 predictions + probabilities."""
    from ml_platform.serving.proto import inference_pb2 as v2

    out = v2.ModelInferResponse.InferOutputTensor
    return v2.ModelInferResponse(
        model_name="floor",
        model_version="1",
        outputs=[
            out(name="predictions", datatype="FP64", shape=[rows]),
            out(name="probabilities", datatype="FP64", shape=[rows, n_classes]),
        ],
        raw_output_contents=[
            np.ones(rows, np.float64).tobytes(),
            np.full((rows, n_classes), 0.5).tobytes(),
        ],
    ).SerializeToString()


def serve() -> None:
    import grpc

    from ml_platform.serving.proto import inference_pb2 as v2

    cache: dict[int, bytes] = {}
    dtypes = {"FP32": np.float32, "FP64": np.float64}

    async def model_infer(request: v2.ModelInferRequest, context: object) -> bytes:
        tensor = request.inputs[0]
        rows = np.frombuffer(request.raw_input_contents[0], dtype=dtypes[tensor.datatype])
        n = int(rows.reshape(tuple(tensor.shape)).shape[0])
        body = cache.get(n)
        if body is None:
            body = cache[n] = constant_response(n)
        return body

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                model_infer,
                request_deserializer=v2.ModelInferRequest.FromString,
                response_serializer=lambda body: body,  # already serialized
            )
        },
    )

    async def main() -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 * 2**20),
                ("grpc.max_send_message_length", 64 * 2**20),
            ]
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"grpc": port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())
