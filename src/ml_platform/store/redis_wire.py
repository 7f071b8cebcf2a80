"""A lean asyncio Redis client for the request path: commands pipelined on one connection per loop.

The rate limiter sends one ``EVALSHA`` per request and the online feature store one ``MGET``.
Through ``redis.asyncio`` a call costs ~170 us in process of which Redis itself is ~30 us: the
pool's acquire/release, its locks, ``StreamReader`` and command encoding in Python are the rest.
Here a command is packed by
``hiredis.pack_command`` and written straight to the transport; replies are parsed by
``hiredis.Reader`` in ``data_received`` and resolve the waiting futures in order (Redis answers
one connection's commands in the order it received them), so any number of concurrent callers
on one event loop share one connection with their commands in flight together.

``LoopConnections`` keeps one connection per event loop for a client object that serves several
loops (serving workers, test loops), opened on the loop's first call and again after a failure.

Failure is loud and bounded: a call not answered within its timeout closes the connection and
fails every command still waiting on it (their replies could no longer be matched); so do a
lost connection and a malformed or oversized reply. Nothing here retries or reconnects: the
caller opens a new connection on its next call.

``RedisAddress.from_url`` reads the same URLs as ``redis.asyncio.Redis.from_url`` (it uses
redis-py's own parser and TLS context): ``redis://``, ``rediss://`` (with its ``ssl_*`` query
options), ``unix://``, user and password, the database as path or ``?db=``. Query options
this client has no use for are refused with a ``ValueError`` naming them, so a setting is
never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis

# how many reply bytes may wait unparsed (an incomplete reply) before it is called malformed,
# unless the connection is given its own bound (the feature store's MGET replies are larger)
MAX_BUFFERED_REPLY_BYTES = 1 << 20

Part = str | int | float | bytes
# hiredis' stub types the command as a 1-tuple; it takes any number of parts
pack_command = cast(Callable[[tuple[Part, ...]], bytes], hiredis.pack_command)

_TLS_OPTIONS = {
    "ssl_keyfile": "keyfile",
    "ssl_certfile": "certfile",
    "ssl_cert_reqs": "cert_reqs",
    "ssl_include_verify_flags": "include_verify_flags",
    "ssl_exclude_verify_flags": "exclude_verify_flags",
    "ssl_ca_certs": "ca_certs",
    "ssl_ca_data": "ca_data",
    "ssl_ca_path": "ca_path",
    "ssl_check_hostname": "check_hostname",
    "ssl_ciphers": "ciphers",
    "ssl_password": "password",
}
_OPTIONS = {"db", "username", "password", "host", "port", "path", "connection_class"}
_OPTIONS |= {"socket_timeout", "socket_connect_timeout", "timeout", "socket_keepalive"}
_OPTIONS |= {"client_name", "protocol"}
# pool and retry settings of redis-py: one pipelined connection without retries has no use for
# them, and they change nothing it guarantees, so they are accepted and have no effect
IGNORED_OPTIONS = frozenset({"max_connections", "health_check_interval", "retry_on_timeout"})


class ReplyError(Exception):
    """An error reply from Redis (``ERR ...``, ``NOSCRIPT ...``, ``NOAUTH ...``)."""

    @property
    def code(self) -> str:
        """The error's first word: ``NOSCRIPT``, ``WRONGPASS``, ``ERR``..."""
        return str(self).split(" ", 1)[0]


