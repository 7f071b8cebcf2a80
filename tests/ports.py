"""Loopback ports for the servers the tests start, and for ports where nothing listens.

Asking the kernel for a port (bind to 0, close, hand the number to a server) races the other
xdist workers, which ask the same kernel, and every outgoing connection, which takes its
local port from the same ephemeral range. So each xdist worker owns a block of ports below
that range and hands them out in turn, each checked free (bindable) when it is handed out.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

FIRST_PORT = 20000
"""Below Linux's default ephemeral range (32768-60999): no outgoing connection takes these."""

BLOCK = 1000
"""Ports per xdist worker; workers past the tenth share blocks (the bind check still holds)."""


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    digits = name.removeprefix("gw")
    return int(digits) % 10 if digits.isdigit() else 0


def _block() -> Iterator[int]:
    start = FIRST_PORT + BLOCK * _worker_index()
    return itertools.cycle(range(start, start + BLOCK))


_ports = _block()


def free_port() -> int:
    """A loopback TCP port nothing is bound to now, that no other xdist worker hands out."""
    for _ in range(BLOCK):
        port = next(_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, or held by a closing connection: the next one
                continue
        return port
    raise RuntimeError(f"no free loopback port in this worker's block of {BLOCK}")
