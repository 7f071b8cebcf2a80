"""Supervisor <-> child control messages: JSON over a multiprocessing pipe, never pickle.

Sandboxes run tenant code, so whatever they send must be parsed as plain data; using one
format for every child keeps it simple. Sizes are capped before parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
Message = dict[str, Any]


class ControlChannel:
    """Async wrapper of one end of a pipe; ``on_message`` runs on the event loop."""

    def __init__(
        self,
        conn: Connection,
        on_message: Callable[[Message], None],
        on_close: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._on_message = on_message
        self._on_close = on_close
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            raw = self._conn.recv_bytes(MAX_MESSAGE_BYTES)
            msg = orjson.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("control message is not an object")
        except (EOFError, OSError):
            self.close()
            return
        except ValueError as exc:  # garbage from a child: drop the message, keep the channel
            logger.warning("dropping malformed control message: %s", exc)
            return
        self._on_message(msg)

    def send(self, msg: Message) -> None:
        if self.closed:
            return
        try:
            self._conn.send_bytes(orjson.dumps(msg))
        except (OSError, ValueError):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_reader(self._conn.fileno())
        self._conn.close()
        self._on_close()
