"""Prometheus ``/metrics`` for the control plane (prometheus-client, one registry per app).

- ``mlp_http_requests_total{method,route,status,api_version}`` and the latency histogram
  ``mlp_http_request_duration_seconds{method,route,api_version}``: ``route`` is the matched
  route *template* (``/v1/jobs/training/{job_id}``), never the raw path; a request no route
  matched is ``route="unmatched"``, so scanners cannot grow the label set.
- ``mlp_http_problems_total{route,code,api_version}``: error responses by problem ``code``
  (``RESOURCE_EXHAUSTED``: rate-limit rejections; ``QUOTA_EXCEEDED``: quota rejections).
- ``mlp_jobs{state}``: jobs per state over every tenant, read at scrape time with one
  GROUP BY on the trigger-kept ``job_counts`` table.
- ``mlp_quota_rejections_total{limit}``: creations refused by a tenant quota (429
  ``QUOTA_EXCEEDED``), by quota name (``max_queued_jobs``, ``max_deployments``, ...).
- ``mlp_scheduler_cycles_total`` and ``mlp_job_queue_wait_seconds`` (submission to first
  start) when this process runs the scheduler.

Labels never carry a tenant, a principal or an id. The endpoint needs no credentials, as
Prometheus scrapers expect; it shows no tenant data, only aggregate counts.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable

from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.core.errors import ErrorCode
from ml_platform.core.jobs import JobStatus
from ml_platform.core.problems import PROBLEM_JSON
from ml_platform.governance.quotas import Limit, QuotaService
from ml_platform.jobs.scheduler import Scheduler
from ml_platform.store.db import Database
from ml_platform.store.jobs import count_jobs_by_status

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
OTHER_CODE = "other"
_KNOWN_CODES = frozenset(code.value for code in ErrorCode)
_VERSION = re.compile(r"^/(v[0-9]{1,3})(?:/|$)")

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


class JobsByStateCollector(Collector):
    """``mlp_jobs{state}`` from the store at scrape time (every state, zeros included)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterable[Metric]:
        try:
            with self._db.read() as session:
                counts = count_jobs_by_status(session)
        except Exception:
            logger.warning("metrics: counting jobs by state failed", exc_info=True)
            return []
        family = GaugeMetricFamily("mlp_jobs", "Training jobs per state", labels=["state"])
        for status in JobStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        return [family]

    def describe(self) -> Iterable[Metric]:
        return []


class ControlPlaneMetrics:
    """The control plane's collectors, in a registry of their own (several apps per process
    in tests, and no process-global state)."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlp_http_requests",
            "HTTP requests answered, by route template, method, status and API version",
            ["method", "route", "status", "api_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlp_http_request_duration_seconds",
            "HTTP request latency until the response is complete, by route template",
            ["method", "route", "api_version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.problems = Counter(
            "mlp_http_problems",
            "Problem (error) responses by route template and problem code: RESOURCE_EXHAUSTED "
            "(rate limits) and QUOTA_EXCEEDED (quotas) are the rejections",
            ["route", "code", "api_version"],
            registry=self.registry,
        )
        self.scheduler_cycles = Counter(
            "mlp_scheduler_cycles",
            "Scheduler cycles (admission passes) run by this process as the lease holder",
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "mlp_job_queue_wait_seconds",
            "Time from a job's submission to its first start",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.quota_rejections = Counter(
            "mlp_quota_rejections",
            "Creations refused by a tenant quota (429 QUOTA_EXCEEDED), by quota name",
            ["limit"],
            registry=self.registry,
        )
        for limit in Limit:  # every quota's series exists from the start, at zero
            if limit.is_hard:
                self.quota_rejections.labels(limit.value)
        self.registry.register(JobsByStateCollector(db))

    def observe_scheduler(self, scheduler: Scheduler) -> None:
        scheduler.on_cycle = self.scheduler_cycles.inc
        scheduler.on_job_started = self.queue_wait.observe

    def observe_quotas(self, quotas: QuotaService) -> None:
        quotas.on_rejection = lambda limit: self.quota_rejections.labels(limit).inc()

    def observe_request(
        self, method: str, route: str, status: int, api_version: str, seconds: float
    ) -> None:
        self.requests.labels(method, route, str(status), api_version).inc()
        self.latency.labels(method, route, api_version).observe(seconds)

    def observe_problem(self, route: str, code: str, api_version: str) -> None:
        self.problems.labels(route, code, api_version).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def api_version(path: str) -> str:
    """``v1`` for ``/v1/...``; ``none`` for unversioned routes (health, docs, metrics)."""
    match = _VERSION.match(path)
    return match.group(1) if match else "none"


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Pure ASGI: counts every HTTP response (those the outer layers answer too, as the
    413 and catch-all 500) under its route template. Add it outermost."""

    def __init__(self, app: ASGIApp, metrics: ControlPlaneMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # no response start at all is what the client sees as a failure
        problem = False
        code: str | None = None

        async def recording_send(message: Message) -> None:
            nonlocal status, problem, code
            if message["type"] == "http.response.start":
                status = int(message["status"])
                problem = status >= 400 and _is_problem(message.get("headers", ()))
            elif problem and code is None and message["type"] == "http.response.body":
                code = problem_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            template = route_template(scope)
            version = (
                api_version(template)
                if template != UNMATCHED
                else api_version(scope.get("path", ""))
            )
            self.metrics.observe_request(
                scope.get("method", "GET"),
                template,
                status,
                version,
                time.perf_counter() - started,
            )
            if problem:
                self.metrics.observe_problem(template, code or OTHER_CODE, version)


def _is_problem(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"content-type" and value.startswith(PROBLEM_JSON.encode())
        for name, value in headers
    )


def problem_code(body: bytes) -> str:
    """The problem document's ``code`` when it is one of ours (a bounded label), else other."""
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return OTHER_CODE
    return code if code in _KNOWN_CODES else OTHER_CODE


def install_metrics(
    app: FastAPI, db: Database, scheduler: Scheduler | None, quotas: QuotaService | None = None
) -> None:
    """``GET /metrics`` and the request middleware (call after the other middleware)."""
    metrics = ControlPlaneMetrics(db)
    if scheduler is not None:
        metrics.observe_scheduler(scheduler)
    if quotas is not None:
        metrics.observe_quotas(quotas)
    app.state.metrics = metrics

    @app.get(METRICS_PATH, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
