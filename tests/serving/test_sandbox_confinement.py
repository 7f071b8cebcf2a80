"""Issue 5: a tenant's hostile pickle must not read the platform's or other tenants' data.

A pickle whose ``__reduce__`` runs a probe at load: it tries to read the platform's SQLite
database (created by the store itself), the credentials file (written by the bootstrap code)
and another tenant's deployed artifact, to connect to a TCP port on 127.0.0.1 (where
PostgreSQL and Redis listen in a real install), and looks for a server secret in its
environment, then fails its load with a report of what it reached. The directories here are
deliberately world-traversable and the files world-readable where the platform makes them so
(the database under the default umask, artifacts 0444), so only the sandbox's confinement,
not file modes, can keep the probe out. Confinement needs root: CI runs as root.
"""

from __future__ import annotations

import ast
import logging
import os
import pickle
import pwd
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import psutil
import pytest

from ml_platform.server.bootstrap import write_credentials
from ml_platform.serving import (
    ArtifactFormat,
    LoadState,
    ServingServer,
)
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from ml_platform.store.db import Database
from tests.serving.conftest import KEY_T1, authenticator, settings
from tests.serving.doubles import InMemoryDeploymentSource, InMemoryStatusSink
from tests.serving.models_fixture import FEATURES, Built, RaiseOnPredict, served

SECRET_ENV = "ML_PLATFORM_TEST_SANDBOX_SECRET"

_PROBE_SOURCE = """
import os, socket
report = {"uid": os.getuid(), "cwd_entries": None}
for name, path in TARGETS:
    try:
        with open(path, "rb") as fh:
            report[name] = "read %d bytes" % len(fh.read(64))
    except Exception as exc:
        report[name] = type(exc).__name__
try:
    report["cwd_entries"] = sorted(os.listdir("/"))[:5]
except Exception as exc:
    report["cwd_entries"] = type(exc).__name__
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", PORT))  # numeric: no resolver, no codec lookups
    finally:
        s.close()
    report["tcp_127_0_0_1"] = "connected"
except Exception as exc:
    report["tcp_127_0_0_1"] = type(exc).__name__
report["env_secret"] = "found" if SECRET in os.environ else "absent"
raise RuntimeError("PROBE" + repr(report) + "END")
"""


class Probe:
    """Unpickling this runs ``_PROBE_SOURCE`` (builtins only: no module of ours is needed)."""

    def __init__(self, targets: list[tuple[str, str]], port: int) -> None:
        self.targets = targets
        self.port = port

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        source = (
            f"TARGETS = {self.targets!r}\nPORT = {self.port!r}\nSECRET = {SECRET_ENV!r}\n"
            + _PROBE_SOURCE
        )
        return (exec, (source, {}))


@dataclass
class Layout:
    base: Path
    targets: dict[str, Path]
    probe: Path
    other_tenant_artifact: Path
    port: int


@pytest.fixture
def layout(built: dict[str, Built], monkeypatch: pytest.MonkeyPatch) -> Iterator[Layout]:
    base = Path(tempfile.mkdtemp(prefix="mlp-confine-", dir="/tmp"))
    base.chmod(0o755)  # not under pytest's 0700 tmp_path: modes alone must not decide
    data_dir = base / "data"
    db = Database(f"sqlite:///{data_dir / 'mlp.db'}")
    db.upgrade()
    db.engine.dispose()
    credentials = base / "config" / "credentials.json"
    write_credentials(
        credentials, base_url="http://127.0.0.1:1", api_key="mlp_secret_admin_key", tenant="t1"
    )
    other = base / "artifacts" / "t2" / "model.joblib"
    other.parent.mkdir(parents=True)
    for d in (other.parent, other.parent.parent, data_dir):
        d.chmod(0o755)
    shutil.copyfile(built["logreg"].paths[ArtifactFormat.JOBLIB], other)
    other.chmod(0o444)
    probe = base / "probe.pkl"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    targets = {"database": data_dir / "mlp.db", "credentials": credentials, "other_tenant": other}
    probe.write_bytes(pickle.dumps(Probe([(k, str(v)) for k, v in targets.items()], port)))
    monkeypatch.setenv(SECRET_ENV, "s3cr3t")
    try:
        yield Layout(base, targets, probe, other, port)
    finally:
        listener.close()
        shutil.rmtree(base, ignore_errors=True)


