"""Bare uvicorn app: V2 infer JSON parsed into numpy, answered with a constant per row count."""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import Any

import numpy as np


def constant_body(rows: int, n_classes: int = 2) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "model_name": "floor",
            "model_version": "1",
            "outputs": [
                {"name": "predictions", "datatype": "FP64", "shape": [rows], "data": [1.0] * rows},
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [rows, n_classes],
                    "data": [0.5] * (rows * n_classes),
                },
            ],
        }
    )


def serve() -> None:
    import orjson
    import uvicorn

    cache: dict[int, bytes] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        tensor = orjson.loads(b"".join(chunks))["inputs"][0]
        data = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        n = int(data.shape[0])
        body = cache.get(n)
        if body is None:
            body = cache[n] = constant_body(n)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(json.dumps({"rest": sock.getsockname()[1]}), flush=True)
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="off", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)

    def stop_when_stdin_closes() -> None:  # the bench closes stdin to stop a role
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    server.run(sockets=[sock])