class MalformedReply(ConnectionError):
    """What Redis sent is not RESP, or not an answer to anything asked."""


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to connect: host and port or a Unix socket, TLS, credentials, database."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a Unix socket instead of TCP
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    client_name: str | None = None
    keepalive: bool = False
    # from the URL's socket_timeout / socket_connect_timeout, else the caller's
    timeout: float | None = None
    connect_timeout: float | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """ValueError naming what is wrong or unsupported in ``url``."""
        # redis-py's URL and TLS rules, imported only once a Redis URL is in use: importing
        # redis (with OpenTelemetry installed) costs every process ~0.2-0.4 s
        from redis.asyncio.connection import RedisSSLContext, parse_url
        from redis.exceptions import RedisError

        options: dict[str, Any] = dict(parse_url(url))
        unknown = sorted(set(options) - _OPTIONS - IGNORED_OPTIONS - set(_TLS_OPTIONS))
        if unknown:
            supported = sorted((_OPTIONS | set(_TLS_OPTIONS)) - {"connection_class", "path"})
            raise ValueError(
                f"Redis URL option(s) {', '.join(unknown)} not supported by the "
                f"platform's request-path client (supported: {', '.join(supported)})"
            )
        if str(options.get("protocol", "2")) != "2":
            raise ValueError("Redis URL: the request-path client speaks RESP2 only (protocol=2)")
        if options.get("username") and not options.get("password"):
            raise ValueError("Redis URL: a user name needs a password (redis://user:pass@host)")
        scheme = url.split("://", 1)[0].lower()
        tls_options = {k: v for k, v in options.items() if k in _TLS_OPTIONS}
        if tls_options and scheme != "rediss":
            raise ValueError(
                f"Redis URL: {', '.join(sorted(tls_options))} need the rediss:// scheme"
            )
        tls = None
        if scheme == "rediss":
            # redis-py's defaults for rediss://: a verified certificate and host name
            kwargs: dict[str, Any] = {"cert_reqs": "required", "check_hostname": True}
            kwargs.update({_TLS_OPTIONS[k]: v for k, v in tls_options.items()})
            try:
                tls = RedisSSLContext(**kwargs).get()
            except (RedisError, OSError) as exc:  # a bad ssl_cert_reqs, a missing CA file...
                raise ValueError(f"Redis URL: TLS options: {exc}") from exc
        if scheme == "unix" and not options.get("path"):
            raise ValueError("Redis URL: unix:// needs a socket path (unix:///run/redis.sock)")

        def seconds(name: str) -> float | None:
            value = options.get(name)
            return None if value is None else float(value)

        return cls(
            host=options.get("host", "localhost"),
            port=int(options.get("port", 6379)),
            path=options.get("path") if scheme == "unix" else None,
            db=int(options.get("db", 0)),
            username=options.get("username"),
            password=options.get("password"),
            tls=tls,
            client_name=options.get("client_name"),
            keepalive=bool(options.get("socket_keepalive", False)),
            timeout=seconds("socket_timeout") or seconds("timeout"),
            connect_timeout=seconds("socket_connect_timeout"),
        )

    def handshake(self) -> list[bytes]:
        """The commands a new connection sends first (pipelined: one round trip)."""
        commands = []
        if self.password is not None:
            credentials = (self.username, self.password) if self.username else (self.password,)
            commands.append(pack_command(("AUTH", *credentials)))
        if self.client_name:
            commands.append(pack_command(("CLIENT", "SETNAME", self.client_name)))
        if self.db:
            commands.append(pack_command(("SELECT", self.db)))
        return commands


class RedisConnection(asyncio.Protocol):
    """One connection: ``execute`` writes a command and awaits its reply, callers pipelined;
    each reply is awaited at most ``timeout`` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        max_reply_bytes: int = MAX_BUFFERED_REPLY_BYTES,
    ) -> None:
        self.loop = loop
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._reader = hiredis.Reader(protocolError=MalformedReply, replyError=ReplyError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._failure: Exception | None = None
        self._lost: asyncio.Future[None] = loop.create_future()

    @property
    def closed(self) -> bool:
        return self._failure is not None or self._transport is None

    @property
    def in_flight(self) -> int:
        """Commands written and not answered yet."""
        return len(self._waiting)

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        try:
            while (reply := self._reader.gets()) is not False:
                if not waiting:
                    raise MalformedReply(f"a reply nobody asked for: {reply!r:.100}")
                future = waiting.popleft()
                if not future.done():  # a caller that gave up (cancelled) leaves its slot
                    future.set_result(reply)
        except MalformedReply as exc:
            self._fail(MalformedReply(f"malformed reply from Redis: {exc}"))
            return
        if self._reader.len() > self.max_reply_bytes:
            self._fail(MalformedReply(f"a reply from Redis over {self.max_reply_bytes} bytes"))

    def eof_received(self) -> bool:
        return False  # close the transport: Redis closed its side

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._fail(ConnectionError(f"the connection to Redis was closed{reason}"))
        if not self._lost.done():
            self._lost.set_result(None)

    # -- calls ------------------------------------------------------------------------------

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Write one packed command; the future is its reply (a ``ReplyError`` for an error)."""
        if self._failure is not None or self._transport is None:
            raise ConnectionError(f"the connection to Redis is closed ({self._failure})")
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiting.append(future)
        self._transport.write(command)
        return future

    async def execute(self, command: bytes) -> Any:
        """The reply to ``command``; ``ReplyError`` for an error reply, ``TimeoutError`` (and the
        connection closed, failing every other waiting command) when not answered in time."""
        future = self.send(command)
        try:
            async with asyncio.timeout(self.timeout):
                reply = await future
        except TimeoutError:
            self._fail(TimeoutError(f"Redis did not answer within {self.timeout} s"))
            raise
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def execute_all(self, commands: Sequence[bytes]) -> list[Any]:
        """Pipelined: every command written at once, their replies in order; the first error
        reply raised once all are in."""
        futures = [self.send(command) for command in commands]
        try:
            async with asyncio.timeout(self.timeout):
                replies = await asyncio.gather(*futures)
        except TimeoutError:
            self._fail(TimeoutError(f"Redis did not answer within {self.timeout} s"))
            raise
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    def _fail(self, failure: Exception) -> None:
        """Close the connection and fail every waiting command with ``failure``."""
        if self._failure is None:
            self._failure = failure
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._failure)

    def close(self) -> None:
        """Close now; waiting commands fail (callable from the connection's loop only)."""
        self._fail(ConnectionError("the connection to Redis was closed by its client"))

    async def aclose(self) -> None:
        """Close and wait (briefly) until the transport let the socket go."""
        self.close()
        if self._transport is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._lost)