def _features(row: np.ndarray) -> list[serving_pb2.Feature]:
    pairs = zip(FEATURES, row, strict=True)
    return [serving_pb2.Feature(name=n, float_value=float(v)) for n, v in pairs]


def _probe_report(reason: str) -> dict[str, Any]:
    assert "PROBE" in reason, reason
    report = ast.literal_eval(reason.split("PROBE", 1)[1].split("END", 1)[0])
    assert isinstance(report, dict)
    return report


def _deployments(layout: Layout, built: dict[str, Built], wave: Path, fixture_pkl: Path) -> Any:
    return InMemoryDeploymentSource(
        [
            served("t1", "probe", layout.probe, ArtifactFormat.PICKLE),
            served("t1", "rf", built["rf"].paths[ArtifactFormat.JOBLIB], ArtifactFormat.JOBLIB),
            served("t1", "needs-module", wave, ArtifactFormat.PICKLE),
            served("t1", "preloaded", fixture_pkl, ArtifactFormat.PICKLE),
            served("t2", "theirs", layout.other_tenant_artifact, ArtifactFormat.JOBLIB),
            served("t2", "xgb-joblib", layout.base / "xgb.joblib", ArtifactFormat.JOBLIB),
        ]
    )


def _needs_module_pickle(root: Path) -> Path:
    """A pickle naming a standard-library module nobody preloads (``wave``)."""
    path = root / "wave.pkl"
    path.write_bytes(b"cwave\nopen\n(S'x'\ntR.")
    path.chmod(0o644)
    return path


def _fixture_pickle(root: Path) -> Path:
    path = root / "raises.pkl"
    path.write_bytes(pickle.dumps(RaiseOnPredict()))
    return path


def _only_sockets_and_pipes(pid: int) -> list[str]:
    """Targets of the process's descriptors above stdio that are regular files or dirs."""
    found = []
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        if int(entry.name) <= 2:
            continue
        try:
            target = str(entry.readlink())
        except OSError:
            continue
        if target.startswith("/"):
            found.append(target)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="confining sandboxes needs root (CI runs as root)")
def test_confined_sandbox_cannot_read_platform_or_other_tenants_data(
    layout: Layout, built: dict[str, Built]
) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this machine")
    joblib.dump(built["xgb"].estimator, layout.base / "xgb.joblib")  # XGBoost's sklearn API
    source = _deployments(
        layout, built, _needs_module_pickle(layout.base), _fixture_pickle(layout.base)
    )
    sink = InMemoryStatusSink()
    cfg = settings(
        serving_workers=1,
        job_user="nobody",
        serving_sandbox_preload=["tests.serving.models_fixture"],
    )
    with ServingServer(cfg, source, sink, authenticator()) as server:
        probe = sink.wait_for("t1", "probe", (LoadState.FAILED,), timeout=120)
        report = _probe_report(probe.reason)
        # The probe really ran, as the job user, locked in an empty root.
        assert report["uid"] == nobody.pw_uid
        assert report["cwd_entries"] == []
        # ... and reached none of the platform's or the other tenant's data.
        for name in layout.targets:
            assert report[name] in ("FileNotFoundError", "PermissionError"), report
        assert report["tcp_127_0_0_1"] in ("OSError", "ConnectionRefusedError"), report
        assert report["env_secret"] == "absent"

        # Legitimate models still load from the descriptor the supervisor passed.
        assert sink.wait_for("t1", "rf", timeout=120).state is LoadState.READY
        assert sink.wait_for("t2", "theirs", timeout=120).state is LoadState.READY
        assert sink.wait_for("t1", "preloaded", timeout=120).state is LoadState.READY
        assert sink.wait_for("t2", "xgb-joblib", timeout=120).state is LoadState.READY
        missing = sink.wait_for("t1", "needs-module", (LoadState.FAILED,), timeout=120)
        assert "No module named 'wave'" in missing.reason
        assert "ML_PLATFORM_SERVING_SANDBOX_PRELOAD" in missing.reason

        rf = built["rf"]
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = serving_pb2_grpc.ModelServingStub(channel)
            reply = stub.Predict(
                serving_pb2.PredictRequest(model_id="rf", features=_features(rf.X[0])),
                metadata=(("x-api-key", KEY_T1),),
                timeout=30,
                wait_for_ready=True,
            )
            health = stub.HealthCheck(
                serving_pb2.HealthCheckRequest(model_id="rf"),
                metadata=(("x-api-key", KEY_T1),),
                timeout=30,
            )
        assert reply.predictions[0] == float(rf.estimator.predict(rf.X[:1])[0])
        # a confined sandbox exports too: it preloaded what skops needs to write the model
        assert health.details["loaded_from"] == "sandbox-export", dict(health.details)

        pids = server.sandbox_pids()
        assert set(pids) == {"t1", "t2"} and pids["t1"] != pids["t2"]
        for pid in pids.values():
            proc = psutil.Process(pid)
            assert proc.uids() == (nobody.pw_uid,) * 3
            assert proc.gids() == (nobody.pw_gid,) * 3
            # No artifact (nor anything else on disk) stays open after loading.
            assert _only_sockets_and_pipes(pid) == []
            root = Path(f"/proc/{pid}/root").readlink()
            assert str(root) != "/" and stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="shows what root without job_user can read")
