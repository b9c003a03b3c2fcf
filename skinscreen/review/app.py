"""The review server: one FastAPI app serving the JSON API (OpenAPI at /openapi.json) and the review page."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from skinscreen import __version__
from skinscreen.config import Settings
from skinscreen.db.session import make_engine, make_session_factory
from skinscreen.errors import ConfigError, ModelError
from skinscreen.models.gradcam import GradCam, load_gradcam
from skinscreen.review import routes_api, routes_pages, routes_sites
from skinscreen.review.auth import LoginRequiredError, ReviewContext
from skinscreen.review.casefiles import read_case_file
from skinscreen.review.heatmaps import CaseImages, HeatmapStore, shipped_models
from skinscreen.review.metrics_route import metrics_router
from skinscreen.review.stow import StowReceiver
from skinscreen.review.stow import router as stow_router
from skinscreen.review.throttle import SignInThrottle

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "skinscreen_session"
# Scripts and styles come from /static only (no inline code); the optional API docs pages load from a CDN.
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
DOCS = ("/docs", "/redoc")

DESCRIPTION = """Cases scored by the skinscreen classifier, their images and Grad-CAM heatmaps, and the
verdicts of the dermatologists who review them.

Authenticate with `POST /api/token` (form fields `username`, `password`) and send
`Authorization: Bearer <token>`. The review page's session cookie also works, with the
session's CSRF token in `X-CSRF-Token` on every POST, PATCH and DELETE."""


def create_app(settings: Settings, *, gradcam_loader: Callable[[Path], GradCam] = load_gradcam) -> FastAPI:
    """Build the app; refuses to start without a real `SKINSCREEN_SECRET_KEY`."""
    if settings.secret_key is None:
        raise ConfigError("the review server needs SKINSCREEN_SECRET_KEY (32+ random characters)")
    engine = make_engine(settings.database_url)
    heatmaps = HeatmapStore(
        folder=settings.heatmap_folder(),
        models=[settings.model, *settings.heatmap_models, *shipped_models()],
        loader=gradcam_loader,
        models_folder=settings.models_folder(),
    )

    stow = StowReceiver(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stow.start()
        yield
        stow.stop()
        engine.dispose()

    # Swagger UI and ReDoc load their scripts from a public CDN: off unless asked for (SKINSCREEN_API_DOCS).
    docs = settings.api_docs
    app = FastAPI(
        title="skinscreen review",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.review = ReviewContext(
        settings=settings,
        sessions=make_session_factory(engine),
        images=CaseImages(heatmaps=heatmaps, read=partial(read_case_file, inboxes=settings.inbox)),
        templates=Jinja2Templates(directory=HERE / "templates"),
        throttle=SignInThrottle(),
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.session_hours * 3600),
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.middleware("http")(security_headers if docs else strict_security_headers)
    app.include_router(routes_api.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_sites.router)
    app.state.stow = stow
    app.include_router(stow_router)
    app.include_router(metrics_router(settings, app.state.review.sessions))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequiredError, _to_login)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ModelError, _model_unreadable)
    logger.info("review app ready (heatmaps of %s in %s)", ", ".join(heatmaps.cards), heatmaps.folder)
    return app


async def strict_security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """The security headers, the CSP on every path."""
    return _secured(await call_next(request), csp=True)


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """The security headers; no CSP on the interactive docs pages, which load from a CDN."""
    return _secured(await call_next(request), csp=not request.url.path.startswith(DOCS))


def _secured(response: Response, *, csp: bool) -> Response:
    if csp:
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _is_page(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith(("/api/", "/static/", "/dicom-web/")) or path == "/openapi.json")


async def _to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_page(request):
        return await http_exception_handler(request, exc)
    return _error_page(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _model_unreadable(request: Request, exc: Exception) -> Response:
    """The model in force went away or broke after start-up (the site and drift views read its
    card): 503 and a line in the log, not a 500."""
    logger.error("the model in force cannot be read: %s", exc)
    detail = "the model in force cannot be read; an admin should check SKINSCREEN_MODEL"
    return await _http_error(request, StarletteHTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_page(request):
        # FastAPI's own handler fails (500) on a body that is not UTF-8; echo a readable, short input.
        errors = [{**e, "input": _short(e["input"])} if "input" in e else e for e in exc.errors()]
        safe = RequestValidationError(errors, body=None)
        return await request_validation_exception_handler(request, safe)
    return _error_page(
        request, status.HTTP_422_UNPROCESSABLE_CONTENT, "That request could not be understood."
    )


def _short(value: Any) -> Any:
    """The input echoed in a 422: short, and encodable (a lone surrogate such as "\ud800" made a 500)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        value = value.encode("utf-8", "replace").decode("utf-8")
        return value[:200] + "..." if len(value) > 200 else value
    if isinstance(value, dict):
        return {_short(k): _short(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_short(v) for v in value[:50]]
    return value


def _error_page(request: Request, code: int, message: str, *, headers: Any = None) -> Response:
    templates = request.app.state.review.templates
    response: Response = templates.TemplateResponse(
        request,
        "error.html",
        {"user": None, "status": code, "message": message},
        status_code=code,
        headers=headers,
    )
    return response
