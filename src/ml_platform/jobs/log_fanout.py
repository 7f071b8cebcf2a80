"""Live fan-out of new log lines across replicas through Redis pub/sub.

The lines themselves are in the database (``LogStore`` with a ``db``); this only carries the
wake-up: after a replica appends lines of a job it publishes the job's last line id on
``<prefix>:<job id>``, and every replica's one listener thread wakes its local followers of
that job at once (unless it already holds that line: the writer's own replica), so a
follower on replica B sees a line of a job run by replica A's scheduler without waiting for
its poll. Losing a message (Redis restarting) only falls back
to the poll: no line is ever carried by Redis alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import redis

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "mlp-logs"
_RECONNECT_SECONDS = 1.0


class RedisLogFanout:
    def __init__(self, url: str, *, prefix: str = CHANNEL_PREFIX) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._stopped = threading.Event()

    def publish(self, job_id: str, last_line_id: int) -> None:
        """Tell every replica that ``job_id`` has lines up to ``last_line_id`` (best effort)."""
        try:
            self._client.publish(f"{self._prefix}:{job_id}", str(last_line_id).encode())
        except redis.RedisError as exc:
            logger.debug("log fan-out publish failed (followers fall back to polling): %s", exc)

    def listen(self, on_lines: Callable[[str, int], None]) -> None:
        """Start (once) the thread that calls ``on_lines(job_id, last_line_id)`` for every
        publication (``last_line_id`` 0 when a message does not say)."""
        with self._lock:
            if self._listener is not None:
                return
            self._listener = threading.Thread(
                target=self._run, args=(on_lines,), name="log-fanout", daemon=True
            )
            self._listener.start()

    def _run(self, on_lines: Callable[[str, int], None]) -> None:
        start = len(self._prefix) + 1
        while not self._stopped.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(f"{self._prefix}:*")
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    channel, data = message.get("channel"), message.get("data")
                    if isinstance(channel, bytes):
                        last = int(data) if isinstance(data, bytes) and data.isdigit() else 0
                        on_lines(channel[start:].decode("utf-8", errors="replace"), last)
            except (redis.RedisError, OSError, ValueError) as exc:
                if self._stopped.is_set():
                    return
                logger.warning("log fan-out listener lost Redis (%s); reconnecting", exc)
                self._stopped.wait(_RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(redis.RedisError, OSError, ValueError):
                    pubsub.close()

    def close(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.join(timeout=5)  # it checks the flag at least once a second
        with contextlib.suppress(redis.RedisError):
            self._client.close()
