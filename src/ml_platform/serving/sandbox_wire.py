"""Framing between front workers and a tenant's sandbox process over a Unix socket.

Binary, fixed little-endian headers and raw float64 arrays: no pickle in either direction
(the sandbox runs tenant code, so the front worker must never unpickle what it sends) and
no JSON on the hot path. The reader checks every size against the header before trusting it.
"""

from __future__ import annotations

import struct

# body_len, request_id, op, key_len, rows, cols
REQUEST = struct.Struct("<IIBHII")
# body_len, request_id, status, n_values, n_prob_cols
RESPONSE = struct.Struct("<IIBII")

OP_PREDICT = 1
OP_STATUS = 2

ST_OK = 0
ST_MODEL_ERROR = 1
ST_NOT_READY = 2
ST_FAILED = 3

MAX_FRAME_BYTES = 1 << 30
LABEL_SEP = "\x1f"


def encode_request(
    request_id: int, op: int, key: str, rows: int, cols: int, payload: bytes
) -> bytes:
    kb = key.encode()
    return REQUEST.pack(len(kb) + len(payload), request_id, op, len(kb), rows, cols) + kb + payload


def encode_response(request_id: int, status: int, n: int, k: int, body: bytes) -> bytes:
    return RESPONSE.pack(len(body), request_id, status, n, k) + body


def socket_path(run_dir: str, tenant_id: str) -> str:
    """Where a tenant's sandbox listens (the tenant id is hashed: it may hold any character)."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:24]
    return str(Path(run_dir) / f"sbx-{digest}.sock")
