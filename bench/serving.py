"""Serving data-plane benchmark (issue 5): our gRPC + REST serving plane vs bare floors.

Server processes are pinned to core 0 (``taskset -c 0``), this load generator to core 1.
Models: RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0) and a
LogisticRegression, both fitted on make_classification(n_samples=5000, n_features=20,
random_state=0) and served from skops files by one serving worker.

    .venv/bin/python bench/serving.py [--seconds 4] [--no-write]

Writes the ``## Serving`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, percentile, write_section

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "mlp_bench_key"
BENCH_DATA_RATE_LIMIT = "1000000/second"
"""The serving role's data-plane budget: counted on every request, never reached."""
N_FEATURES = 20
FEATURES = [f"x{i}" for i in range(N_FEATURES)]


# ---------------------------------------------------------------------------------------------
# server roles (run in a subprocess pinned to core 0)
# ---------------------------------------------------------------------------------------------


def role_serving(
    models_dir: str, compile_forests: bool, batch_delay_ms: float, sandbox_export: bool = True
) -> None:
    from ml_platform.config import Settings
    from ml_platform.serving import (
        ArtifactFormat,
        FeatureSpec,
        ModelSignature,
        Principal,
        ServedModel,
        ServingServer,
    )

    sys.path.insert(0, str(ROOT))  # the in-memory seams are the tests' doubles
    from tests.serving.doubles import (
        InMemoryDeploymentSource,
        InMemoryStatusSink,
        StaticKeyAuthenticator,
    )

    sig = ModelSignature(tuple(FeatureSpec(f) for f in FEATURES), ("0", "1"))
    models = []
    for name in ("rf", "lr"):
        for suffix, batch in (("", 64), ("-nobatch", 1)):
            models.append(
                ServedModel(
                    tenant_id="bench",
                    deployment=name + suffix,
                    model=name,
                    version=1,
                    artifact_format=ArtifactFormat.SKOPS,
                    artifact_path=str(Path(models_dir) / f"{name}.skops"),
                    signature=sig,
                    framework="sklearn",
                    max_batch_size=batch,
                    max_batch_delay_ms=batch_delay_ms,
                    revision="1",
                )
            )
        joblib_path = Path(models_dir) / f"{name}.joblib"
        if joblib_path.exists():  # the same model, pickled: loaded in the tenant's sandbox
            models.append(
                ServedModel(
                    tenant_id="bench",
                    deployment=name + "-joblib",
                    model=name + "-joblib",
                    version=1,
                    artifact_format=ArtifactFormat.JOBLIB,
                    artifact_path=str(joblib_path),
                    signature=sig,
                    framework="sklearn",
                    max_batch_size=64,
                    max_batch_delay_ms=batch_delay_ms,
                    revision="1",
                )
            )
    settings = Settings(
        grpc_port=0,
        serving_rest_port=0,
        # every request is still counted against the data-plane budget (its cost is part of
        # what we measure), but none is refused: the default 6000/second made the faster rows
        # answer 429 / RESOURCE_EXHAUSTED, counted as errors
        rate_limit_data=BENCH_DATA_RATE_LIMIT,
        serving_workers=1,
        serving_source_poll_seconds=5,
        serving_compile_forests=compile_forests,
        serving_sandbox_export=sandbox_export,
    )
    sink = InMemoryStatusSink()
    auth = StaticKeyAuthenticator({API_KEY: Principal("bench", "bench")})
    with ServingServer(settings, InMemoryDeploymentSource(models), sink, auth) as server:
        for m in models:
            sink.wait_for("bench", m.deployment, timeout=120)
        print(json.dumps({"grpc": server.grpc_port, "rest": server.rest_port}), flush=True)
        sys.stdin.read()


