"""Rate limits on the REST control plane (API-GUIDE rule 15), counted, never timed.

Every test starts its own control plane(s) with budgets on (``tests/conftest.py`` turns them
off for the rest of the suite): in memory for one process, in the real Redis on
127.0.0.1:6379 (a unique key prefix per test) for replicas that must share one budget. Redis
going away mid-test is a real TCP proxy in front of it that the test shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ml_platform.api.context import ApiContext
from ml_platform.server.app import create_app
from ml_platform.server.context import build_context
from ml_platform.serving import ServingServer
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.conftest import ServerThread, Tenant, make_settings
from tests.ports import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
POLICY = re.compile(r'^"(?P<name>[a-z-]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
CURRENT = re.compile(r'^"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


@dataclass
class Replica:
    context: ApiContext
    server: ServerThread
    base_url: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, tenant: Tenant) -> httpx.Client:
        client = httpx.Client(
            base_url=self.base_url, headers={"X-API-Key": tenant.api_key}, timeout=30
        )
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.stop()
        self.context.db.dispose()


class Cluster:
    """N control-plane replicas on one SQLite database, each its own app, server and limiter."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"sqlite:///{root / 'mlp.db'}"
        self.replicas: list[Replica] = []
        self._migrated = False

    def start(self, **overrides: object) -> Replica:
        settings = make_settings(
            self.root / f"replica-{len(self.replicas)}",
            self.url,
            rate_limit_enabled=True,
            **overrides,
        )
        context = build_context(settings)
        if not self._migrated:
            context.db.upgrade()
            self._migrated = True
        server = ServerThread(create_app(settings, context))
        replica = Replica(context=context, server=server, base_url=server.start())
        self.replicas.append(replica)
        return replica

    def migrate(self) -> ApiContext:
        """A context on the database, migrated (to create tenants before any replica starts)."""
        settings = make_settings(self.root / "admin", self.url)
        context = build_context(settings)
        context.db.upgrade()
        self._migrated = True
        return context

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def new_tenant(context: ApiContext, prefix: str = "rl") -> Tenant:
    name = f"{prefix}-{secrets.token_hex(4)}"
    tenant = context.auth.create_tenant(name)
    key = context.auth.create_api_key(name, f"{name}-key")
    return Tenant(id=tenant.id, name=name, api_key=key.plaintext)


def another_key(context: ApiContext, tenant: Tenant, suffix: str) -> Tenant:
    key = context.auth.create_api_key(tenant.name, f"{tenant.name}-key-{suffix}")
    return Tenant(id=tenant.id, name=tenant.name, api_key=key.plaintext)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"mlp-test-rl-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def policies(response: httpx.Response) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for member in response.headers["ratelimit-policy"].split(","):
        match = POLICY.match(member.strip())
        assert match, response.headers["ratelimit-policy"]
        found[match["name"]] = (int(match["q"]), int(match["w"]))
    return found


