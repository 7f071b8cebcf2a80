"""The rate limiter's Redis client against real servers: the shared Redis on 127.0.0.1:6379, a
private ``redis-server`` (a password, restarts) and raw TCP servers that misbehave (silence,
garbage, an endless reply). URLs are read like ``redis.asyncio.Redis.from_url`` or refused."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from ml_platform.store.redis_wire import (
    MAX_BUFFERED_REPLY_BYTES,
    MalformedReply,
    RedisAddress,
    ReplyError,
    connect,
    pack_command,
)
from tests.ports import free_port

SHARED = RedisAddress("127.0.0.1", 6379)


class PrivateRedis:
    """A ``redis-server`` of this test only (no persistence): ``stop()``/``start()`` restart it
    on the same port, with an empty script cache."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, db=db)

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                self.client().ping()
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_url_is_read_as_redis_py_reads_it() -> None:
    full = RedisAddress.from_url("redis://alice:s%3Acret@cache.internal:6380/3")
    assert (full.host, full.port, full.db) == ("cache.internal", 6380, 3)
    assert (full.username, full.password, full.tls, full.path) == ("alice", "s:cret", None, None)
    assert RedisAddress.from_url("redis://:pw@h?db=5").db == 5  # ?db= wins, as in redis-py
    assert RedisAddress.from_url("redis://h").handshake() == []  # nothing to send for db 0
    assert RedisAddress.from_url("redis://:pw@h/2").handshake() == [
        pack_command(("AUTH", "pw")),
        pack_command(("SELECT", 2)),
    ]
    unix = RedisAddress.from_url("unix:///run/redis.sock?db=4")
    assert (unix.path, unix.db) == ("/run/redis.sock", 4)
    tls = RedisAddress.from_url("rediss://h:6390")
    assert tls.tls is not None  # redis-py's defaults: a verified certificate and host name
    assert (tls.tls.verify_mode, tls.tls.check_hostname) == (ssl.CERT_REQUIRED, True)
    relaxed = RedisAddress.from_url("rediss://h?ssl_cert_reqs=none")
    assert relaxed.tls is not None and relaxed.tls.verify_mode == ssl.CERT_NONE
    timed = RedisAddress.from_url("redis://h?socket_timeout=0.5&socket_connect_timeout=1")
    assert (timed.timeout, timed.connect_timeout) == (0.5, 1.0)
    assert RedisAddress.from_url("redis://h?max_connections=50").db == 0  # pool-only: no effect


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://h?decode_responses=true", "decode_responses"),
        ("redis://h?protocol=3", "RESP2"),
        ("redis://alice@h", "needs a password"),
        ("redis://h?ssl_cert_reqs=none", "rediss://"),
        ("rediss://h?ssl_cert_reqs=sometimes", "TLS options"),
        ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "TLS options"),
        ("http://h", "schemes"),
    ],
)
def test_a_url_it_cannot_honour_is_refused_naming_the_problem(url: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RedisAddress.from_url(url)


async def test_concurrent_commands_on_one_connection_get_their_own_replies() -> None:
    connection = await connect(SHARED, timeout=2)
    payloads = [f"{i}-{secrets.token_hex(4)}".encode() for i in range(500)]
    try:
        replies = await asyncio.gather(
            *(connection.execute(pack_command(("ECHO", p))) for p in payloads)
        )
        assert replies == payloads
        # a caller that gives up leaves its slot: the replies after it still match
        abandoned = asyncio.ensure_future(connection.execute(pack_command(("ECHO", "gone"))))
        await asyncio.sleep(0)
        abandoned.cancel()
        assert await connection.execute(pack_command(("ECHO", "next"))) == b"next"
        assert not connection.closed and connection.in_flight == 0
        with pytest.raises(ReplyError, match="unknown command") as raised:
            await connection.execute(pack_command(("NO-SUCH-COMMAND",)))
        assert raised.value.code == "ERR"
        assert await connection.execute(pack_command(("PING",))) == b"PONG"  # still usable
    finally:
        await connection.aclose()
    assert connection.closed
    with pytest.raises(ConnectionError):
        connection.send(pack_command(("PING",)))


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, password="pw-" + secrets.token_hex(4))
    server.start()
    try:
        connection = await connect(RedisAddress.from_url(f"{server.url[:-2]}/7"), timeout=2)
        await connection.execute(pack_command(("SET", "mark", "here")))
        await connection.aclose()
        assert server.client(db=7).get("mark") == b"here"
        assert server.client(db=0).get("mark") is None
        wrong = RedisAddress.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(ReplyError, match=r"WRONGPASS|invalid password"):
            await connect(wrong, timeout=2)
    finally:
        server.stop()


async def misbehaving(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, RedisAddress]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, RedisAddress("127.0.0.1", server.sockets[0].getsockname()[1])


async def test_no_answer_times_out_and_fails_every_waiting_command() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    server, address = await misbehaving(silent)
    async with server:
        connection = await connect(address, timeout=0.2)
        first = asyncio.ensure_future(connection.execute(pack_command(("PING",))))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(connection.execute(pack_command(("PING",))))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first, 5)
        with pytest.raises((ConnectionError, TimeoutError)):
            await asyncio.wait_for(second, 5)  # failed with the first, not left hanging
        assert connection.closed


@pytest.mark.parametrize(
    "garbage",
    [b"hello\r\n", b"$" + str(2 * MAX_BUFFERED_REPLY_BYTES).encode() + b"\r\n"],
    ids=["not-resp", "oversized"],
)
async def test_a_malformed_or_oversized_reply_closes_the_connection(garbage: bytes) -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.write(garbage)
        if garbage.startswith(b"$"):  # the endless bulk string: more than the limit, never done
            writer.write(b"x" * (MAX_BUFFERED_REPLY_BYTES + 1))
        await writer.drain()
        await asyncio.sleep(30)

    server, address = await misbehaving(liar)
    async with server:
        connection = await connect(address, timeout=2)
        with pytest.raises(MalformedReply):
            await connection.execute(pack_command(("PING",)))
        assert connection.closed


async def test_a_reply_nobody_asked_for_closes_the_connection() -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    server, address = await misbehaving(chatty)
    async with server:
        connection = await connect(address, timeout=2)
        for _ in range(100):
            if connection.closed:
                break
            await asyncio.sleep(0.02)
        assert connection.closed
        with pytest.raises(ConnectionError):
            await connection.execute(pack_command(("PING",)))


async def test_redis_going_away_fails_the_waiting_commands(private_redis: PrivateRedis) -> None:
    connection = await connect(RedisAddress.from_url(private_redis.url), timeout=2)
    # BLPOP on an empty list blocks: the commands behind it wait on the connection
    waiting = [
        asyncio.ensure_future(connection.execute(pack_command(("BLPOP", "nothing", 0))))
        for _ in range(3)
    ]
    await asyncio.sleep(0.1)
    assert connection.in_flight == 3
    private_redis.stop()
    for future in waiting:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(future, 5)
    assert connection.closed