def role_grpc_floor() -> None:
    import grpc

    from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc

    constant = serving_pb2.PredictResponse(
        predictions=[1.0], confidence_scores={"0": 0.1, "1": 0.9}
    )

    class Constant(serving_pb2_grpc.ModelServingServicer):
        async def Predict(self, request, context):  # type: ignore[no-untyped-def]
            return constant

    async def main() -> None:
        server = grpc.aio.server()
        serving_pb2_grpc.add_ModelServingServicer_to_server(Constant(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"grpc": port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


def role_uvicorn_floor() -> None:
    import socket

    import uvicorn

    body = b'{"model_name":"c","outputs":[{"name":"predictions","datatype":"FP64","shape":[1],"data":[1.0]}]}'

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
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
    uvicorn.Server(config).run(sockets=[sock])


def start_role(role: str, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    cmd = ["taskset", "-c", "0", sys.executable, __file__, "--role", role, *extra]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{role} server failed to start")
    ports: dict[str, int] = json.loads(line)
    for port in ports.values():  # wait until every port accepts connections
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
    return proc, ports


def stop_role(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------
# load generation (this process, pinned to core 1)
# ---------------------------------------------------------------------------------------------

Result = tuple[float, float, float, int]  # (per-second, p50 ms, p99 ms, errors)
rows_per_call: dict[str, float] = {}  # average model-call size per scenario (health details)


async def closed_loop(
    call: Callable[[int], Awaitable[None]], concurrency: int, seconds: float
) -> Result:
    """``concurrency`` workers calling back-to-back; latency per call, throughput over the window."""
    latencies: list[float] = []
    errors = 0
    warm_until = time.perf_counter() + min(1.0, seconds / 4)
    end = warm_until + seconds

    async def worker(wid: int) -> None:
        nonlocal errors
        i = wid
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await call(i)
            except Exception:
                errors += 1
            t1 = time.perf_counter()
            if t0 >= warm_until:
                latencies.append(t1 - t0)
            i += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    ms = [x * 1000 for x in latencies]
    return len(latencies) / seconds, percentile(ms, 50), percentile(ms, 99), errors


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client so the generator is not the bottleneck."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, headers: str = "") -> bytes:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"x-api-key: {API_KEY}\r\n{headers}content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode() + " " + payload[:200].decode())
        return payload


def feature_msgs(X: np.ndarray):  # type: ignore[no-untyped-def]
    from ml_platform.serving.proto import serving_pb2

    return [
        serving_pb2.PredictRequest(
            model_id="",
            features=[
                serving_pb2.Feature(name=n, float_value=float(v))
                for n, v in zip(FEATURES, row, strict=True)
            ],
        )
        for row in X
    ]


async def bench_grpc(
    port: int, X: np.ndarray, seconds: float, floor: bool = False
) -> dict[str, Result]:
    import grpc

    from ml_platform.serving.proto import inference_pb2 as v2
    from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc

    md = (("x-api-key", API_KEY),)
    out: dict[str, Result] = {}
    msgs = feature_msgs(X[:256])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = serving_pb2_grpc.ModelServingStub(channel)

        def predict(model: str) -> Callable[[int], Awaitable[None]]:
            reqs = [serving_pb2.PredictRequest(model_id=model, features=m.features) for m in msgs]

            async def call(i: int) -> None:
                await stub.Predict(reqs[i % len(reqs)], metadata=md)

            return call

        if floor:
            for c in (1, 32):
                out[f"c{c}"] = await closed_loop(predict("const"), c, seconds)
            return out

        health = serving_pb2.HealthCheckRequest(model_id="")

        async def call_health(i: int) -> None:
            await stub.HealthCheck(health, metadata=md)

        out["health c32"] = await closed_loop(call_health, 32, seconds)

        async def batch_stats(model: str) -> tuple[int, int]:
            report = await stub.HealthCheck(
                serving_pb2.HealthCheckRequest(model_id=model), metadata=md
            )
            return int(report.details["model_calls"]), int(report.details["rows_predicted"])

        for model in ("rf", "lr"):
            for c in (1, 32):
                for suffix in ("", "-nobatch"):
                    calls0, rows0 = await batch_stats(model + suffix)
                    out[f"{model}{suffix} predict c{c}"] = await closed_loop(
                        predict(model + suffix), c, seconds
                    )
                    calls1, rows1 = await batch_stats(model + suffix)
                    rows_per_call[f"{model}{suffix} c{c}"] = (rows1 - rows0) / max(
                        1, calls1 - calls0
                    )
            # PredictBatch with 1,000 rows: one vectorized call per request
            batch = serving_pb2.PredictBatchRequest(
                model_id=model,
                requests=[
                    serving_pb2.PredictRequest(features=m.features) for m in feature_msgs(X[:1000])
                ],
            )

            async def call_batch(i: int, batch: serving_pb2.PredictBatchRequest = batch) -> None:
                await stub.PredictBatch(batch, metadata=md)

            out[f"{model} batch1000 c1"] = await closed_loop(call_batch, 1, seconds)
            # the same 1,000 rows, each item ONE Feature holding a FloatArray of 20 values
            compact = serving_pb2.PredictBatchRequest(
                model_id=model,
                requests=[
                    serving_pb2.PredictRequest(
                        features=[
                            serving_pb2.Feature(
                                float_array=serving_pb2.FloatArray(values=row.tolist())
                            )
                        ]
                    )
                    for row in X[:1000]
                ],
            )

            async def call_compact(
                i: int, batch: serving_pb2.PredictBatchRequest = compact
            ) -> None:
                await stub.PredictBatch(batch, metadata=md)

            out[f"{model} batch1000compact c1"] = await closed_loop(call_compact, 1, seconds)
            # PredictStream: one bidirectional stream, the client keeps 32 messages in flight
            out[f"{model} stream w32"] = await stream_bench(stub, model, msgs, md, seconds)
            # V2 ModelInfer (raw tensor), single row, c=32, and 1,000 rows
            rows1 = [X[i : i + 1].astype(np.float64) for i in range(256)]
            infer1 = [
                v2.ModelInferRequest(
                    model_name=model,
                    inputs=[
                        v2.ModelInferRequest.InferInputTensor(
                            name="input", datatype="FP64", shape=[1, N_FEATURES]
                        )
                    ],
                    raw_input_contents=[r.tobytes()],
                )
                for r in rows1
            ]
            infer_call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=v2.ModelInferRequest.SerializeToString,
                response_deserializer=v2.ModelInferResponse.FromString,
            )

            async def call_infer(
                i: int, reqs: list[v2.ModelInferRequest] = infer1, rpc: object = infer_call
            ) -> None:
                await rpc(reqs[i % len(reqs)], metadata=md)  # type: ignore[operator]

            out[f"{model} v2grpc c32"] = await closed_loop(call_infer, 32, seconds)
            big = v2.ModelInferRequest(
                model_name=model,
                inputs=[
                    v2.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP64", shape=[1000, N_FEATURES]
                    )
                ],
                raw_input_contents=[X[:1000].astype(np.float64).tobytes()],
            )

            async def call_big(
                i: int, big: v2.ModelInferRequest = big, rpc: object = infer_call
            ) -> None:
                await rpc(big, metadata=md)  # type: ignore[operator]

            out[f"{model} v2grpc1000 c1"] = await closed_loop(call_big, 1, seconds)
    return out


async def bench_sklearn_path(port: int, X: np.ndarray, seconds: float) -> dict[str, Result]:
    """RF unary Predict through scikit-learn's own predict_proba (compiled forests off)."""
    import grpc

    from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc

    md = (("x-api-key", API_KEY),)
    msgs = feature_msgs(X[:256])
    out: dict[str, Result] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = serving_pb2_grpc.ModelServingStub(channel)
        for model in ("rf", "rf-nobatch"):
            reqs = [serving_pb2.PredictRequest(model_id=model, features=m.features) for m in msgs]

            async def call(i: int, reqs: list[serving_pb2.PredictRequest] = reqs) -> None:
                await stub.Predict(reqs[i % len(reqs)], metadata=md)

            for c in (1, 32):
                out[f"{model} predict c{c}"] = await closed_loop(call, c, seconds)
    return out


async def stream_bench(stub, model, msgs, md, seconds: float) -> Result:  # type: ignore[no-untyped-def]
    from ml_platform.serving.proto import serving_pb2

    reqs = [serving_pb2.PredictRequest(model_id=model, features=m.features) for m in msgs]
    window = asyncio.Semaphore(32)
    sent: list[float] = []
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds + 0.5
    measure_from = time.perf_counter() + 0.5

    async def requests():  # type: ignore[no-untyped-def]
        i = 0
        while time.perf_counter() < stop_at:
            await window.acquire()
            sent.append(time.perf_counter())
            yield reqs[i % len(reqs)]
            i += 1

    call = stub.PredictStream(requests(), metadata=md)
    n = 0
    async for _ in call:
        now = time.perf_counter()
        t0 = sent[n]
        n += 1
        window.release()
        if t0 >= measure_from:
            latencies.append((now - t0) * 1000)
    return len(latencies) / seconds, percentile(latencies, 50), percentile(latencies, 99), 0


async def bench_rest(
    port: int, X: np.ndarray, seconds: float, floor: bool = False
) -> dict[str, Result]:
    import orjson

    out: dict[str, Result] = {}
    bodies = [
        orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [1, N_FEATURES],
                        "data": X[i].tolist(),
                    }
                ]
            }
        )
        for i in range(256)
    ]
    clients = [RawHttp(port) for _ in range(32)]

    def infer(model: str, body_list: list[bytes]) -> Callable[[int], Awaitable[None]]:
        path = f"/v2/models/{model}/infer"

        async def call(i: int) -> None:
            await clients[i % 32].post(path, body_list[i % len(body_list)])

        return call

    if floor:
        for c in (1, 32):
            out[f"c{c}"] = await closed_loop(infer("const", bodies), c, seconds)
        return out
    big = [
        orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [1000, N_FEATURES],
                        "data": X[:1000].ravel().tolist(),
                    }
                ]
            }
        )
    ]
    for model in ("rf", "lr"):
        for c in (1, 32):
            out[f"{model} v2rest c{c}"] = await closed_loop(infer(model, bodies), c, seconds)
        out[f"{model} v2rest1000 c1"] = await closed_loop(infer(model, big), 1, seconds)
    return out


