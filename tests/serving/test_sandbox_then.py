"""A sandboxed model on the batcher's callback path, over a real Unix socket to the
sandbox's own connection loop (``Sandbox.serve_connection`` in a thread): the answers equal
the model's, a first call connects on its own, and a sandbox that goes away mid-call fails
every waiting caller with Unavailable instead of leaving them hanging."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ml_platform.core.errors import Unavailable
from ml_platform.serving.plane.batching import Batcher
from ml_platform.serving.runtimes.scikit_learn import SklearnRuntime
from ml_platform.serving.sandbox import wire
from ml_platform.serving.sandbox.child import Sandbox
from ml_platform.serving.sandbox.client import RemoteModel, SandboxConnection, SandboxModelError

FEATURES = 4


@pytest.fixture(scope="module")
def runtime() -> SklearnRuntime:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, FEATURES))
    return SklearnRuntime(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)))


def _serve(listener: socket.socket, handle: Any) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


@pytest.fixture
def sandbox_socket(tmp_path: Path, runtime: SklearnRuntime) -> Iterator[str]:
    """A sandbox's data socket holding model ``k`` (labels "0", "1")."""
    sb = Sandbox.__new__(Sandbox)
    sb._models = {"k": runtime}
    sb._labels = {"k": wire.LABEL_SEP.join(["0", "1"]).encode()}
    sb._failed = {}
    sb._pid = 1
    path = str(tmp_path / "sbx.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    threading.Thread(target=_serve, args=(listener, sb.serve_connection), daemon=True).start()
    yield path
    listener.close()


async def _ready(path: str, key: str = "k") -> tuple[SandboxConnection, RemoteModel]:
    conn = SandboxConnection(path)
    remote = RemoteModel(conn, key, FEATURES)
    await remote.wait_ready(10)
    return conn, remote


async def test_batched_answers_over_the_socket_equal_the_model(
    sandbox_socket: str, runtime: SklearnRuntime
) -> None:
    conn, remote = await _ready(sandbox_socket)
    b = Batcher(
        remote.predict, max_batch_size=16, max_batch_delay_ms=1, predict_then=remote.predict_then
    )
    rows = np.random.default_rng(1).normal(size=(50, FEATURES))
    results = await asyncio.wait_for(
        asyncio.gather(*(b.submit(rows[i : i + 1]) for i in range(50))), 30
    )
    want = runtime.predict(rows)
    assert np.array_equal(np.concatenate([r.values for r in results]), want.values)
    assert want.probabilities is not None
    got = np.vstack([r.probabilities for r in results if r.probabilities is not None])
    assert np.array_equal(got, want.probabilities)
    assert all(r.labels == ("0", "1") for r in results)
    assert b.calls < 50  # they were batched
    await conn.close()


async def test_a_first_call_connects_on_its_own(
    sandbox_socket: str, runtime: SklearnRuntime
) -> None:
    conn, remote = await _ready(sandbox_socket)
    await conn.close()  # as after a sandbox restart: the next call must connect first
    assert not conn.live()
    b = Batcher(
        remote.predict, max_batch_size=8, max_batch_delay_ms=0, predict_then=remote.predict_then
    )
    row = np.ones((1, FEATURES))
    assert np.array_equal((await b.submit(row)).values, runtime.predict(row).values)
    assert conn.live()
    await conn.close()


async def test_wrong_columns_and_an_unloaded_key_are_clear_errors(sandbox_socket: str) -> None:
    conn, remote = await _ready(sandbox_socket)
    b = Batcher(
        remote.predict, max_batch_size=8, max_batch_delay_ms=0, predict_then=remote.predict_then
    )
    with pytest.raises(SandboxModelError, match="expected rows of 4 features"):
        await b.submit(np.ones((1, FEATURES + 1)))
    unloaded = RemoteModel(conn, "missing", FEATURES)
    u = Batcher(
        unloaded.predict, max_batch_size=8, max_batch_delay_ms=0, predict_then=unloaded.predict_then
    )
    with pytest.raises(Unavailable, match="not loaded"):
        await u.submit(np.ones((1, FEATURES)))
    assert (await b.submit(np.ones((1, FEATURES)))).values.shape == (1,)  # still usable
    await conn.close()


async def test_a_sandbox_that_goes_away_mid_call_fails_every_waiting_caller(
    tmp_path: Path,
) -> None:
    """The peer answers the status call, then reads one prediction request and closes."""
    path = str(tmp_path / "dying.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def handle(conn: socket.socket) -> None:
        with conn:
            head = conn.recv(wire.REQUEST.size, socket.MSG_WAITALL)
            body_len, rid, op, *_ = wire.REQUEST.unpack(head)
            conn.recv(body_len, socket.MSG_WAITALL)
            if op == wire.OP_STATUS:
                conn.sendmsg(wire.response_parts(rid, wire.ST_OK, 7, 8, b""))
                head = conn.recv(wire.REQUEST.size, socket.MSG_WAITALL)
                conn.recv(wire.REQUEST.unpack(head)[0], socket.MSG_WAITALL)
            # a prediction request arrived: go away without answering

    threading.Thread(target=_serve, args=(listener, handle), daemon=True).start()
    try:
        conn, remote = await _ready(path)
        b = Batcher(
            remote.predict, max_batch_size=8, max_batch_delay_ms=0, predict_then=remote.predict_then
        )
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(b.submit(np.ones((1, FEATURES))) for _ in range(3)), return_exceptions=True
            ),
            30,
        )
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
        await conn.close()
    finally:
        listener.close()
