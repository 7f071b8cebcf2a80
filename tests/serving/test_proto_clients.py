"""Clients that know the data plane only from its published contract, against a live plane.

- The `.proto` files under protos/ compile with grpcio-tools into a fresh directory, and a
  client process that imports only those modules (the project's own generated code is taken
  off its path) calls every RPC of ModelServing and of the V2 service, which is served as
  ``inference.GRPCInferenceService`` (inference.proto says why its package differs).
- Server reflection lists every service served, and a reflection client resolves each one,
  so a client with no files at all (grpcurl-style) can call the V2 service.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import joblib
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sklearn.linear_model import LogisticRegression

from ml_platform.serving import ArtifactFormat, ServingServer
from ml_platform.serving.proto import inference_pb2, serving_pb2
from tests.serving.conftest import KEY_T1, authenticator, settings
from tests.serving.doubles import InMemoryDeploymentSource, InMemoryStatusSink
from tests.serving.models_fixture import FEATURES, dataset, served

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
V2_SERVICE = "inference.GRPCInferenceService"
MODEL = "logreg"


@dataclass
class Plane:
    target: str
    channel: grpc.Channel


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    X, y = dataset()
    path = tmp_path_factory.mktemp("proto-clients") / "logreg.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    deployment = served("t1", MODEL, path, ArtifactFormat.JOBLIB)
    source = InMemoryDeploymentSource([deployment])
    sink = InMemoryStatusSink()
    with ServingServer(settings(serving_workers=1), source, sink, authenticator()) as server:
        status = sink.wait_for("t1", MODEL, timeout=120)
        assert status.state.value == "ready", status
        channel = grpc.insecure_channel(server.grpc_target)
        try:
            yield Plane(server.grpc_target, channel)
        finally:
            channel.close()


@pytest.fixture(scope="module")
def fresh_protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("fresh-protos")
    include = Path(protoc.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    assert "ml_platform/serving/proto/serving.proto" in protos
    assert "ml_platform/serving/proto/inference.proto" in protos
    args = ["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}"]
    assert protoc.main([*args, f"--grpc_python_out={out}", *protos]) == 0
    return out


CLIENT = r"""
import json, os, sys

fresh, target, key, model, src = sys.argv[1:6]
features = json.loads(sys.argv[6])
# only the freshly compiled modules: the project's own package is taken off the path
sys.path = [fresh] + [p for p in sys.path if os.path.realpath(p) != os.path.realpath(src)]

import grpc
from ml_platform.serving.proto import inference_pb2, serving_pb2, serving_pb2_grpc

assert serving_pb2.__file__.startswith(fresh) and inference_pb2.__file__.startswith(fresh)
metadata = (("x-api-key", key),)
channel = grpc.insecure_channel(target)
called = {"ModelServing": {}, "V2": {}}

# ModelServing: the generated stub
stub = serving_pb2_grpc.ModelServingStub(channel)
row = [serving_pb2.Feature(name=name, float_value=0.25) for name in features]
one = serving_pb2.PredictRequest(model_id=model, features=row)
info = stub.GetModel(serving_pb2.GetModelRequest(model_id=model), metadata=metadata)
called["ModelServing"]["GetModel"] = list(info.input_features)
answer = stub.Predict(one, metadata=metadata)
called["ModelServing"]["Predict"] = len(answer.predictions)
batch = stub.PredictBatch(
    serving_pb2.PredictBatchRequest(model_id=model, requests=[one, one, one]), metadata=metadata
)
called["ModelServing"]["PredictBatch"] = len(batch.responses)
streamed = list(stub.PredictStream(iter([one, one]), metadata=metadata))
called["ModelServing"]["PredictStream"] = len(streamed)
health = stub.HealthCheck(serving_pb2.HealthCheckRequest(model_id=model), metadata=metadata)
called["ModelServing"]["HealthCheck"] = health.healthy

# V2: the messages of inference.proto, on the paths of the name it is served as
v2 = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
def call(method, request):
    descriptor = v2.methods_by_name[method]
    output = getattr(inference_pb2, descriptor.output_type.name)
    path = f"/inference.GRPCInferenceService/{method}"
    options = dict(
        request_serializer=lambda m: m.SerializeToString(), response_deserializer=output.FromString
    )
    if descriptor.client_streaming:
        return list(channel.stream_stream(path, **options)(iter(request), metadata=metadata))
    return channel.unary_unary(path, **options)(request, metadata=metadata)

