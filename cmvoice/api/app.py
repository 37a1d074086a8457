"""create_app: the HTTP API of ``cmvoice api`` (calls, campaigns, the campaign page, metrics)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from cmvoice._version import __version__
from cmvoice.api.auth import ApiKeyCheck, configured_keys
from cmvoice.api.calls import calls_router
from cmvoice.api.campaign_starts import CampaignStarts
from cmvoice.api.campaigns import campaigns_router
from cmvoice.api.pages import pages_router
from cmvoice.api.problems import install_error_handlers
from cmvoice.runtime import Runtime, get_runtime

#: Where ``cmvoice api`` listens by default (the receiver has 8090, the simulator 8091).
DEFAULT_API_PORT = 8092

_DESCRIPTION = """\
Place and follow voice calls and campaigns of CM.com's Voice API from any language.

Every `/v1` endpoint needs `Authorization: Bearer <key>`, a key of `CMVOICE_API_KEYS`.
Errors are always `{"errors": [{"field", "rule", "value"}]}`, numbers masked, codes hidden.
"""


def create_app(runtime_factory: Callable[[], Runtime] = get_runtime) -> FastAPI:
    """The API's ASGI app. ``runtime_factory`` gives the Redis and settings to use.

    Raises ConfigurationError when CMVOICE_API_KEYS holds no key: the API is never open.
    """
    keys = configured_keys(runtime_factory().settings)
    registry = CollectorRegistry()
    starts = CampaignStarts()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Each start commits its batch in hand and stops: `campaign start --resume` goes on.
        await run_in_threadpool(starts.stop)

    api = FastAPI(
        title="cmvoice API",
        version=__version__,
        description=_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    api.state.key_check = ApiKeyCheck(keys, registry)
    install_error_handlers(api)
    api.include_router(calls_router(runtime_factory))
    api.include_router(campaigns_router(runtime_factory, starts))
    api.include_router(pages_router(runtime_factory))

    @api.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            runtime_factory().redis.ping()
        except (redis.RedisError, OSError):
            return JSONResponse({"status": "unavailable", "redis": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "redis": "reachable"})

    @api.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return api
