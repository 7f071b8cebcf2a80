"""Generated code is fresh, and our V2 messages are wire-compatible with Triton's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from google.protobuf.descriptor import Descriptor

from ml_platform.serving.proto import inference_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_modules_are_fresh() -> None:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.check() == [], "run: python scripts/gen_protos.py"


def _fields(desc: Descriptor) -> dict[str, tuple[int, int, bool]]:
    out = {}
    for f in desc.fields:
        out[f.name] = (f.number, f.type, f.is_repeated)
        if f.message_type is not None and not f.message_type.GetOptions().map_entry:
            for name, spec in _fields(f.message_type).items():
                out[f"{f.name}.{name}"] = spec
    return out


def test_v2_messages_match_tritonclient_wire_format() -> None:
    from tritonclient.grpc import model_config_pb2 as triton_config
    from tritonclient.grpc import service_pb2 as triton

    for name in inference_pb2.DESCRIPTOR.message_types_by_name:
        ours = inference_pb2.DESCRIPTOR.message_types_by_name[name]
        if name in triton.DESCRIPTOR.message_types_by_name and name != "ModelConfigResponse":
            assert _fields(ours) == _fields(triton.DESCRIPTOR.message_types_by_name[name]), name
        else:  # the ModelConfig family: a subset of Triton's fields, same numbers and types
            theirs = (
                triton.DESCRIPTOR.message_types_by_name.get(name)
                or triton_config.DESCRIPTOR.message_types_by_name[name]
            )
            assert _fields(ours).items() <= _fields(theirs).items(), name
    ours_enum = inference_pb2.DESCRIPTOR.enum_types_by_name["DataType"]
    theirs_enum = triton_config.DESCRIPTOR.enum_types_by_name["DataType"]
    assert {v.name: v.number for v in ours_enum.values} == {
        v.name: v.number for v in theirs_enum.values
    }
    ours_svc = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs_svc = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in ours_svc.methods:
        other = theirs_svc.methods_by_name[method.name]
        assert method.input_type.name == other.input_type.name
        assert method.output_type.name == other.output_type.name
        assert (method.client_streaming, method.server_streaming) == (
            other.client_streaming,
            other.server_streaming,
        )