pb = inference_pb2
infer = pb.ModelInferRequest(
    model_name=model,
    inputs=[
        pb.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP64", shape=[2, len(features)],
            contents=pb.InferTensorContents(fp64_contents=[0.25] * (2 * len(features))),
        )
    ],
)
called["V2"]["ServerLive"] = call("ServerLive", pb.ServerLiveRequest()).live
called["V2"]["ServerReady"] = call("ServerReady", pb.ServerReadyRequest()).ready
called["V2"]["ModelReady"] = call("ModelReady", pb.ModelReadyRequest(name=model)).ready
called["V2"]["ServerMetadata"] = bool(call("ServerMetadata", pb.ServerMetadataRequest()).name)
called["V2"]["ModelMetadata"] = call("ModelMetadata", pb.ModelMetadataRequest(name=model)).name
inferred = call("ModelInfer", infer)
called["V2"]["ModelInfer"] = [list(output.shape) for output in inferred.outputs]
stream = call("ModelStreamInfer", [infer, infer])
called["V2"]["ModelStreamInfer"] = [
    (answer.error_message, len(answer.infer_response.outputs)) for answer in stream
]
config = call("ModelConfig", pb.ModelConfigRequest(name=model)).config
called["V2"]["ModelConfig"] = config.name
print(json.dumps({
    "called": called,
    "declared": {
        "ModelServing": [
            m.name for m in serving_pb2.DESCRIPTOR.services_by_name["ModelServing"].methods
        ],
        "V2": [m.name for m in v2.methods],
    },
}))
"""


def test_a_client_compiled_from_the_protos_calls_every_rpc(
    plane: Plane, fresh_protos: Path
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT,
            str(fresh_protos),
            plane.target,
            KEY_T1,
            MODEL,
            str(ROOT / "src"),
            json.dumps(FEATURES),
        ],
        cwd=fresh_protos,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    called, declared = report["called"], report["declared"]
    # the fresh files declare what our own generated modules do, and every RPC was called
    assert declared["ModelServing"] == [
        m.name for m in serving_pb2.DESCRIPTOR.services_by_name["ModelServing"].methods
    ]
    assert declared["V2"] == [
        m.name for m in inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    ]
    assert sorted(called["ModelServing"]) == sorted(declared["ModelServing"])
    assert sorted(called["V2"]) == sorted(declared["V2"])

    assert called["ModelServing"] == {
        "GetModel": list(FEATURES),
        "Predict": 1,
        "PredictBatch": 3,
        "PredictStream": 2,
        "HealthCheck": True,
    }
    v2 = called["V2"]
    assert v2["ServerLive"] is v2["ServerReady"] is v2["ModelReady"] is v2["ServerMetadata"] is True
    assert v2["ModelMetadata"] == v2["ModelConfig"] == MODEL
    assert v2["ModelInfer"] and all(shape[0] == 2 for shape in v2["ModelInfer"])
    assert [error for error, _ in v2["ModelStreamInfer"]] == ["", ""]
    assert all(outputs > 0 for _, outputs in v2["ModelStreamInfer"])


REQUIRED_SERVICES = {
    serving_pb2.DESCRIPTOR.services_by_name["ModelServing"].full_name,
    V2_SERVICE,
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
}


def test_reflection_lists_and_describes_every_service(plane: Plane) -> None:
    database = ProtoReflectionDescriptorDatabase(plane.channel)
    names = set(database.get_services())
    assert names >= REQUIRED_SERVICES
    pool = descriptor_pool.DescriptorPool(database)
    for name in names:  # each listed service resolves to a descriptor
        assert pool.FindServiceByName(name).full_name == name
    v2 = pool.FindServiceByName(V2_SERVICE)
    ours = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in v2.methods] == [m.name for m in ours.methods]
    serving = pool.FindServiceByName("ml_platform.serving.ModelServing")
    assert [m.name for m in serving.methods] == [
        m.name for m in serving_pb2.DESCRIPTOR.services_by_name["ModelServing"].methods
    ]


def test_a_reflection_only_client_calls_the_v2_service(plane: Plane) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(plane.channel))
    method = pool.FindServiceByName(V2_SERVICE).methods_by_name["ModelReady"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    ready = plane.channel.unary_unary(
        f"/{V2_SERVICE}/{method.name}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    answer = ready(request_class(name=MODEL), metadata=(("x-api-key", KEY_T1),))
    assert answer.ready is True
