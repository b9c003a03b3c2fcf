"""The review server: one FastAPI app serving the JSON API (with OpenAPI at /docs) and the review page."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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
from skinscreen.errors import ConfigError
from skinscreen.models.gradcam import GradCam, load_gradcam
from skinscreen.review import routes_api, routes_pages, routes_sites
from skinscreen.review.auth import LoginRequiredError, ReviewContext
from skinscreen.review.heatmaps import HeatmapStore

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "skinscreen_session"
# Scripts and styles come from /static only (no inline code); the API docs pages load Swagger from a CDN.
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
DOCS = ("/docs", "/redoc")

DESCRIPTION = """Cases scored by the skinscreen classifier, their images and Grad-CAM heatmaps, and the
verdicts of the dermatologists who review them.

Authenticate with `POST /api/token` (form fields `username`, `password`) and send
`Authorization: Bearer <token>`. The review page's session cookie also works, with the
session's CSRF token in `X-CSRF-Token` on every POST and PATCH."""


def create_app(settings: Settings, *, gradcam_loader: Callable[[Path], GradCam] = load_gradcam) -> FastAPI:
    """Build the app; refuses to start without a real `SKINSCREEN_SECRET_KEY`."""
    if settings.secret_key is None:
        raise ConfigError("the review server needs SKINSCREEN_SECRET_KEY (32+ random characters)")
    engine = make_engine(settings.database_url)
    heatmaps = HeatmapStore(folder=settings.heatmap_folder(), model=settings.model, loader=gradcam_loader)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="skinscreen review", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.review = ReviewContext(
        settings=settings,
        sessions=make_session_factory(engine),
        heatmaps=heatmaps,
        templates=Jinja2Templates(directory=HERE / "templates"),
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.session_hours * 3600),
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.middleware("http")(security_headers)
    app.include_router(routes_api.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_sites.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequiredError, _to_login)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    logger.info("review app ready (model %s, heatmaps in %s)", heatmaps.version, heatmaps.folder)
    return app


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    if not request.url.path.startswith(DOCS):
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _is_page(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/api/") or path.startswith("/static/") or path == "/openapi.json")


async def _to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_page(request):
        return await http_exception_handler(request, exc)
    return _error_page(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


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
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
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
