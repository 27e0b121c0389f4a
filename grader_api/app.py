"""The FastAPI application factory.

`create_app(settings)` builds the app; everything with side effects (directories, migrations,
the database engine, the worker pool or the Celery publisher, the sweeper thread, demo
seeding) happens in the lifespan, i.e. when the server starts, never at import.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from grader_api.config import Settings, get_settings
from grader_api.errors import install_error_handlers
from grader_api.url_credentials import RefuseCredentialsInQuery, redact_access_log

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def _start(app: FastAPI, settings: Settings) -> None:
    from grader_api.db import get_database, migrate
    from grader_api.ratelimit import RateLimiter
    from grader_api.storage import LocalStorage
    from grader_api.tokens import LiveTokenIndex
    from grader_api.validation_slots import ValidationSlots

    redact_access_log()
    settings.ensure_dirs()
    url = settings.effective_database_url
    if settings.auto_migrate:
        migrate(url)
    app.state.db = get_database(url)
    app.state.storage = LocalStorage(settings.effective_storage_dir)
    app.state.storage.ensure()
    # The one place the API touches the worker package: the relay its uploads go through is the
    # Celery publisher, or (no REDIS_URL) the embedded worker that grades in this process.
    from worker.relays import make_relay

    app.state.relay = make_relay(settings, app.state.db)
    app.state.limiter = RateLimiter(settings)
    app.state.token_index = LiveTokenIndex()
    app.state.upload_slots = ValidationSlots(settings.effective_upload_validation_slots)
    app.state.sweeper = None
    if settings.demo:
        from grader_api.demo import seed_demo

        seed_demo(settings, app.state.db, app.state.relay, app.state.storage)
    if settings.sweeper_enabled:
        from worker.sweeper import SweeperThread

        app.state.sweeper = SweeperThread(settings, app.state.relay).start()


def _stop(app: FastAPI, settings: Settings) -> None:
    from grader_api.db import dispose_database

    if getattr(app.state, "sweeper", None) is not None:
        app.state.sweeper.stop()
    if getattr(app.state, "relay", None) is not None:
        app.state.relay.close()
    dispose_database(settings.effective_database_url)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _start(app, settings)
        try:
            yield
        finally:
            _stop(app, settings)

    app = FastAPI(
        title="heldout",
        description="Autograding for machine-learning courses: upload predictions or models, "
                    "scores on held-out splits, public and private leaderboards.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,   # Swagger UI and ReDoc are served by _include_api_docs from files in a package
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Outermost: a token in a query string is refused before any route or page sees it.
    app.add_middleware(RefuseCredentialsInQuery)

    from grader_api.routers import courses, me, submissions, tasks, teams, users
    from grader_api.schemas import ErrorOut

    # Validation errors are answered in the service's error envelope (errors.py), so document
    # that shape instead of FastAPI's default list-of-errors schema for every 422.
    api = APIRouter(prefix=API_PREFIX, responses={422: {"model": ErrorOut, "description": "invalid request"}})

    @api.get("/health", tags=["meta"])
    def health() -> dict:
        return {"status": "ok"}

    for module in (me, tasks, submissions, users, teams, courses):
        api.include_router(module.router)
    app.include_router(api)
    _include_api_docs(app)
    _include_web_pages(app)
    return app


DOCS_ASSETS = f"{API_PREFIX}/docs/assets"


def _include_api_docs(app: FastAPI) -> None:
    """Swagger UI at /api/v1/docs and ReDoc at /api/v1/redoc, from the files the fastapi-offline
    package ships (Swagger UI 5 reads OpenAPI 3.1), not a CDN: the pages work on a machine or a
    campus network without internet access."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).with_name("static")
    redirect = f"{API_PREFIX}/docs/oauth2-redirect"

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{API_PREFIX}/openapi.json", title="heldout API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                                   oauth2_redirect_url=redirect)

    @app.get(f"{API_PREFIX}/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=f"{API_PREFIX}/openapi.json", title="heldout API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)

    @app.get(redirect, include_in_schema=False)
    def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="api-docs-assets")


def _include_web_pages(app: FastAPI) -> None:
    """The HTML pages live in grader_api.web (another module's job); mount them when present."""
    if importlib.util.find_spec("grader_api.web.pages") is None:
        return
    from grader_api.web import course_pages, pages, team_pages

    app.include_router(pages.router)
    app.include_router(team_pages.router)
    app.include_router(course_pages.router)
    static_dir = Path(pages.__file__).with_name("static")
    if static_dir.is_dir() and not any(getattr(r, "path", None) == "/static" for r in app.routes):
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=static_dir), name="static")