def current(response: httpx.Response) -> tuple[str, int, int]:
    match = CURRENT.match(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return match["name"], int(match["r"]), int(match["t"])


def assert_throttled(response: httpx.Response, budget: str = "control") -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429
    assert body["code"] == "RESOURCE_EXHAUSTED"
    assert budget in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 61
    name, remaining, reset = current(response)
    assert (name, remaining) == (budget, 0)
    assert 1 <= reset <= 61


# -- one process, in memory ---------------------------------------------------------------------


def test_memory_budget_admits_exactly_n_then_429_with_the_headers(cluster: Cluster) -> None:
    replica = cluster.start(rate_limit_control="5/minute")
    tenant = new_tenant(replica.context)
    client = replica.client(tenant)
    answers = [client.get("/v1/me") for _ in range(8)]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 3
    for index, ok in enumerate(answers[:5]):
        assert policies(ok) == {"control": (5, 60)}
        name, remaining, reset = current(ok)
        assert (name, remaining) == ("control", 4 - index)
        assert 0 <= reset <= 61
        assert "retry-after" not in ok.headers
    for refused in answers[5:]:
        assert policies(refused) == {"control": (5, 60)}
        assert_throttled(refused)


def test_every_authenticated_route_counts_and_anonymous_requests_do_not(
    cluster: Cluster,
) -> None:
    replica = cluster.start(rate_limit_control="3/minute")
    tenant = new_tenant(replica.context)
    client = replica.client(tenant)
    anonymous = httpx.Client(base_url=replica.base_url, timeout=30)
    replica.clients.append(anonymous)
    for _ in range(5):
        refused = anonymous.get("/v1/me")
        assert refused.status_code == 401
        assert "ratelimit" not in refused.headers  # unauthenticated: nothing counted
    assert anonymous.get("/healthz").status_code in (200, 404)
    statuses = [
        client.get("/v1/me").status_code,
        client.get("/v1/jobs/training").status_code,
        client.get("/v1/models").status_code,
        client.get("/v1/jobs/training").status_code,
    ]
    assert statuses == [200, 200, 200, 429]


def test_a_flooded_tenant_does_not_consume_another_tenants_budget(cluster: Cluster) -> None:
    replica = cluster.start(rate_limit_control="4/minute")
    flooder, quiet = new_tenant(replica.context, "flood"), new_tenant(replica.context, "quiet")
    flood = replica.client(flooder)
    assert sum(flood.get("/v1/me").status_code == 200 for _ in range(30)) == 4
    quiet_answers = [replica.client(quiet).get("/v1/me") for _ in range(4)]
    assert [r.status_code for r in quiet_answers] == [200] * 4
    assert current(quiet_answers[0])[1] == 3
    assert_throttled(replica.client(quiet).get("/v1/me"))


def test_per_credential_budgets_split_one_tenant_between_its_keys(cluster: Cluster) -> None:
    replica = cluster.start(
        rate_limit_control="5/minute", rate_limit_control_per_credential="2/minute"
    )
    tenant = new_tenant(replica.context)
    other_key = another_key(replica.context, tenant, "2")
    third_key = another_key(replica.context, tenant, "3")
    first = [replica.client(tenant).get("/v1/me") for _ in range(3)]
    assert [r.status_code for r in first] == [200, 200, 429]
    assert policies(first[0]) == {"control": (5, 60), "control-credential": (2, 60)}
    # the tighter budget is the one reported
    assert current(first[0])[:2] == ("control-credential", 1)
    assert_throttled(first[2], "control-credential")
    # the refused request was not counted against the tenant: 3 of its 5 are left
    second = [replica.client(other_key).get("/v1/me") for _ in range(3)]
    assert [r.status_code for r in second] == [200, 200, 429]
    assert current(second[0])[:2] == ("control-credential", 1)
    assert_throttled(second[2], "control-credential")
    third = [replica.client(third_key).get("/v1/me") for _ in range(2)]
    assert [r.status_code for r in third] == [200, 429]
    assert current(third[0])[:2] == ("control", 0)
    assert_throttled(third[1], "control")


def test_a_tenant_override_replaces_the_default_budget(cluster: Cluster) -> None:
    admin = cluster.migrate()
    small, normal = new_tenant(admin, "small"), new_tenant(admin, "normal")
    admin.db.dispose()
    replica = cluster.start(
        rate_limit_control="4/minute", rate_limit_tenants={small.id: {"control": "2/minute"}}
    )
    small_answers = [replica.client(small).get("/v1/me") for _ in range(3)]
    assert [r.status_code for r in small_answers] == [200, 200, 429]
    assert policies(small_answers[0]) == {"control": (2, 60)}
    normal_answers = [replica.client(normal).get("/v1/me") for _ in range(5)]
    assert [r.status_code for r in normal_answers] == [200] * 4 + [429]


def test_bad_budget_settings_are_refused_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not like '600/minute'"):
        make_settings(tmp_path, "sqlite://", rate_limit_control="lots")
    with pytest.raises(ValueError, match="unknown budget 'gpu'"):
        make_settings(tmp_path, "sqlite://", rate_limit_tenants={"t": {"gpu": "1/second"}})


# -- replicas sharing one Redis -----------------------------------------------------------------


def test_two_replicas_sharing_redis_admit_exactly_the_budget_together(
    cluster: Cluster, redis_prefix: str
) -> None:
    shared = {
        "rate_limit_control": "9/minute",
        "redis_url": REDIS_URL,
        "rate_limit_key_prefix": redis_prefix,
    }
    one, two = cluster.start(**shared), cluster.start(**shared)
    tenant, other = new_tenant(one.context), new_tenant(one.context, "other")
    clients = [one.client(tenant), two.client(tenant)]

    def call(index: int) -> int:
        return clients[index % 2].get("/v1/me").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(40)))
    assert statuses.count(200) == 9
    assert statuses.count(429) == 31
    assert set(statuses) == {200, 429}
    # both replicas refuse now, and the other tenant's budget is untouched on either
    assert_throttled(one.client(tenant).get("/v1/me"))
    assert_throttled(two.client(tenant).get("/v1/me"))
    first = two.client(other).get("/v1/me")
    assert first.status_code == 200
    assert current(first)[:2] == ("control", 8)
    assert current(one.client(other).get("/v1/me"))[:2] == ("control", 7)


