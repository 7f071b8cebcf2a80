"""Framing between front workers and a tenant's sandbox process over a Unix socket.

Binary, fixed little-endian headers and raw float64 arrays: no pickle in either direction
(the sandbox runs tenant code, so the front worker must never unpickle what it sends) and
no JSON on the hot path. The reader checks every size against the header before trusting it.
"""

from __future__ import annotations

import os
import socket
import struct

import orjson

# body_len, request_id, op, key_len, rows, cols
REQUEST = struct.Struct("<IIBHII")
# body_len, request_id, status, n_values, n_prob_cols
RESPONSE = struct.Struct("<IIBII")

OP_PREDICT = 1
OP_STATUS = 2
OP_EXPORT = 3  # the loaded model as skops bytes (ST_OK), or why it cannot be (ST_MODEL_ERROR)

ST_OK = 0
ST_MODEL_ERROR = 1
ST_NOT_READY = 2
ST_FAILED = 3

MAX_FRAME_BYTES = 1 << 30
LABEL_SEP = "\x1f"


def request_head(request_id: int, op: int, key: bytes, rows: int, cols: int, n_bytes: int) -> bytes:
    """A request's header and model key; its ``n_bytes`` of float64 rows follow unjoined."""
    return REQUEST.pack(len(key) + n_bytes, request_id, op, len(key), rows, cols) + key


def response_parts(
    request_id: int, status: int, n: int, k: int, *body: bytes | memoryview
) -> list[bytes | memoryview]:
    """A response as buffers for one ``sendmsg`` (arrays are sent from their memory, unjoined)."""
    size = sum(memoryview(b).nbytes for b in body)
    return [RESPONSE.pack(size, request_id, status, n, k), *body]


def socket_path(run_dir: str, tenant_id: str) -> str:
    """Where a tenant's sandbox listens (the tenant id is hashed: it may hold any character)."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:24]
    return str(Path(run_dir) / f"sbx-{digest}.sock")


# -- artifacts: the supervisor opens each pickle artifact and passes the open descriptor -------
# One SOCK_SEQPACKET datagram per artifact: a small JSON body ``{"key": ..., "error": ...}``
# and, unless ``error`` is set, exactly one file descriptor (SCM_RIGHTS). The sandbox thus
# never needs (and, when confined, never has) read access to the artifact store.

MAX_ARTIFACT_MESSAGE_BYTES = 64 * 1024


def send_artifact(sock: socket.socket, key: str, fd: int | None, error: str = "") -> None:
    """Send one artifact descriptor (or the reason it could not be opened)."""
    body = orjson.dumps({"key": key, "error": error[:1000]} if error else {"key": key})
    if fd is None:
        sock.send(body)
    else:
        socket.send_fds(sock, [body], [fd])


def receive_artifacts(sock: socket.socket) -> list[tuple[str, int | None, str]]:
    """Everything queued on a non-blocking artifact socket: ``(key, fd or None, error)``.

    Raises ``EOFError`` when the supervisor's end is closed.
    """
    out: list[tuple[str, int | None, str]] = []
    while True:
        try:
            body, fds, flags, _ = socket.recv_fds(sock, MAX_ARTIFACT_MESSAGE_BYTES, 4)
        except (BlockingIOError, InterruptedError):
            return out
        if not body and not fds:
            raise EOFError("artifact channel closed")
        fd = fds[0] if fds else None
        for extra in fds[1:]:
            os.close(extra)
        try:
            msg = orjson.loads(body)
            key, error = str(msg["key"]), str(msg.get("error", ""))
        except (ValueError, KeyError, TypeError):
            if fd is not None:
                os.close(fd)
            continue
        if flags & socket.MSG_CTRUNC and fd is None:
            error = error or "the artifact's file descriptor was lost in transit"
        out.append((key, fd, error))
