"""Issue 15: the transport between a front worker and a tenant's sandbox process.

Against a real sandbox child (started by ``prepare_sandbox`` as the supervisor does, loading
real joblib/pickle artifacts): answers equal the model's own, many requests in flight on one
connection each get their own answer, a model error stays a model error, a killed sandbox
fails its calls as Unavailable and a new one is reached by the same connection object.
Against a hostile stand-in (a socket server speaking the wire format): oversized or
inconsistent frames are refused without trusting their sizes, and frames cut anywhere by the
kernel are reassembled.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest

from ml_platform.core.errors import Unavailable
from ml_platform.serving import ArtifactFormat, ServedModel
from ml_platform.serving.sandbox import wire
from ml_platform.serving.sandbox.client import (
    OnAnswer,
    RemoteModel,
    SandboxConnection,
    SandboxModelError,
    _Protocol,
    _settle,
)
from ml_platform.serving.sandbox.launch import SandboxProcess, prepare_sandbox
from tests.serving.conftest import settings
from tests.serving.models_fixture import N_FEATURES, Built, served


@dataclass
class Child:
    proc: SandboxProcess
    control: object
    path: str


def _start(run_dir: str, models: list[ServedModel]) -> Child:
    proc, control, ends = prepare_sandbox("t1", run_dir, settings(), None)
    proc.start()
    ends.close()
    assert orjson.loads(control.recv_bytes())["op"] == "hello"
    proc.send_artifacts(models)
    desired = {"op": "desired", "revision": 1, "models": [m.to_dict() for m in models]}
    control.send_bytes(orjson.dumps(desired))
    return Child(proc, control, wire.socket_path(run_dir, "t1"))


def _stop(child: Child) -> None:
    child.proc.kill()
    child.proc.join(10)


@pytest.fixture(scope="module")
def run_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="mlp-sbx-", dir="/tmp")  # short: AF_UNIX paths are limited
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def models(built: dict[str, Built], raising_path: Path) -> list[ServedModel]:
    return [
        served("t1", "rf", built["rf"].paths[ArtifactFormat.JOBLIB], ArtifactFormat.JOBLIB),
        served("t1", "lr", built["logreg"].paths[ArtifactFormat.PICKLE], ArtifactFormat.PICKLE),
        served("t1", "raises", raising_path, ArtifactFormat.PICKLE),
    ]


@pytest.fixture(scope="module")
def child(run_dir: str, models: list[ServedModel]) -> Iterator[Child]:
    c = _start(run_dir, models)
    yield c
    _stop(c)


@pytest.fixture
async def conn(child: Child) -> AsyncIterator[SandboxConnection]:
    c = SandboxConnection(child.path)
    yield c
    await c.close()


async def _remote(conn: SandboxConnection, m: ServedModel) -> RemoteModel:
    r = RemoteModel(conn, m.key, N_FEATURES)
    await r.wait_ready(60)
    return r


@pytest.mark.parametrize("n_rows", [1, 7, 1000])
async def test_answers_equal_the_models_own(
    conn: SandboxConnection, models: list[ServedModel], built: dict[str, Built], n_rows: int
) -> None:
    for m, est in ((models[0], built["rf"].estimator), (models[1], built["logreg"].estimator)):
        remote = await _remote(conn, m)
        rows = np.resize(built["rf"].X, (n_rows, N_FEATURES))
        pred = await remote.predict(rows)
        assert pred.probabilities is not None
        np.testing.assert_allclose(pred.probabilities, est.predict_proba(rows), rtol=1e-12)
        assert pred.labels == ("0", "1")
        assert pred.values.shape == (n_rows,)
        assert pred.values.flags.owndata or not pred.values.flags.writeable


async def test_many_calls_in_flight_on_one_connection_each_get_their_own_answer(
    conn: SandboxConnection, models: list[ServedModel], built: dict[str, Built]
) -> None:
    rf, lr = await _remote(conn, models[0]), await _remote(conn, models[1])
    X = built["rf"].X
    calls = [(rf if i % 2 else lr, X[i : i + 1 + i % 5]) for i in range(80)]
    preds = await asyncio.gather(*(r.predict(rows) for r, rows in calls))
    for (r, rows), pred in zip(calls, preds, strict=True):
        est = built["rf" if r is rf else "logreg"].estimator
        assert pred.probabilities is not None
        np.testing.assert_allclose(pred.probabilities, est.predict_proba(rows), rtol=1e-12)


def test_the_workers_event_loop_uvloop_sends_rows_from_their_memory_and_parses_answers(
    child: Child, models: list[ServedModel], built: dict[str, Built]
) -> None:
    """Front workers run uvloop, whose transports differ from asyncio's (``writelines`` of
    a memoryview, ``connection_made`` called later): the same answers through it."""
    import uvloop

    async def go() -> None:
        conn = SandboxConnection(child.path)
        try:
            rf = await _remote(conn, models[0])
            X = built["rf"].X
            for rows in (X[:1], np.resize(X, (1000, N_FEATURES))):
                preds = await asyncio.gather(*(rf.predict(rows) for _ in range(4)))
                for pred in preds:
                    assert pred.probabilities is not None
                    np.testing.assert_allclose(
                        pred.probabilities, built["rf"].estimator.predict_proba(rows), rtol=1e-12
                    )
        finally:
            await conn.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(go())


async def test_a_model_error_is_reported_and_the_connection_keeps_serving(
    conn: SandboxConnection, models: list[ServedModel], built: dict[str, Built]
) -> None:
    raises, rf = await _remote(conn, models[2]), await _remote(conn, models[0])
    bad = built["rf"].X[:3].copy()
    bad[1, 0] = 1e7
    with pytest.raises(SandboxModelError, match="RuntimeError"):
        await raises.predict(bad)
    assert (await raises.predict(built["rf"].X[:2])).values.shape == (2,)
    assert (await rf.predict(built["rf"].X[:2])).values.shape == (2,)


async def test_an_unknown_model_is_unavailable_not_a_model_error(conn: SandboxConnection) -> None:
    ghost = RemoteModel(conn, "t1/ghost/1/r1", N_FEATURES)
    with pytest.raises(Unavailable, match="not loaded"):
        await ghost.predict(np.zeros((1, N_FEATURES)))


async def test_a_killed_sandbox_fails_calls_unavailable_and_its_replacement_is_reached(
    models: list[ServedModel], built: dict[str, Built]
) -> None:
    run_dir = tempfile.mkdtemp(prefix="mlp-sbx-", dir="/tmp")
    first = _start(run_dir, models[:1])
    conn = SandboxConnection(first.path)
    try:
        remote = await _remote(conn, models[0])
        assert (await remote.predict(built["rf"].X[:1])).values.shape == (1,)
        _stop(first)
        with pytest.raises(Unavailable):
            for _ in range(3):  # the loss may be seen on the call's write or on its read
                await remote.predict(built["rf"].X[:1])
        second = _start(run_dir, models[:1])
        try:
            remote = await _remote(conn, models[0])  # the same connection object reconnects
            assert (await remote.predict(built["rf"].X[:4])).values.shape == (4,)
        finally:
            _stop(second)
    finally:
        await conn.close()
        shutil.rmtree(run_dir, ignore_errors=True)


# -- a hostile sandbox: the worker trusts none of its sizes ---------------------------------


class FakeSandbox:
    """Accepts one connection, reads each request and answers with ``respond(request)``."""

    def __init__(self, path: str, respond: object) -> None:
        self.path = path
        self._respond = respond
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            while True:
                head = conn.recv(wire.REQUEST.size, socket.MSG_WAITALL)
                if len(head) < wire.REQUEST.size:
                    return
                body_len, rid, op, key_len, rows, cols = wire.REQUEST.unpack(head)
                body = conn.recv(body_len, socket.MSG_WAITALL) if body_len else b""
                conn.sendall(self._respond(rid, op, rows, cols, body[key_len:]))  # type: ignore[operator]

    def close(self) -> None:
        self._listener.close()


def _ok_status(rid: int) -> bytes:
    labels = b"0" + wire.LABEL_SEP.encode() + b"1"
    return b"".join(wire.response_parts(rid, wire.ST_OK, 4242, 0, labels))


@pytest.fixture
def fake_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="mlp-fake-", dir="/tmp")
    yield str(Path(d) / "s.sock")
    shutil.rmtree(d, ignore_errors=True)


async def test_an_oversized_frame_header_is_refused_and_fails_the_call_unavailable(
    fake_path: str,
) -> None:
    def respond(rid: int, op: int, rows: int, cols: int, payload: bytes) -> bytes:
        if op == wire.OP_STATUS:
            return _ok_status(rid)
        return wire.RESPONSE.pack(wire.MAX_FRAME_BYTES + 1, rid, wire.ST_OK, rows, 2)

    fake = FakeSandbox(fake_path, respond)
    conn = SandboxConnection(fake_path)
    try:
        remote = RemoteModel(conn, "t1/m/1/r1", N_FEATURES)
        await remote.wait_ready(10)
        assert remote.pid == 4242 and remote.labels == ("0", "1")
        with pytest.raises(Unavailable, match="went away"):
            await asyncio.wait_for(remote.predict(np.zeros((1, N_FEATURES))), 10)
    finally:
        await conn.close()
        fake.close()


@pytest.mark.parametrize(
    "answer",
    [
        "rows",  # claims another number of rows than were sent
        "short",  # fewer bytes than its rows and columns need
        "columns",  # probability columns that do not match the model's labels
    ],
)
async def test_an_inconsistent_answer_is_a_malformed_answer_error(
    fake_path: str, answer: str
) -> None:
    def respond(rid: int, op: int, rows: int, cols: int, payload: bytes) -> bytes:
        if op == wire.OP_STATUS:
            return _ok_status(rid)
        n, k, body = rows, 2, np.zeros(rows * 3).tobytes()
        if answer == "rows":
            n, body = rows + 1, np.zeros((rows + 1) * 3).tobytes()
        elif answer == "short":
            body = body[:-8]
        else:
            k, body = 3, np.zeros(rows * 4).tobytes()
        return b"".join(wire.response_parts(rid, wire.ST_OK, n, k, body))

    fake = FakeSandbox(fake_path, respond)
    conn = SandboxConnection(fake_path)
    try:
        remote = RemoteModel(conn, "t1/m/1/r1", N_FEATURES)
        await remote.wait_ready(10)
        with pytest.raises(SandboxModelError, match="malformed answer"):
            await remote.predict(np.zeros((2, N_FEATURES)))
    finally:
        await conn.close()
        fake.close()


async def test_frames_cut_anywhere_are_reassembled_in_order() -> None:
    loop = asyncio.get_running_loop()
    bodies = {1: np.arange(3.0).tobytes(), 2: b"", 3: np.arange(300.0).tobytes()}
    futures = {rid: loop.create_future() for rid in bodies}
    pending: dict[int, OnAnswer] = {
        rid: functools.partial(_settle, fut) for rid, fut in futures.items()
    }
    stream = b"".join(
        b"".join(wire.response_parts(rid, wire.ST_OK, rid, 0, body)) for rid, body in bodies.items()
    )
    proto = _Protocol(pending, "test")
    cuts = [0, 1, 5, wire.RESPONSE.size, wire.RESPONSE.size + 3, 60, 61, 200, len(stream)]
    for a, b in itertools.pairwise(cuts):
        proto.data_received(stream[a:b])
    assert {rid: f.result() for rid, f in futures.items()} == {
        rid: (wire.ST_OK, rid, 0, body) for rid, body in bodies.items()
    }
    assert not pending  # resolved futures leave the table
    proto.data_received(stream)  # whole frames in one read: answers nobody waits for are dropped
    assert not pending


def test_request_head_counts_the_key_and_rows() -> None:
    head = wire.request_head(7, wire.OP_PREDICT, b"t/d/1/r", 2, 3, 48)
    body_len, rid, op, key_len, rows, cols = wire.REQUEST.unpack(head[: wire.REQUEST.size])
    assert (body_len, rid, op, key_len, rows, cols) == (7 + 48, 7, wire.OP_PREDICT, 7, 2, 3)
    assert head[wire.REQUEST.size :] == b"t/d/1/r"
    assert struct.calcsize("<IIBHII") == wire.REQUEST.size


async def test_the_sandbox_answers_requests_sent_back_to_back_or_cut_anywhere(
    conn: SandboxConnection, child: Child, models: list[ServedModel], built: dict[str, Built]
) -> None:
    """The sandbox reads whatever has arrived: several requests in one read, or one request
    over many reads (a header cut short included), each answered once and in order."""
    await _remote(conn, models[0])  # loaded
    key = models[0].key.encode()
    X = built["rf"].X
    batches = [X[:1], np.resize(X, (9000, N_FEATURES)), X[3:5], X[5:6]]  # 9,000: > its buffer
    stream = b"".join(
        wire.request_head(rid, wire.OP_PREDICT, key, len(rows), N_FEATURES, rows.nbytes)
        + np.ascontiguousarray(rows).tobytes()
        for rid, rows in enumerate(batches, start=1)
    )
    cuts = [0, 3, wire.REQUEST.size + 2, 200, 201, len(stream) - 20, len(stream)]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(child.path)
    sock.settimeout(20)  # a lost or misread request fails the test instead of hanging it
    with sock:
        for a, b in itertools.pairwise(cuts):
            sock.sendall(stream[a:b])
            await asyncio.sleep(0.01)  # let the sandbox read each piece on its own
        for rid, rows in enumerate(batches, start=1):
            head = await asyncio.to_thread(sock.recv, wire.RESPONSE.size, socket.MSG_WAITALL)
            body_len, got_rid, status, n, k = wire.RESPONSE.unpack(head)
            body = await asyncio.to_thread(sock.recv, body_len, socket.MSG_WAITALL)
            assert (got_rid, status, n, k) == (rid, wire.ST_OK, len(rows), 2)
            probs = np.frombuffer(body, dtype=np.float64, offset=8 * n).reshape(n, k)
            np.testing.assert_allclose(probs, built["rf"].estimator.predict_proba(rows), rtol=1e-12)