async def connect(
    address: RedisAddress,
    timeout: float,  # noqa: ASYNC109
    max_reply_bytes: int = MAX_BUFFERED_REPLY_BYTES,
) -> RedisConnection:
    """A connection to ``address``, authenticated and on its database, within ``timeout``
    (``address.connect_timeout`` if the URL set one); its calls then wait ``timeout`` each
    (``address.timeout`` if set). The timeout is the connection's own, hence the parameter."""
    loop = asyncio.get_running_loop()
    connection = RedisConnection(loop, address.timeout or timeout, max_reply_bytes)
    try:
        async with asyncio.timeout(address.connect_timeout or timeout):
            if address.path is not None:
                await loop.create_unix_connection(lambda: connection, address.path, ssl=address.tls)
            else:
                transport, _ = await loop.create_connection(
                    lambda: connection,
                    address.host,
                    address.port,
                    ssl=address.tls,
                    server_hostname=address.host if address.tls is not None else None,
                )
                # asyncio sets TCP_NODELAY itself; keepalive only when the URL asks for it
                sock = transport.get_extra_info("socket")
                if address.keepalive and sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            handshake = address.handshake()
            if handshake:
                await connection.execute_all(handshake)
    except BaseException:
        connection.close()
        raise
    return connection


class _LoopLink:
    """The connection of one event loop, or the attempt to open it that callers share."""

    __slots__ = ("connection", "opening")

    def __init__(self) -> None:
        self.connection: RedisConnection | None = None
        self.opening: asyncio.Task[RedisConnection] | None = None


def _opened(link: _LoopLink, task: asyncio.Task[RedisConnection]) -> None:
    if link.opening is task:
        link.opening = None
    if task.cancelled():
        return
    failure = task.exception()  # retrieved here too: every waiter may have timed out already
    if failure is None:
        link.connection = task.result()


class LoopConnections:
    """One connection to ``address`` per event loop: ``get`` returns the running loop's, opened
    on its first call and again on the first call after it was lost, failed or timed out (one
    attempt shared by every caller arriving meanwhile, bounded by ``timeout``)."""

    def __init__(
        self,
        address: RedisAddress,
        timeout: float,
        max_reply_bytes: int = MAX_BUFFERED_REPLY_BYTES,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        # loops are weakly held: a closed loop's link goes with the loop, never reused
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopLink] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self) -> RedisConnection:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            link = self._links[loop] = _LoopLink()
        connection = link.connection
        if connection is not None and not connection.closed:
            return connection
        link.connection = None
        opening = link.opening
        if opening is None:
            opening = link.opening = loop.create_task(
                connect(self.address, self.timeout, self.max_reply_bytes)
            )
            opening.add_done_callback(functools.partial(_opened, link))
        # shielded: a waiter timing out or cancelled leaves the attempt to the others; the
        # attempt itself is bounded by the timeout
        return await asyncio.shield(opening)

    async def aclose(self) -> None:
        """Close every loop's connection: this loop's now, another live loop's on that loop."""
        running = asyncio.get_running_loop()
        links = list(self._links.items())
        self._links.clear()
        for loop, link in links:
            if link.opening is not None and loop is running:
                link.opening.cancel()
            connection = link.connection
            if connection is None:
                continue
            if loop is running:
                await connection.aclose()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(connection.close)

    def close_soon(self) -> None:
        """From any thread: close every live loop's connection on its own loop."""
        links = list(self._links.items())
        self._links.clear()
        for loop, link in links:
            connection = link.connection
            if connection is not None and not loop.is_closed():
                loop.call_soon_threadsafe(connection.close)