def test_unconfined_sandbox_reads_everything_and_the_server_warns(
    layout: Layout, built: dict[str, Built], caplog: pytest.LogCaptureFixture
) -> None:
    """Today's behaviour without ``job_user``: the same probe reads it all (so the probe
    works), and the supervisor says so once at startup."""
    source = InMemoryDeploymentSource([served("t1", "probe", layout.probe, ArtifactFormat.PICKLE)])
    sink = InMemoryStatusSink()
    caplog.set_level(logging.WARNING, logger="ml_platform.serving")
    with ServingServer(settings(serving_workers=1), source, sink, authenticator()):
        report = _probe_report(
            sink.wait_for("t1", "probe", (LoadState.FAILED,), timeout=120).reason
        )
    assert report["uid"] == 0
    for name in layout.targets:
        assert report[name].startswith("read "), report
    assert report["tcp_127_0_0_1"] == "connected"
    assert report["env_secret"] == "absent"  # the environment is built from scratch anyway
    warnings = [r for r in caplog.records if "run with the server's rights" in r.getMessage()]
    assert len(warnings) == 1


def test_sandbox_artifact_descriptors_survive_the_wire(tmp_path: Path) -> None:
    """The descriptor channel in isolation: an fd arrives, an error arrives without one."""
    from ml_platform.serving.sandbox import wire as sandbox_wire

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.setblocking(False)
    f = tmp_path / "artifact.bin"
    f.write_bytes(b"payload")
    fd = os.open(f, os.O_RDONLY)
    sandbox_wire.send_artifact(a, "t/d/1/r", fd)
    os.close(fd)
    sandbox_wire.send_artifact(a, "t/e/1/r", None, "cannot open the model artifact: gone")
    got = sandbox_wire.receive_artifacts(b)
    assert [(k, e) for k, _, e in got] == [
        ("t/d/1/r", ""),
        ("t/e/1/r", "cannot open the model artifact: gone"),
    ]
    received = got[0][1]
    assert received is not None and got[1][1] is None
    with open(received, "rb") as fh:
        assert fh.read() == b"payload"
    assert sandbox_wire.receive_artifacts(b) == []
    a.close()
    with pytest.raises(EOFError):
        sandbox_wire.receive_artifacts(b)
    b.close()


def test_loading_from_a_descriptor_matches_the_model(built: dict[str, Built]) -> None:
    from ml_platform.serving.sandbox.child import load_from_file

    rf = built["rf"]
    for fmt in (ArtifactFormat.JOBLIB, ArtifactFormat.PICKLE):
        with open(rf.paths[fmt], "rb") as fh:
            runtime = load_from_file(fmt, fh, compile_forests=False)
        got = runtime.predict(rf.X[:5])
        assert np.array_equal(got.values, rf.estimator.predict(rf.X[:5]).astype(np.float64))