class RedisProxy:
    """A TCP proxy to the real Redis; ``stop()`` is Redis going away (refused, cut)."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 6379)) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [downstream, upstream]
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        # shutdown wakes the accept() blocked in the other thread; close alone would not
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_redis_stopping_mid_test_applies_the_fail_mode_never_a_500(
    cluster: Cluster,
    redis_prefix: str,
    fail_open: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = RedisProxy()
    replica = cluster.start(
        rate_limit_control="3/minute",
        redis_url=proxy.url,
        rate_limit_key_prefix=redis_prefix,
        rate_limit_fail_open=fail_open,
    )
    tenant = new_tenant(replica.context)
    client = replica.client(tenant)
    before = [client.get("/v1/me") for _ in range(2)]
    assert [r.status_code for r in before] == [200, 200]
    assert current(before[1])[:2] == ("control", 1)

    caplog.set_level(logging.WARNING, logger="ml_platform.governance.ratelimit")
    proxy.stop()
    after = [client.get("/v1/me") for _ in range(6)]
    warnings = [r for r in caplog.records if "rate-limit storage unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per interval, not once per request
    if fail_open:
        # admitted past the budget of 3: nothing can be counted while Redis is away
        assert [r.status_code for r in after] == [200] * 6
        assert all("ratelimit" not in r.headers for r in after)
        assert policies(after[0]) == {"control": (3, 60)}
        return
    assert [r.status_code for r in after] == [503] * 6
    for refused in after:
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "UNAVAILABLE"
        assert refused.json()["status"] == 503
        assert refused.headers["retry-after"] == "1"
        assert "Traceback" not in refused.text and "/work" not in refused.text


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_redis_on_a_closed_port_applies_the_fail_mode(cluster: Cluster, fail_open: bool) -> None:
    replica = cluster.start(
        rate_limit_control="1/minute",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        rate_limit_fail_open=fail_open,
    )
    client = replica.client(new_tenant(replica.context))
    statuses = {client.get("/v1/me").status_code for _ in range(3)}
    assert statuses == ({200} if fail_open else {503})


# -- the data plane: gRPC and V2 REST on a real serving worker -----------------------------------


@contextmanager
def serving_with_budget(tmp_path: Path, **overrides: object) -> Iterator[ServingServer]:
    """A real serving plane (worker processes) with two tenants' deployments of one model."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from ml_platform.config import Settings
    from ml_platform.serving import ArtifactFormat, Principal
    from tests.serving.doubles import (
        InMemoryDeploymentSource,
        InMemoryStatusSink,
        StaticKeyAuthenticator,
    )
    from tests.serving.models_fixture import dataset, served

    X, y = dataset()
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    deployments = [
        served("t1", "lr", path, ArtifactFormat.JOBLIB),
        served("t2", "lr2", path, ArtifactFormat.JOBLIB),
    ]
    keys = {KEY_ONE: Principal("t1", "alice"), KEY_TWO: Principal("t2", "bob")}
    values: dict[str, object] = {
        "grpc_port": 0,
        "serving_rest_port": 0,
        "serving_workers": 1,
        "serving_source_poll_seconds": 0.1,
        "data_dir": tmp_path / "data",
        "rate_limit_enabled": True,
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    sink = InMemoryStatusSink()
    source = InMemoryDeploymentSource(deployments)
    with ServingServer(settings, source, sink, StaticKeyAuthenticator(keys)) as server:
        for d in deployments:
            assert sink.wait_for(d.tenant_id, d.deployment, timeout=120).state.value == "ready"
        yield server


KEY_ONE, KEY_TWO = "mlp_rl_key_one", "mlp_rl_key_two"


def feature_row() -> list[serving_pb2.Feature]:
    from tests.serving.models_fixture import FEATURES, dataset

    X, _ = dataset()
    return [
        serving_pb2.Feature(name=n, float_value=float(v))
        for n, v in zip(FEATURES, X[0], strict=True)
    ]


def predict(channel: grpc.Channel, key: str, model: str) -> grpc.RpcError | None:
    stub = serving_pb2_grpc.ModelServingStub(channel)
    try:
        stub.Predict(
            serving_pb2.PredictRequest(model_id=model, features=feature_row()),
            metadata=(("x-api-key", key),),
            timeout=30,
        )
    except grpc.RpcError as exc:
        return exc
    return None


def code_of(error: grpc.RpcError | None) -> grpc.StatusCode:
    return grpc.StatusCode.OK if error is None else error.code()  # type: ignore[no-any-return]


def test_data_plane_over_budget_is_resource_exhausted_with_retry_info(tmp_path: Path) -> None:
    # one worker: in memory each worker process keeps its own budget
    with (
        serving_with_budget(tmp_path, rate_limit_data="4/minute") as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        codes = [code_of(predict(channel, KEY_ONE, "lr")) for _ in range(3)]
        assert codes == [grpc.StatusCode.OK] * 3
        # V2 REST counts against the same data budget: the 4th call, then a 429
        with httpx.Client(
            base_url=server.rest_url, headers={"x-api-key": KEY_ONE}, timeout=30
        ) as v2:
            assert v2.get("/v2/models/lr").status_code == 200
            refused = v2.post("/v2/models/lr/infer", json={"inputs": []})
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "RESOURCE_EXHAUSTED"
        assert 1 <= int(refused.headers["retry-after"]) <= 61
        assert policies(refused) == {"data": (4, 60)}
        assert current(refused)[:2] == ("data", 0)

        error = predict(channel, KEY_ONE, "lr")
        assert error is not None
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "'data' budget" in error.details()
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(retry) == 1
        info = error_details_pb2.RetryInfo()
        retry[0].Unpack(info)
        assert 1 <= info.retry_delay.seconds <= 61
        # the other tenant's budget is its own
        others = [code_of(predict(channel, KEY_TWO, "lr2")) for _ in range(5)]
        assert others == [grpc.StatusCode.OK] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_serving_workers_sharing_redis_admit_exactly_the_data_budget(
    tmp_path: Path, redis_prefix: str
) -> None:
    with serving_with_budget(
        tmp_path,
        serving_workers=2,
        rate_limit_data="7/minute",
        redis_url=REDIS_URL,
        rate_limit_key_prefix=redis_prefix,
    ) as server:
        # a channel per call: SO_REUSEPORT spreads the connections over both workers
        def call(_: int) -> grpc.StatusCode:
            with grpc.insecure_channel(server.grpc_target) as channel:
                return code_of(predict(channel, KEY_ONE, "lr"))

        with ThreadPoolExecutor(max_workers=6) as pool:
            codes = list(pool.map(call, range(60)))
        # (in memory each worker would admit 7 of the connections it happened to get)
        assert codes.count(grpc.StatusCode.OK) == 7
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 53
