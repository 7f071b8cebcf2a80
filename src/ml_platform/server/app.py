"""The composition root: build every service once from ``Settings`` and wire the REST app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from ml_platform import __version__
from ml_platform.api import health, ui, versioning
from ml_platform.api.audit import AuditMiddleware
from ml_platform.api.context import ApiContext
from ml_platform.api.docs import install_docs
from ml_platform.api.idempotency import IdempotencyMiddleware
from ml_platform.api.metrics import install_metrics
from ml_platform.api.middleware import RequestContextMiddleware
from ml_platform.api.openapi import install_openapi, operation_id
from ml_platform.api.problems import install_problem_handlers
from ml_platform.api.ratelimit import install_rate_limits
from ml_platform.api.usage import UsageMiddleware
from ml_platform.api.v1 import admin as v1_admin
from ml_platform.api.v1 import code_packages as v1_code_packages
from ml_platform.api.v1 import data as v1_data
from ml_platform.api.v1 import deployments as v1_deployments
from ml_platform.api.v1 import features as v1_features
from ml_platform.api.v1 import job_runtime as v1_job_runtime
from ml_platform.api.v1 import jobs as v1_jobs
from ml_platform.api.v1 import me as v1_me
from ml_platform.api.v1 import models as v1_models
from ml_platform.api.v1 import quotas as v1_quotas
from ml_platform.config import Settings
from ml_platform.governance.usage import UsageRecorder
from ml_platform.server.context import build_context
from ml_platform.store.audit import AuditStore
from ml_platform.store.audit_writer import AuditWriter
from ml_platform.store.idempotency import IdempotencyStore
from ml_platform.store.usage import UsageStore

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The ml-platform control plane: submit and follow training jobs, register models, deploy them.

Authenticate with an API key (`X-API-Key: mlp_...`) or a JWT (`Authorization: Bearer ...`).
Every error is an RFC 9457 problem document (`application/problem+json`) with a stable `code`.
"""

OPENAPI_TAGS = [
    {"name": "Training", "description": "Submit, list, inspect and cancel training jobs"},
    {"name": "Code packages", "description": "Upload training code to run in jobs"},
    {"name": "Models", "description": "Register models, versions and aliases; download artifacts"},
    {"name": "Deployments", "description": "Serve model versions over gRPC and V2 REST"},
    {"name": "Data", "description": "Upload the files jobs read (`data_path: data/<path>`)"},
    {
        "name": "Features",
        "description": "Entities, feature views, materialization, online and point-in-time reads",
    },
    {"name": "Identity", "description": "Who the credentials belong to"},
    {"name": "Quotas", "description": "Tenant quotas beside usage; administrators set them"},
    {"name": "Health", "description": "Liveness and readiness probes"},
    {"name": "Administration", "description": "Administrators only: usage, audit"},
]

# Routes that accept uploads larger than the JSON body limit enforce their own limits.
LARGE_BODY_PREFIXES: tuple[str, ...] = ("/v1/code-packages", "/v1/models/", "/v1/data/")


def create_app(
    settings: Settings,
    context: ApiContext | None = None,
    *,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """The REST app. Migrations are applied by the caller (``mlp server`` or ``mlp db upgrade``).

    ``on_shutdown``: blocking callables run (on a thread) first when the app shuts down, e.g.
    stopping the serving plane ``mlp server`` runs beside it. They belong here, not after
    ``uvicorn.run`` returns: on SIGTERM/SIGINT uvicorn shuts the app down and then re-raises
    the signal, which ends the process before any code after ``uvicorn.run`` runs."""
    context = context or build_context(settings)
    usage = UsageRecorder(UsageStore(context.db), interval=settings.usage_flush_seconds)
    audit = AuditWriter(
        AuditStore(context.db, retention=timedelta(days=settings.audit_retention_days)),
        wait_for_commit=settings.audit_delivery == "committed",
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.uses_dev_secret:
            logger.warning(
                "USING THE BUILT-IN DEVELOPMENT JWT SECRET: tokens can be forged by anyone. "
                "Set ML_PLATFORM_JWT_SECRET before exposing this server."
            )
        if context.engine is not None:
            await context.engine.start()
        if context.features is not None:
            # renews the leases of its materializations, takes over those whose process died
            await context.features.start()
        usage.start()
        try:
            yield
        finally:
            for hook in on_shutdown:
                await asyncio.to_thread(hook)
            await usage.stop()  # the last counts reach the store before the process ends
            await audit.drain()  # so do the buffered audit events
            if context.features is not None:
                await context.features.stop()
            if context.engine is not None:
                await context.engine.stop()

    app = FastAPI(
        title="ml-platform",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        separate_input_output_schemas=False,
        responses={},
    )
    app.state.context = context
    app.state.usage = usage  # read by api.v1.admin (flushed before each read)
    app.state.audit_writer = audit  # drained by api.v1.admin before each audit read
    # inside RequestContextMiddleware (added after it): request ids and body limits apply first
    app.add_middleware(IdempotencyMiddleware, auth=context.auth, store=IdempotencyStore(context.db))
    install_rate_limits(app, settings)  # RateLimit headers; counted in get_principal
    # between the two: sees the request id and every response, replays included
    app.add_middleware(AuditMiddleware, auth=context.auth, writer=audit)
    app.add_middleware(UsageMiddleware, recorder=usage)  # per-tenant API usage, no I/O
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        large_body_prefixes=LARGE_BODY_PREFIXES,
        access_log=settings.access_log,
    )
    # v1's Deprecation/Sunset/Link and v2's API-Date echo, on every response of each
    app.add_middleware(versioning.VersionHeadersMiddleware, sunset=settings.v1_sunset)
    # outermost: counts every response, the 413s and catch-all 500s above included
    install_metrics(
        app, context.db, context.engine.scheduler if context.engine else None, context.quotas
    )
    install_problem_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(v1_jobs.router)
    app.include_router(v1_models.router)
    app.include_router(v1_job_runtime.router)
    app.include_router(v1_code_packages.router)
    app.include_router(v1_deployments.router)
    app.include_router(v1_data.router)
    app.include_router(v1_features.router)
    app.include_router(v1_me.router)
    app.include_router(v1_quotas.router)
    app.include_router(v1_admin.router)  # administrators: usage and audit
    app.include_router(v1_jobs.jobs_router("v2"))
    app.include_router(v1_models.models_router("v2"))
    app.include_router(v1_deployments.deployments_router("v2"))
    app.include_router(versioning.router)
    app.include_router(ui.router)  # the dashboard at /ui and its same-origin V2 REST door
    install_openapi(app)
    return app
