"""Format detection and the sandboxed loader's limits, on real files built here."""

from __future__ import annotations

import contextlib
import gc
import pickle
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from ml_platform.core.errors import InvalidArgument, Unavailable
from ml_platform.registry.formats import detect_format
from ml_platform.registry.signature import SignatureInspector
from ml_platform.schemas.models import ModelFormat
from tests.registry.conftest import BuiltModels


class _Sleeper:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (time.sleep, (120,))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_formats_are_detected_from_content_and_name(tmp_path: Path, models: BuiltModels) -> None:
    import xgboost

    booster = xgboost.XGBClassifier(n_estimators=2).fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    booster.save_model(tmp_path / "x.json")
    booster.save_model(tmp_path / "x.ubj")
    import skops.io
    from sklearn.linear_model import LinearRegression

    skops.io.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), tmp_path / "m.skops")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    cases = {
        _write(tmp_path, "model.joblib", models.joblib_bytes): ModelFormat.JOBLIB,
        _write(tmp_path, "model.pkl", models.joblib_bytes): ModelFormat.PICKLE,
        _write(tmp_path, "model", models.onnx_bytes): ModelFormat.ONNX,
        tmp_path / "x.json": ModelFormat.XGBOOST_JSON,
        tmp_path / "x.ubj": ModelFormat.XGBOOST_UBJ,
        tmp_path / "m.skops": ModelFormat.SKOPS,
        tmp_path / "other.zip": None,
        _write(tmp_path, "config.json", b'{"a": 1}'): None,
        _write(tmp_path, "notes.txt", b"hello"): None,
        _write(tmp_path, "empty.joblib", b""): None,
    }
    for path, expected in cases.items():
        assert detect_format(path) == expected, path.name


def test_xgboost_and_skops_signatures_are_inferred(tmp_path: Path) -> None:
    import pandas as pd
    import skops.io
    import xgboost
    from sklearn.tree import DecisionTreeClassifier

    frame = pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0], "income": [1.0, 2.0, 3.0, 4.0]})
    xgboost.XGBClassifier(n_estimators=2).fit(frame, [0, 1, 0, 1]).save_model(tmp_path / "x.ubj")
    skops.io.dump(DecisionTreeClassifier().fit(frame, ["a", "b", "a", "b"]), tmp_path / "t.skops")
    inspector = SignatureInspector(memory_mb=1536, timeout_seconds=60)
    booster = inspector.inspect(tmp_path / "x.ubj", ModelFormat.XGBOOST_UBJ)
    assert [f["name"] for f in booster.input_features] == ["age", "income"]
    assert booster.output_labels == ["0", "1"]
    tree = inspector.inspect(tmp_path / "t.skops", ModelFormat.SKOPS)
    assert [f["name"] for f in tree.input_features] == ["age", "income"]
    assert tree.output_labels == ["a", "b"]


def test_a_loader_that_hangs_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "slow.pkl", pickle.dumps(_Sleeper()))
    inspector = SignatureInspector(timeout_seconds=2, memory_mb=1024)
    with pytest.raises(InvalidArgument, match="took longer than 2s"):
        inspector.inspect(path, ModelFormat.PICKLE)


def test_pickles_are_not_loaded_when_disabled_and_a_missing_interpreter_is_503(
    tmp_path: Path, models: BuiltModels
) -> None:
    assert not SignatureInspector(allow_pickle=False).can_load(ModelFormat.JOBLIB)
    assert SignatureInspector(allow_pickle=False).can_load(ModelFormat.SKOPS)
    path = _write(tmp_path, "m.joblib", models.joblib_bytes)
    broken = SignatureInspector(python=str(tmp_path / "no-such-python"))
    with pytest.raises(Unavailable, match="signature inference is unavailable"):
        broken.inspect(path, ModelFormat.JOBLIB)


class _Runs:
    """A pickle that, when loaded, evaluates ``source`` (what a hostile upload can do)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, (self.source,))


def _load_error(inspector: SignatureInspector, tmp_path: Path, source: str) -> str:
    path = _write(tmp_path, "hostile.pkl", pickle.dumps(_Runs(source)))
    with pytest.raises(InvalidArgument) as raised:
        inspector.inspect(path, ModelFormat.PICKLE)
    return str(raised.value)


def _fork_servers() -> set[int]:
    """The pids of this process's live fork servers."""
    pids = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):  # a zombie (exited, not yet reaped) has no cmdline
            if "--fork-server" in child.cmdline():
                pids.add(child.pid)
    return pids


def test_each_artifact_loads_in_a_fresh_process_that_sees_no_platform_secret(
    tmp_path: Path, models: BuiltModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loaders fork from one preloaded server, but what one artifact does to its process
    (here: a global it plants) is gone for the next, and none sees the API's environment."""
    monkeypatch.setenv("ML_PLATFORM_JWT_SECRET", "the-api-secret-" + "s" * 32)
    inspector = SignatureInspector(timeout_seconds=30)
    planted = "__import__('builtins').__dict__.setdefault('MLP_PLANTED', 'yes')"
    assert "holds a builtins.str object" in _load_error(inspector, tmp_path, planted)
    # the same server forked the next loader: the global it planted is not there
    seen = "getattr(__import__('builtins'), 'MLP_PLANTED', None) or 1 / 0"
    assert "ZeroDivisionError" in _load_error(inspector, tmp_path, seen)
    secret = "__import__('os').environ.get('ML_PLATFORM_JWT_SECRET') or 1 / 0"
    assert "ZeroDivisionError" in _load_error(inspector, tmp_path, secret)
    environ = "open('/proc/self/environ', 'rb').read().find(b'the-api-secret') + 1 or 1 / 0"
    assert "ZeroDivisionError" in _load_error(inspector, tmp_path, environ)
    # and a real model still loads from it
    path = _write(tmp_path, "m.joblib", models.joblib_bytes)
    assert inspector.inspect(path, ModelFormat.JOBLIB).has_signature


def test_a_killed_fork_server_is_replaced_on_the_next_upload(
    tmp_path: Path, models: BuiltModels
) -> None:
    before = _fork_servers()  # other tests' inspectors may not be collected yet
    inspector = SignatureInspector(timeout_seconds=30)
    path = _write(tmp_path, "m.joblib", models.joblib_bytes)
    assert inspector.inspect(path, ModelFormat.JOBLIB).has_signature
    [first] = _fork_servers() - before
    psutil.Process(first).kill()
    psutil.Process(first).wait(10)
    inspected = inspector.inspect(path, ModelFormat.JOBLIB)
    assert [f["name"] for f in inspected.input_features] == [*models.features]
    [second] = _fork_servers() - before
    assert second != first
    del inspector
    gc.collect()  # its end of the socket closes: the server exits
    deadline = time.monotonic() + 20
    while second in _fork_servers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second not in _fork_servers()


def test_no_loader_can_trace_or_open_the_fork_server(tmp_path: Path) -> None:
    """The fork server and every loader are not dumpable (``PR_GET_DUMPABLE`` is 0): a
    process of the same user can neither ptrace them nor open their ``/proc`` files, so a
    hostile loader cannot tamper with the server that forks every later upload's loader."""
    inspector = SignatureInspector(timeout_seconds=30)
    dumpable = "__import__('ctypes').CDLL(None).prctl(3, 0, 0, 0, 0) or 1 / 0"
    assert "ZeroDivisionError" in _load_error(inspector, tmp_path, dumpable)