def build_models(root: Path) -> np.ndarray:
    import skops.io as sio
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, random_state=0)
    X = X.astype(np.float32).astype(np.float64)
    sio.dump(
        RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(X, y),
        root / "rf.skops",
    )
    sio.dump(LogisticRegression(max_iter=1000).fit(X, y), root / "lr.skops")
    return X


def dump_joblib_copies(root: Path) -> None:
    """The skops models again as joblib files (served from a per-tenant sandbox process)."""
    import joblib
    import skops.io as sio

    for name in ("rf", "lr"):
        path = root / f"{name}.skops"
        joblib.dump(
            sio.load(path, trusted=sio.get_untrusted_types(file=path)), root / f"{name}.joblib"
        )


def fmt(r: Result) -> str:
    rate, p50, p99, errors = r
    err = f" ({errors} errors)" if errors else ""
    return f"{rate:,.0f} | {p50:.2f} | {p99:.2f}{err}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


# ---------------------------------------------------------------------------------------------
# C load generators (issue 15): h2load for gRPC, wrk for REST, pinned to core 1
# ---------------------------------------------------------------------------------------------

V2_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
ROUNDS = 3  # alternating floor/ours runs per row; the table shows medians


def ensure_loadgen() -> None:
    """h2load and wrk from Debian (scripts/ensure_loadgen.sh installs them when missing)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure_loadgen.sh")], check=True)


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed): what h2load sends as the body."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def v2_grpc_request(model: str, rows: np.ndarray) -> bytes:
    from ml_platform.serving.proto import inference_pb2 as v2

    tensor = rows.astype(np.float32)
    return v2.ModelInferRequest(
        model_name=model,
        inputs=[
            v2.ModelInferRequest.InferInputTensor(
                name="input", datatype="FP32", shape=list(tensor.shape)
            )
        ],
        raw_input_contents=[tensor.tobytes()],
    ).SerializeToString()


def v2_rest_body(rows: np.ndarray) -> bytes:
    import orjson

    tensor = rows.astype(np.float32)
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(tensor.shape),
                    "data": tensor.ravel().tolist(),
                }
            ]
        }
    )


LoadResult = tuple[float, float, float, int]  # (req/s, p50 ms, p99 ms, failed requests)


def run_h2load(
    port: int, body: bytes, concurrency: int, seconds: float, min_response_bytes: int, work: Path
) -> LoadResult:
    """``concurrency`` streams on one HTTP/2 connection (a gRPC channel), one h2load thread.

    h2load sees HTTP status 200 for a rejected gRPC call too (grpc-status is a trailer), so
    every response's DATA must be at least one real answer: ``min_response_bytes`` per request
    (a rejected call carries no message). Failures are also counted by the verification pass.
    """
    data = work / f"h2load-{len(body)}.bin"
    data.write_bytes(grpc_frame(body))
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = [
        "taskset", "-c", "1", "h2load", "-t1", "-c1", f"-m{concurrency}",
        f"-D{seconds:g}", "--warm-up-time=1", "-d", str(data),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", f"x-api-key: {API_KEY}", f"--log-file={log}",
        f"http://127.0.0.1:{port}{V2_INFER_PATH}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    req = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )  # type: ignore[union-attr]
    assert req is not None, out
    done, failed = int(req.group(2)), int(req.group(4)) + int(req.group(5)) + int(req.group(6))
    data_bytes = int(re.search(r"traffic: .*\((\d+)\) data", out).group(1))  # type: ignore[union-attr]
    frame = min_response_bytes + 5  # a rejected call: trailers only, no DATA
    short = min(done, max(0, done * frame - data_bytes) // frame)
    lines = [ln.split("\t") for ln in log.read_text().splitlines() if ln.strip()]
    ms = [int(ln[2]) / 1000 for ln in lines]  # the main duration only (no warm-up)
    return rate, percentile(ms, 50), percentile(ms, 99), failed + int(short)


WRK_SCRIPT = f"""
local f = io.open(os.getenv("WRK_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = "{API_KEY}"
"""


def run_wrk(
    port: int, path: str, body: bytes, concurrency: int, seconds: float, work: Path
) -> LoadResult:
    """``concurrency`` keep-alive HTTP/1.1 connections, one wrk thread, after a 1 s warm-up."""
    data = work / f"wrk-{len(body)}.json"
    data.write_bytes(body)
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "WRK_BODY": str(data)}
    url = f"http://127.0.0.1:{port}{path}"
    base = ["taskset", "-c", "1", "wrk", "-t1", f"-c{concurrency}", "-s", str(script)]
    subprocess.run([*base, "-d1s", url], capture_output=True, env=env, check=True)  # warm-up
    out = subprocess.run(
        [*base, f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", out)
        assert m is not None, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0
    )
    return rate, ms("50"), ms("99"), failed


def verify_grpc(port: int, body: bytes, expected: np.ndarray | None, calls: int = 40) -> str:
    """A real gRPC client sends the bench's exact request: every grpc-status counted, and the
    predictions checked against the model's own (None: a floor, only the shape is checked)."""
    import grpc

    from ml_platform.serving.proto import inference_pb2 as v2

    statuses: dict[str, int] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        rpc = channel.unary_unary(
            V2_INFER_PATH,
            request_serializer=lambda b: b,
            response_deserializer=v2.ModelInferResponse.FromString,
        )
        n_rows = v2.ModelInferRequest.FromString(body).inputs[0].shape[0]
        for _ in range(calls):
            try:
                response = rpc(body, metadata=(("x-api-key", API_KEY),), timeout=30)
            except grpc.RpcError as exc:
                code = exc.code().name  # type: ignore[attr-defined]
                statuses[code] = statuses.get(code, 0) + 1
                continue
            statuses["OK"] = statuses.get("OK", 0) + 1
            got = np.frombuffer(response.raw_output_contents[0], dtype=np.float64)
            if got.shape != (n_rows,) or (
                expected is not None and not np.array_equal(got, expected)
            ):
                raise RuntimeError(f"gRPC predictions differ from the model's on port {port}")
    if statuses.get("OK") != calls:
        raise RuntimeError(f"gRPC verification on port {port}: grpc-status counts {statuses}")
    return f"{calls}/{calls} OK"


def verify_rest(
    port: int, path: str, body: bytes, expected: np.ndarray | None, calls: int = 40
) -> str:
    import httpx

    statuses: dict[int, int] = {}
    n_rows = len(expected) if expected is not None else None
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(calls):
            r = client.post(
                path,
                content=body,
                headers={"content-type": "application/json", "x-api-key": API_KEY},
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code != 200:
                continue
            out = {o["name"]: o for o in r.json()["outputs"]}
            got = np.asarray(out["predictions"]["data"], dtype=np.float64)
            if n_rows is not None and (got.shape != (n_rows,) or not np.array_equal(got, expected)):
                raise RuntimeError(f"REST predictions differ from the model's on port {port}")
    if statuses.get(200) != calls:
        raise RuntimeError(f"REST verification on port {port}: status counts {statuses}")
    return f"{calls}/{calls} 200"


class Target:
    """One side of a row: a load run plus the verification that brackets it."""

    def __init__(self, run: Callable[[], LoadResult], verify: Callable[[], str]) -> None:
        self.run, self.verify = run, verify
        self.results: list[LoadResult] = []

    def measure(self) -> None:
        self.verify()  # before
        self.results.append(self.run())
        self.verify()  # after: the server still answers correctly under the same request

    def median(self) -> LoadResult:
        rates = [r[0] for r in self.results]
        return (
            median(rates),
            median([r[1] for r in self.results]),
            median([r[2] for r in self.results]),
            sum(r[3] for r in self.results),
        )

    def spread(self) -> str:
        rates = [r[0] for r in self.results]
        return f"{min(rates):,.0f}-{max(rates):,.0f}"


def paired(our: Target, ref: Target, field: int) -> float:
    """The median over the rounds of ``our / ref`` in ``field`` (0: req/s, 1: p50 ms).

    Each round runs the two sides seconds apart, so a host whose speed drifts between rounds
    (minutes apart) moves both sides of a round's ratio together.
    """
    return median([o[field] / r[field] for o, r in zip(our.results, ref.results, strict=True)])


def paired_spread(our: Target, ref: Target, field: int) -> str:
    """The rounds' own ratios, lowest to highest."""
    ratios = sorted(o[field] / r[field] for o, r in zip(our.results, ref.results, strict=True))
    return ", ".join(f"{x:.2f}" for x in ratios)


def python_cross_check(port: int, body: bytes, concurrency: int, seconds: float) -> Result:
    """The same V2 request from the Python grpc.aio client (what bench/serving.py used before)."""
    import grpc

    async def go() -> Result:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            rpc = channel.unary_unary(
                V2_INFER_PATH, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )

            async def call(i: int) -> None:
                await rpc(body, metadata=(("x-api-key", API_KEY),))

            return await closed_loop(call, concurrency, seconds)

    return asyncio.run(go())


def loadgen_section(seconds: float, batch_delay_ms: float) -> str:
    """Every row: our server vs its floor (or joblib-in-sandbox vs skops-in-worker), measured
    ROUNDS times alternately with h2load / wrk pinned to core 1, servers on core 0."""
    import joblib
    import skops.io as sio

    ensure_loadgen()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        X = build_models(root)
        dump_joblib_copies(root)
        models = {
            n: sio.load(
                root / f"{n}.skops", trusted=sio.get_untrusted_types(file=root / f"{n}.skops")
            )
            for n in ("rf", "lr")
        }
        assert all(
            np.array_equal(
                joblib.load(root / f"{n}.joblib").predict(X[:1000]), models[n].predict(X[:1000])
            )
            for n in models
        )
        one, bulk = X[:1].astype(np.float32), X[:1000].astype(np.float32)
        expected = {
            (n, k): models[n].predict(rows.astype(np.float64)).astype(np.float64)
            for n in models
            for k, rows in (("1", one), ("1000", bulk))
        }
        procs = []
        try:
            gfloor, gf = start_role("grpc-v2-floor")
            procs.append(gfloor)
            rfloor, rf_ = start_role("rest-v2-floor")
            procs.append(rfloor)
            ours, op = start_role(
                "serving", "--models-dir", tmp, "--batch-delay-ms", str(batch_delay_ms)
            )
            procs.append(ours)
            kept, kp = start_role(  # the same, with every joblib model kept in its sandbox
                "serving",
                "--models-dir",
                tmp,
                "--batch-delay-ms",
                str(batch_delay_ms),
                "--no-sandbox-export",
            )
            procs.append(kept)
            rows: list[tuple[str, str, Target, Target]] = []

            def grpc_target(port: int, model: str, k: str, c: int, floor: bool) -> Target:
                body = v2_grpc_request(model, one if k == "1" else bulk)
                min_bytes = (int(k) * 3 * 8) if k != "1" else 40
                exp = None if floor else expected[(model.removesuffix("-joblib"), k)]
                return Target(
                    lambda: run_h2load(port, body, c, seconds, min_bytes, root),
                    lambda: verify_grpc(port, body, exp),
                )

            def rest_target(port: int, model: str, k: str, c: int, floor: bool) -> Target:
                body = v2_rest_body(one if k == "1" else bulk)
                path = f"/v2/models/{model}/infer"
                exp = None if floor else expected[(model.removesuffix("-joblib"), k)]
                return Target(
                    lambda: run_wrk(port, path, body, c, seconds, root),
                    lambda: verify_rest(port, path, body, exp),
                )

            names = {"lr": "LogisticRegression", "rf": "RandomForest(50, depth 8)"}
            for m in ("lr", "rf"):
                for c in (1, 32):
                    rows.append(
                        (
                            f"{names[m]}: V2 ModelInfer gRPC, 1 row, C={c}",
                            "bare grpc.aio",
                            grpc_target(op["grpc"], m, "1", c, False),
                            grpc_target(gf["grpc"], m, "1", c, True),
                        )
                    )
            for m in ("lr", "rf"):
                rows.append(
                    (
                        f"{names[m]}: V2 ModelInfer gRPC, 1,000 rows raw FP32, C=1",
                        "bare grpc.aio",
                        grpc_target(op["grpc"], m, "1000", 1, False),
                        grpc_target(gf["grpc"], m, "1000", 1, True),
                    )
                )
                rows.append(
                    (
                        f"{names[m]}: V2 infer REST JSON, 1,000 rows, C=1",
                        "bare uvicorn",
                        rest_target(op["rest"], m, "1000", 1, False),
                        rest_target(rf_["rest"], m, "1000", 1, True),
                    )
                )
            for ports, served_as in (
                (op, "joblib (its sandbox's skops export, in the worker)"),
                (kp, "joblib kept in its sandbox (export off)"),
            ):
                for m in ("lr", "rf"):
                    for c in (1, 32):
                        rows.append(
                            (
                                f"{names[m]}: {served_as} vs skops in worker, V2 gRPC 1 row, C={c}",
                                "skops in worker",
                                grpc_target(ports["grpc"], m + "-joblib", "1", c, False),
                                grpc_target(ports["grpc"], m, "1", c, False),
                            )
                        )
            for _ in range(ROUNDS):
                for _label, _ref, our, ref in rows:
                    ref.measure()
                    our.measure()
            cross = {
                side: python_cross_check(port, v2_grpc_request("lr", one), 32, seconds)
                for side, port in (("ours", op["grpc"]), ("floor", gf["grpc"]))
            }
        finally:
            for proc in procs:
                stop_role(proc)

    table = [
        "| row | compared with | ours req/s (spread) | reference req/s (spread) | ratio (rounds) | ours p50 / p99 ms | reference p50 / p99 ms | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, tuple[Target, Target]] = {}
    for label, ref_name, our, ref in rows:
        om, fm = our.median(), ref.median()
        summary[label] = (our, ref)
        rows_per = 1000 if "1,000" in label else 1
        rate_note = f" ({om[0] * rows_per:,.0f} rows/s)" if rows_per > 1 else ""
        table.append(
            f"| {label} | {ref_name} | {om[0]:,.0f}{rate_note} ({our.spread()}) | {fm[0]:,.0f} ({ref.spread()}) "
            f"| {paired(our, ref, 0):.2f} ({paired_spread(our, ref, 0)}) | {om[1]:.2f} / {om[2]:.2f} "
            f"| {fm[1]:.2f} / {fm[2]:.2f} | {om[3] + fm[3]} |"
        )

    def get(label: str, ending: str = "") -> tuple[Target, Target]:
        return next(v for k, v in summary.items() if k.startswith(label) and k.endswith(ending))

    lines = []

    def check(name: str, value: float, op_: str, target: float) -> None:
        met = value >= target if op_ == ">=" else value <= target
        lines.append(f"| {name} | {value:.2f} | {op_} {target} | {'yes' if met else 'no'} |")

    for name in ("LogisticRegression", "RandomForest(50, depth 8)"):
        o, f = get(f"{name}: V2 ModelInfer gRPC, 1 row, C=32")
        check(f"{name}: V2 gRPC C=32 req/s vs bare grpc.aio", paired(o, f, 0), ">=", 0.95)
        g, g_floor = get(f"{name}: V2 ModelInfer gRPC, 1,000 rows")
        check(f"{name}: V2 gRPC 1,000 rows rows/s vs floor", paired(g, g_floor, 0), ">=", 0.5)
        o, f = get(f"{name}: V2 infer REST JSON, 1,000 rows")
        check(f"{name}: V2 REST JSON 1,000 rows rows/s vs floor", paired(o, f, 0), ">=", 0.6)
        check(f"{name}: gRPC/REST rows/s at 1,000 rows", paired(g, o, 0), ">=", 1.8)
        check(
            f"(floors) bare gRPC/REST rows/s at 1,000 rows, {name} row",
            paired(g_floor, f, 0),
            ">=",
            1.8,
        )
        for how, served_as in (("joblib (its", "joblib, default"), ("joblib kept", "export off")):
            o, f = get(f"{name}: {how}", "C=1")
            o32, f32 = get(f"{name}: {how}", "C=32")
            check(
                f"{name}: joblib p50 / skops-in-worker p50, C=1 ({served_as})",
                paired(o, f, 1),
                "<=",
                1.1,
            )
            check(
                f"{name}: joblib / skops-in-worker req/s, C=32 ({served_as})",
                paired(o32, f32, 0),
                ">=",
                0.95,
            )
    o, f = get("LogisticRegression: V2 ModelInfer gRPC, 1 row, C=1")
    check("LogisticRegression: V2 gRPC C=1 p50 vs floor p50", paired(o, f, 1), "<=", 2.0)
    ctable = ["| target (issue 15) | measured | target | met |", "|---|---|---|---|", *lines]
    xo, xf = cross["ours"], cross["floor"]
    lo, lf = (t.median() for t in get("LogisticRegression: V2 ModelInfer gRPC, 1 row, C=32"))
    return (
        "Command: `.venv/bin/python bench/serving.py` (`make bench`; `--loadgen-only` for this "
        "section alone). Load from C generators pinned to core 1 with `taskset -c 1`: h2load "
        "(nghttp2-client; one HTTP/2 connection with C concurrent streams, like one gRPC channel; "
        "the body is the bench-built length-prefixed ModelInferRequest frame) for gRPC, wrk "
        "(C keep-alive connections) for REST, one thread each; `scripts/ensure_loadgen.sh` "
        "installs both from Debian. Every server (our serving supervisor + 1 worker + the "
        "tenant's sandbox, the same again with `serving_sandbox_export` off for the 'kept in its "
        "sandbox' rows, the bare grpc.aio floor, the bare uvicorn floor; all running for the "
        "whole run) pinned to core 0. V2 FP32 tensors, 20 features. Floors (`bench/floors/`) "
        "parse the V2 request into numpy and answer a constant of the right size. Our servers "
        f"count every request against a data-plane rate limit of {BENCH_DATA_RATE_LIMIT} (the "
        "cost of counting is measured; no request is refused). "
        f"Each cell: median of {ROUNDS} runs of {seconds:g} s (after 1 s warm-up), the reference "
        "and ours alternating; spread = min-max req/s over the runs. `ratio` is the median of the "
        "rounds' own ratios (each round's two runs seconds apart; the rounds' ratios in "
        "brackets), and the targets below are computed the same way. Every run is bracketed by "
        "a verification pass with a real client (40 calls before and 40 after: every grpc-status "
        "/ HTTP status counted and required OK, predictions compared with the model's own); "
        "h2load cannot see grpc-status, so its DATA bytes must also hold a full answer per "
        "request (`failed` counts short ones). 1-minute load average when the section was "
        f"written: {os.getloadavg()[0]:.1f} (the run's own servers and load generators count "
        "in it); treat differences within the spread as noise.\n\n"
        + "\n".join(table)
        + "\n\nTargets of issue 15 measured in this run:\n\n"
        + "\n".join(ctable)
        + "\n\nCross-check with the Python grpc.aio client (one channel, 32 in flight, "
        f"LogisticRegression V2 gRPC 1 row): ours {xo[0]:,.0f} req/s, floor {xf[0]:,.0f} req/s "
        f"(ratio {xo[0] / xf[0]:.2f}); h2load in the same run: ours {lo[0]:,.0f}, floor "
        f"{lf[0]:,.0f} (ratio {lo[0] / lf[0]:.2f}).\n"
    )


def top_frames(
    raw: str, limit: int = 12
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(self, inclusive) shares of samples per frame from py-spy's ``--format raw`` stacks."""
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [(frame, n / max(1, total)) for frame, n in ranked]

    return top(self_counts), top(incl)


PROFILE_INTRO = (
    "Command: `.venv/bin/python bench/serving.py --profile --loadgen-seconds 10` "
    "(not part of `make bench`). py-spy 0.4.3 (`record --format raw --rate 200 --nonblocking`, "
    "pinned to core 1 beside h2load) on the serving worker process (pinned to core 0 with "
    "the supervisor) while h2load drives the LogisticRegression deployment; shares of the "
    "worker's non-idle samples over all its threads. Self = the frame itself, inclusive = "
    "the frame and what it calls. The machine was loaded by other engineers' test suites.\n\n"
)


def profile_section(seconds: float, batch_delay_ms: float) -> str:
    """py-spy on the serving worker while h2load drives it (LR V2 gRPC C=32; 1,000 rows C=1)."""
    import psutil

    ensure_loadgen()
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        X = build_models(root)
        proc, ports = start_role(
            "serving", "--models-dir", tmp, "--batch-delay-ms", str(batch_delay_ms)
        )
        try:
            role = psutil.Process(proc.pid)
            workers = [
                c.pid
                for c in role.children(recursive=True)
                if "spawn_main" in " ".join(c.cmdline())
            ]
            for label, rows, concurrency in (
                ("LogisticRegression, V2 gRPC 1 row, C=32", X[:1], 32),
                ("LogisticRegression, V2 gRPC 1,000 rows raw, C=1", X[:1000], 1),
            ):
                body = v2_grpc_request("lr", rows)
                verify_grpc(ports["grpc"], body, None)
                out = root / "profile.txt"
                spies = [
                    subprocess.Popen(
                        [
                            "taskset",
                            "-c",
                            "1",
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(pid),
                            "--duration",
                            f"{seconds:g}",
                            "--rate",
                            "200",
                            "--format",
                            "raw",
                            "--nonblocking",
                            "-o",
                            f"{out}.{pid}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for pid in workers
                ]
                min_bytes = 40 if len(rows) == 1 else len(rows) * 3 * 8
                rate, _p50, _p99, failed = run_h2load(
                    ports["grpc"], body, concurrency, seconds + 1, min_bytes, root
                )
                for spy in spies:
                    spy.wait(60)
                verify_grpc(ports["grpc"], body, None)
                raw = "\n".join(
                    Path(f"{out}.{pid}").read_text()
                    for pid in workers
                    if Path(f"{out}.{pid}").exists()
                )
                own, inclusive = top_frames(raw)
                parts.append(
                    f"**{label}** ({rate:,.0f} req/s under the profiler, {failed} failed; worker pids "
                    f"{', '.join(map(str, workers))}):\n\n"
                    "| self % | frame |\n|---|---|\n"
                    + "\n".join(f"| {share:.1%} | `{frame}` |" for frame, share in own)
                    + "\n\n| inclusive % | frame |\n|---|---|\n"
                    + "\n".join(f"| {share:.1%} | `{frame}` |" for frame, share in inclusive)
                )
        finally:
            stop_role(proc)
    return "\n\n".join(parts)


def main() -> None:
    from ml_platform.schemas.deployments import DeploymentCreate

    # "Batching on" deployments use what POST /v1/deployments defaults to (2 ms).
    default_delay = float(DeploymentCreate.model_fields["max_batch_delay_ms"].default)
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--role",
        choices=["serving", "grpc-floor", "uvicorn-floor", "grpc-v2-floor", "rest-v2-floor"],
    )
    parser.add_argument("--models-dir")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--loadgen-seconds", type=float, default=3.0, help="h2load/wrk: seconds per run"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only: py-spy on the serving worker under h2load (LR, C=32 and 1,000 rows)",
    )
    parser.add_argument(
        "--loadgen-only",
        action="store_true",
        help="only the h2load/wrk section (skip the Python-client cross-check table)",
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="serving role: sklearn's own predict"
    )
    parser.add_argument(
        "--no-sandbox-export",
        action="store_true",
        help="serving role: joblib models served from their sandbox, never from its export",
    )
    parser.add_argument(
        "--batch-delay-ms",
        type=float,
        default=default_delay,
        help="max_batch_delay_ms of the 'batching on' deployments (default: the API's default)",
    )
    args = parser.parse_args()
    if args.role == "serving":
        role_serving(
            args.models_dir,
            compile_forests=not args.no_compile,
            batch_delay_ms=args.batch_delay_ms,
            sandbox_export=not args.no_sandbox_export,
        )
        return
    if args.role == "grpc-floor":
        role_grpc_floor()
        return
    if args.role == "uvicorn-floor":
        role_uvicorn_floor()
        return
    if args.role == "grpc-v2-floor":
        from floors import grpc_v2

        grpc_v2.serve()
        return
    if args.role == "rest-v2-floor":
        from floors import rest_v2

        rest_v2.serve()
        return

    os.sched_setaffinity(0, {1})
    if args.profile:
        profile = profile_section(args.loadgen_seconds, args.batch_delay_ms)
        print(profile)
        if not args.no_write:
            write_section("Serving worker profile (py-spy)", PROFILE_INTRO + profile)
        return
    loadgen = loadgen_section(args.loadgen_seconds, args.batch_delay_ms)
    print(loadgen)
    if not args.no_write:
        write_section("Serving under C load generators", loadgen)
    if args.loadgen_only:
        return
    secs = args.seconds
    delay = ("--batch-delay-ms", str(args.batch_delay_ms))
    with tempfile.TemporaryDirectory() as tmp:
        X = build_models(Path(tmp))
        proc, ports = start_role("grpc-floor")
        try:
            grpc_floor = asyncio.run(bench_grpc(ports["grpc"], X, secs, floor=True))
        finally:
            stop_role(proc)
        proc, ports = start_role("uvicorn-floor")
        try:
            rest_floor = asyncio.run(bench_rest(ports["rest"], X, secs, floor=True))
        finally:
            stop_role(proc)
        proc, ports = start_role("serving", "--models-dir", tmp, *delay)
        try:
            g = asyncio.run(bench_grpc(ports["grpc"], X, secs))
            r = asyncio.run(bench_rest(ports["rest"], X, secs))
        finally:
            stop_role(proc)
        proc, ports = start_role("serving", "--models-dir", tmp, "--no-compile", *delay)
        try:
            sk = asyncio.run(bench_sklearn_path(ports["grpc"], X, secs))
        finally:
            stop_role(proc)

    rows = [
        ("floor: bare grpc.aio constant", "unary c=1", grpc_floor["c1"]),
        ("floor: bare grpc.aio constant", "unary c=32", grpc_floor["c32"]),
        ("floor: bare uvicorn constant", "POST c=1", rest_floor["c1"]),
        ("floor: bare uvicorn constant", "POST c=32", rest_floor["c32"]),
    ]
    rows.append(("our server, HealthCheck (auth, no model)", "unary c=32", g["health c32"]))
    sk_label = "RandomForest, sklearn predict_proba (compiled path off)"
    rows += [
        (sk_label, "Predict c=1, batching on", sk["rf predict c1"]),
        (sk_label, "Predict c=1, batching off", sk["rf-nobatch predict c1"]),
        (sk_label, "Predict c=32, batching on", sk["rf predict c32"]),
        (sk_label, "Predict c=32, batching off", sk["rf-nobatch predict c32"]),
    ]
    labels = {"rf": "RandomForest(50, depth 8)", "lr": "LogisticRegression"}
    for m, label in labels.items():
        rows += [
            (label, "Predict c=1, batching on", g[f"{m} predict c1"]),
            (label, "Predict c=1, batching off", g[f"{m}-nobatch predict c1"]),
            (label, "Predict c=32, batching on", g[f"{m} predict c32"]),
            (label, "Predict c=32, batching off", g[f"{m}-nobatch predict c32"]),
            (label, "PredictStream, 32 in flight (msgs/s)", g[f"{m} stream w32"]),
            (label, "V2 ModelInfer gRPC, 1 row, c=32", g[f"{m} v2grpc c32"]),
            (label, "V2 infer REST (JSON), 1 row, c=1", r[f"{m} v2rest c1"]),
            (label, "V2 infer REST (JSON), 1 row, c=32", r[f"{m} v2rest c32"]),
            (
                label,
                "PredictBatch 1,000 rows, seed encoding (20,000 named `Feature`s), c=1 (req/s)",
                g[f"{m} batch1000 c1"],
            ),
            (
                label,
                "PredictBatch 1,000 rows, one `float_array` `Feature` per row, c=1 (req/s)",
                g[f"{m} batch1000compact c1"],
            ),
            (label, "V2 ModelInfer gRPC 1,000 rows raw, c=1 (req/s)", g[f"{m} v2grpc1000 c1"]),
            (label, "V2 infer REST JSON 1,000 rows, c=1 (req/s)", r[f"{m} v2rest1000 c1"]),
        ]
    table = ["| model | scenario | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    table += [f"| {a} | {b} | {fmt(c)} |" for a, b, c in rows]

    rf = "rf"
    checks = [
        (
            "RF unary Predict c=32 vs bare grpc.aio c=32",
            g[f"{rf} predict c32"][0] / grpc_floor["c32"][0],
            0.75,
        ),
        (
            "RF V2 REST c=32 vs bare uvicorn c=32",
            r[f"{rf} v2rest c32"][0] / rest_floor["c32"][0],
            0.30,
        ),
        (
            "RF (sklearn path) batching on/off throughput at c=32",
            sk["rf predict c32"][0] / sk["rf-nobatch predict c32"][0],
            3.0,
        ),
        (
            "RF (sklearn path) batching on/off p50 at c=1 (lower is better)",
            sk["rf predict c1"][1] / sk["rf-nobatch predict c1"][1],
            1.10,
        ),
        (
            "RF (compiled path) batching on/off throughput at c=32",
            g[f"{rf} predict c32"][0] / g[f"{rf}-nobatch predict c32"][0],
            3.0,
        ),
        (
            "RF (compiled path) batching on/off p50 at c=1 (lower is better)",
            g[f"{rf} predict c1"][1] / g[f"{rf}-nobatch predict c1"][1],
            1.10,
        ),
        (
            "RF 1,000 rows: PredictBatch (`float_array` rows) vs REST JSON",
            g[f"{rf} batch1000compact c1"][0] / r[f"{rf} v2rest1000 c1"][0],
            2.5,
        ),
        (
            "RF 1,000 rows: PredictBatch (seed per-value `Feature`s) vs REST JSON",
            g[f"{rf} batch1000 c1"][0] / r[f"{rf} v2rest1000 c1"][0],
            2.5,
        ),
        (
            "RF 1,000 rows: V2 gRPC raw vs REST JSON",
            g[f"{rf} v2grpc1000 c1"][0] / r[f"{rf} v2rest1000 c1"][0],
            2.5,
        ),
        (
            "LR 1,000 rows: PredictBatch (`float_array` rows) vs REST JSON",
            g["lr batch1000compact c1"][0] / r["lr v2rest1000 c1"][0],
            2.5,
        ),
        (
            "LR 1,000 rows: PredictBatch (seed per-value `Feature`s) vs REST JSON",
            g["lr batch1000 c1"][0] / r["lr v2rest1000 c1"][0],
            2.5,
        ),
        (
            "LR 1,000 rows: V2 gRPC raw vs REST JSON",
            g["lr v2grpc1000 c1"][0] / r["lr v2rest1000 c1"][0],
            2.5,
        ),
        (
            "LR unary Predict c=32 vs bare grpc.aio c=32",
            g["lr predict c32"][0] / grpc_floor["c32"][0],
            0.75,
        ),
        (
            "LR single row: gRPC Predict c=32 vs REST c=32",
            g["lr predict c32"][0] / r["lr v2rest c32"][0],
            1.0,
        ),
    ]
    ctable = ["| ratio | measured | target | met |", "|---|---|---|---|"]
    for name, value, target in checks:
        lower_better = "lower" in name
        met = value <= target if lower_better else value >= target
        ctable.append(
            f"| {name} | {value:.2f} | {'<=' if lower_better else '>='} {target} | {'yes' if met else 'no'} |"
        )

    unary_ratio = g[f"{rf} predict c32"][0] / grpc_floor["c32"][0]
    compiled_off = g[f"{rf}-nobatch predict c32"][0]
    rf_rest_ms = r[f"{rf} v2rest1000 c1"][1]
    notes = (
        "Reading the numbers:\n\n"
        "- Unary Predict at c=32 runs at "
        f"{unary_ratio:.0%} of the bare grpc.aio server ({g[f'{rf} predict c32'][0]:,.0f} vs "
        f"{grpc_floor['c32'][0]:,.0f} req/s; a trivial authenticated HealthCheck: "
        f"{g['health c32'][0]:,.0f}). Profiling the worker (py-spy) showed where the missing "
        "time had gone: batches of one. Cheap models run inline on the event loop, so nothing "
        "queues behind a running call and requests reach the batcher one loop turn apart; the "
        "model's fixed per-call cost was paid per request (the compiled forest of that time: "
        "~55 us for 1 row, ~125 us for 16; today's kernel, `SklearnRuntime.predict` timed "
        "alone on one core: ~9 us and ~27 us). Under load (its last batch carried more than one request) the batcher "
        "now waits for as many requests as that batch carried, at most `max_batch_delay_ms` "
        "(the API's default, 2 ms, used here), and dispatches the moment they are in: "
        f"{rows_per_call[f'{rf} c32']:.1f} rows per model call at c=32, "
        f"{rows_per_call[f'{rf} c1']:.1f} at c=1, where a lone request never waits.\n"
        "- RandomForest calls go through a compiled forest (verified bit-for-bit against "
        "`predict_proba` at load; `ML_PLATFORM_SERVING_COMPILE_FORESTS=false` turns it off): "
        "every tree in flat arrays, walked by numba loops "
        "(`serving/runtimes/forest_kernel.py`). With scikit-learn's own `predict_proba` "
        "(the sklearn-path rows), dynamic batching gives "
        f"{sk['rf predict c32'][0] / sk['rf-nobatch predict c32'][0]:.1f}x at c=32 and leaves "
        "c=1 latency unchanged. On the compiled path the unbatched server already does "
        f"{compiled_off:,.0f} req/s, so 3x would be {3 * compiled_off:,.0f}, above the bare "
        "grpc.aio floor itself: that ratio cannot be met on this stack, and batching takes the "
        "compiled path to the floor instead.\n"
        "- Python's gRPC stack loses to REST on single rows, floors included: bare uvicorn "
        f"answers {rest_floor['c32'][0]:,.0f} req/s at c=32 where bare grpc.aio answers "
        f"{grpc_floor['c32'][0]:,.0f}; V2 REST serves {r[f'{rf} v2rest c32'][0]:,.0f} req/s "
        f"where unary gRPC Predict serves {g[f'{rf} predict c32'][0]:,.0f}. PredictStream "
        f"(one stream, 32 in flight) reaches {g[f'{rf} stream w32'][0]:,.0f} msgs/s.\n"
        "- 1,000-row payloads, both `PredictBatch` encodings measured: the seed's one `Feature` "
        "per value (20,000 named sub-messages, 233 KB) and one `float_array` `Feature` per row "
        "(88 KB). When every item repeats one layout (the same names in the same order, or one "
        "`float_array` of the model's width) the server checks every non-float byte of every "
        "item against a template and reads the floats with numpy straight from the received "
        "bytes, and a batch with no failed item is answered as one byte template; any other "
        "request takes the per-item path. The seed's per-value encoding still loses to REST "
        f"({g[f'{rf} batch1000 c1'][0] / r[f'{rf} v2rest1000 c1'][0]:.2f}x on the RandomForest): "
        "its 233 KB of nested messages cost gRPC's C core more than the floats are worth, so "
        "bulk clients should send one `float_array` per row or V2 raw tensors. The "
        "2.5x-over-REST target is missed by every encoding: on the "
        f"RandomForest the model itself takes ~1.4 ms of REST's {rf_rest_ms:.2f} ms, which caps "
        "any transport's advantage well below 2.5x; on the LogisticRegression (model ~0.05 ms) "
        "what is left is moving 88-233 KB through Python's gRPC on both ends (the bare server's "
        f"round trip alone is {grpc_floor['c1'][1]:.2f} ms) against orjson parsing a flat JSON "
        "array.\n"
    )
    body = (
        "Command: `.venv/bin/python bench/serving.py` (`make bench`). Every server process "
        "(serving supervisor + 1 worker, or a floor) pinned to core 0 with `taskset -c 0`; the "
        "load generator (grpc.aio client; a raw keep-alive HTTP/1.1 client for REST) pinned to core 1. "
        f"{secs:.0f} s per row after a warm-up. Models served from skops files; 20 named features per "
        "row; the REST rows send the same rows as V2 JSON.\n\n"
        + "\n".join(table)
        + "\n\nTargets (issue 5), each a ratio measured in this run:\n\n"
        + "\n".join(ctable)
        + "\n\n"
        + notes
    )
    print(body)
    if not args.no_write:
        write_section("Serving", body)


if __name__ == "__main__":
    main()
